"""The async benchmarks still run: ``benchmarks/aio_run.py --smoke`` end to end.

Not a timed assertion (CI machines are shared and noisy): this proves the paced asyncio
bench server, the raw aiohttp floor, the ``AsyncRuntime`` client and the report still
work together, that every stream completed and every row carries a number, and that the
server's send stamps reached the client (the delay percentiles are real measurements).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "benchmarks" / "aio_run.py"
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")
EXPECTED_ROWS = (
    "20 streams: streams completed",
    "20 streams: wall time",
    "20 streams: p99 delay, server send to caller receipt",
    "20 streams: client CPU per 1,000 chunks",
    "20 streams: peak RSS",
    "non-streamed, 200 at concurrency 16 (50 ms server): client CPU per request",
    "non-streamed, 200 at concurrency 16 (50 ms server): throughput",
)


@pytest.mark.timeout(120)
def test_async_smoke_run_prints_a_full_table(tmp_path: Path) -> None:
    out_json = tmp_path / "aio-bench.json"
    done = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--json", str(out_json)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    header, rows = table[0], table[1:]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns[:4] == ["metric", "unit", "floor", "rakka"]
    for line in rows:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert NUMBER.match(cells[2]), f"floor has no number: {line}"
        assert NUMBER.match(cells[3]), f"rakka has no number: {line}"
        assert cells[7] in {"PASS", "FAIL", "info"}, line
    metrics = [line.strip("|").split("|")[0].strip() for line in rows]
    for expected in EXPECTED_ROWS:
        assert any(m.startswith(expected) for m in metrics), f"missing row: {expected}"

    data = json.loads(out_json.read_text())
    assert len(data["rows"]) == len(rows)
    for row in data["rows"]:
        for client in ("floor", "rakka"):
            value = row["values"][client]
            assert isinstance(value, int | float) and math.isfinite(value), row
    plan = data["plan"]
    for client in ("floor", "rakka"):
        streams = data["rounds"][0][client]["stream:20"]
        assert streams["completed"] == streams["streams"] == 20, streams
        # Every content chunk's send stamp was read back: one delay per content chunk.
        assert streams["delay"]["chunks"] == 20 * plan["chunks"], streams
        assert 0 <= streams["delay"]["p99_s"] < 60
        chat = data["rounds"][0][client]["chat"]
        assert chat["completed"] == chat["server_requests"] == plan["chat_requests"], chat
