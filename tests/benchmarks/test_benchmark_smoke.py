"""The benchmark suite still runs: smoke mode end to end, as a user would start it.

Not a timed assertion: CI machines are shared and noisy, so this only proves that the bench
server, the floor and runtime clients and the report still work together, and that every
row of the table carries a number.
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
RUN = REPO / "benchmarks" / "run.py"
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")
EXPECTED_ROWS = (
    "client CPU per 1,000 non-streamed requests, concurrency 1",
    "client CPU per 1,000 non-streamed requests, concurrency 16",
    "client CPU per 1,000 streamed chunks, concurrency 1",
    "client CPU per 1,000 streamed chunks, concurrency 16",
    "peak RSS, 16 concurrent streams",
    "connections opened per worker thread, streams at concurrency 16",
    "import time over bare `python -c pass`",
    "`rakka --help` wall time",
)


@pytest.mark.timeout(300)
def test_smoke_run_prints_a_full_table(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--json", str(out_json)],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    header, rows = table[0], table[1:]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns[:4] == ["metric", "unit", "floor", "rakka"]
    assert len(rows) >= len(EXPECTED_ROWS)
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
    # The runtime client reused its connections: never one per stream.
    streams = data["rounds"][0]["rakka"]["stream:16"]
    assert streams["connections"] <= 16 < streams["total_requests"]
