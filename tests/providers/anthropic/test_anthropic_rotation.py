"""Key rotation with no dropped request: ``rakka batch`` of 1,500 lines through the
``anthropic`` provider while its key file is rotated 30 times.

The emulator reads the same file and accepts only the current key and, for one second,
the one before it: a runtime that keeps using an old key fails requests (a 401 that the
core's re-read of the file then has to repair).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rakka_provider_anthropic.emulator import Emulator

LINES = 1_500
ROTATIONS = 30
RAKKA = str(Path(sys.executable).parent / "rakka")


def key(n: int) -> str:
    return f"sk-ant-rotation-{n:03d}-{'x' * 24}"


def rotate(path: Path, value: str) -> None:
    """Replace the file atomically, as a secret manager's agent does."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value, encoding="utf-8")
    os.replace(tmp, path)


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


@pytest.mark.timeout(180)
def test_batch_of_1500_with_30_key_rotations_drops_nothing(tmp_path: Path) -> None:
    key_file = tmp_path / "anthropic-key"
    rotate(key_file, key(0))
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    summary_path = tmp_path / "summary.json"
    with source.open("w", encoding="utf-8") as handle:
        for i in range(LINES):
            line = {
                "custom_id": f"req-{i}",
                "max_tokens": 4,
                "stream": True,  # paced by the emulator's chunk_delay: the run lasts seconds
                "messages": [{"role": "user", "content": f"question {i}"}],
            }
            handle.write(json.dumps(line) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "RAKKA_DISABLE_PLUGINS"}
    with Emulator(key_file=key_file, key_grace=1.0, chunk_delay=0.005) as emu:
        command = [
            RAKKA,
            "batch",
            str(source),
            "-o",
            str(output),
            "-c",
            "16",
            "--progress",
            "off",
            "--summary-json",
            str(summary_path),
            "deployment=anthropic",
            f"deployment.endpoint={emu.url}",
            "~deployment.api_key",
            f"+deployment.api_key={{from: file, path: '{key_file}'}}",
            "deployment.secret_watch.debounce=50ms",
            "deployment.retry.initial_backoff=1ms",
            "deployment.retry.max_backoff=5ms",
        ]
        started = time.monotonic()
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        rotated, last = 0, 0.0
        try:
            # Spread the rotations over the first two thirds of the run: rotation n once
            # n/31 of those lines are out, at least 50 ms (the watcher's debounce) after the
            # previous one. Streamed answers with events 5 ms apart make the run (about
            # 5 s) far longer than 30 such gaps, and the last third is slack for rotations
            # that fell behind. (Unstreamed, with rotations over the whole run, it took
            # 2.1-2.4 s and ended before the 30th rotation about half the time.)
            deadline = time.monotonic() + 150
            spread = LINES * 2 // 3
            while rotated < ROTATIONS and proc.poll() is None and time.monotonic() < deadline:
                due = count_lines(output) >= (rotated + 1) * spread // (ROTATIONS + 1)
                if due and time.monotonic() - last >= 0.05:
                    rotated += 1
                    rotate(key_file, key(rotated))
                    last = time.monotonic()
                time.sleep(0.01)
            _, stderr = proc.communicate(timeout=150)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        elapsed = time.monotonic() - started
    assert proc.returncode == 0, stderr[-2000:]
    summary = json.loads(summary_path.read_text())
    records = [json.loads(line) for line in output.read_text().splitlines()]
    attempts = sum(record["attempts"] for record in records)
    print(
        f"rotation: {LINES} lines, {rotated} rotations, {elapsed:.1f}s, {attempts} attempts, "
        f"summary ok={summary['ok']}"
    )
    assert rotated == ROTATIONS
    assert sorted(r["custom_id"] for r in records) == sorted(f"req-{i}" for i in range(LINES))
    failed = [r for r in records if r["error"]]
    assert failed == [], failed[:3]
    assert summary["ok"] == LINES and summary["records"] == LINES
