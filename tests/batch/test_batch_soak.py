"""Bounded soak: 10,000 requests with injected faults, and kill -9 at random points.

Both run ``rakka batch`` and ``rakka emulator`` as separate processes, as in production.
The exactly-once property must hold whether or not the retry policy is wired (with it,
fewer lines are errors).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from batch_support import (
    EmulatorProcess,
    assert_exactly_once,
    batch_command,
    outcome_counts,
    read_records,
    run_batch,
    start_batch,
    wait_for_lines,
    write_requests,
)

StartEmulator = Callable[..., EmulatorProcess]

# About 2 % of requests fail: 5xx, 429 with a short retry-after, and connection resets.
FAULTS = {
    "seed": 11,
    "rules": [
        {"fault": "server_error;status=503", "probability": 0.01},
        {"fault": "rate_limit;retry_after_ms=2", "probability": 0.007},
        {"fault": "reset", "probability": 0.003},
    ],
}


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_ten_thousand_requests_with_faults_each_exactly_once(
    tmp_path: Path, emulator_process: StartEmulator
) -> None:
    emulator = emulator_process(FAULTS)
    count = 10_000
    source = write_requests(tmp_path / "in.jsonl", count)
    output, summary_path = tmp_path / "out.jsonl", tmp_path / "summary.json"
    done = run_batch(
        batch_command(
            source,
            output,
            emulator.url,
            "-c",
            "32",
            "--summary-json",
            str(summary_path),
            "--progress-interval",
            "2s",
        ),
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = read_records(output)
    assert len(records) == count
    assert_exactly_once(records, (f"req-{i}" for i in range(count)))
    summary = json.loads(summary_path.read_text())
    counts = outcome_counts(records)
    assert summary["records"] == count and summary["outcomes"] == dict(sorted(counts.items()))
    assert summary["ok"] == counts["ok"] >= count * 0.95
    assert summary["attempts"] == sum(r["attempts"] for r in records)
    errors = count - counts["ok"]
    assert set(counts) <= {"ok", "server_error", "rate_limited", "network"}
    # ~2 % of attempts are faults: without retry about 200 error lines, with retry ~none.
    assert errors <= count * 0.04, counts


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_kill_9_at_random_points_then_resume_keeps_every_line_exactly_once(
    tmp_path: Path, emulator_process: StartEmulator
) -> None:
    seed = int(os.environ.get("RAKKA_BATCH_KILL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    emulator = emulator_process(FAULTS)
    count = 2_000
    source = write_requests(tmp_path / "in.jsonl", count)
    output = tmp_path / "out.jsonl"
    command = batch_command(source, output, emulator.url, "-c", "16", "--progress", "off")
    kills = sorted(rng.sample(range(20, count - 200), 3))
    for round_number, kill_at in enumerate(kills):
        proc = start_batch(command)
        wait_for_lines(output, kill_at, proc, timeout=120)
        time.sleep(rng.uniform(0, 0.05))  # not always right after a line
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        if round_number == 1:
            # A crash mid-write: the next run must cut this torn line off.
            with output.open("ab") as handle:
                handle.write(b'{"id":"batch_req_torn","custom_id":"req-')
    finished = run_batch(command, timeout=240)
    assert finished.returncode == 0, f"seed {seed}: {finished.stderr[-2000:]}"
    records = read_records(output)
    assert len(records) == count, f"seed {seed}"
    assert_exactly_once(records, (f"req-{i}" for i in range(count)))
