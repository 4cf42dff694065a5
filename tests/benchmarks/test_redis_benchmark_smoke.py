"""The Redis-sharing benchmark still runs: ``python -m benchmarks.redis_shared --smoke``
with a line of waiters (``--slots``), end to end against a real ``redis-server`` (the
README's test command installs it) and the bench server.

Not a timed assertion: it proves both variants finish, report a number in every cell,
and that the Redis variant really went through Redis (two round trips or so a request)
while the local one never did.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (local|redis) \| ([\d.]+) µs \| (\d+) \| ([\d.]+) \|$")


@pytest.mark.timeout(150)
def test_redis_smoke_run_with_a_line_prints_both_variants() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.redis_shared", "--smoke", "--slots", "8"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "8 slots" in done.stdout
    rows = {m[1]: m for m in map(ROW.match, done.stdout.splitlines()) if m is not None}
    assert set(rows) == {"local", "redis"}, done.stdout
    assert float(rows["local"][4]) == 0.0
    assert 1.5 <= float(rows["redis"][4]) <= 4.0, done.stdout  # reserve + settle, mostly
    assert all(int(row[3]) > 0 for row in rows.values())
