"""Helpers for the batch tests: input files, output checks, the emulator as a process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

KEY_ENV = "RAKKA_BATCH_TEST_KEY"
KEY = "sk-batch-test-key"
BIN = Path(sys.executable).parent
RAKKA = str(BIN / "rakka")
# Retries (when the retry plugin is wired) with waits short enough for a test.
FAST_RETRY = ("deployment.retry.initial_backoff=1ms", "deployment.retry.max_backoff=5ms")


def endpoint_overrides(url: str, *extra: str) -> list[str]:
    """Point the `openai` deployment at an emulator on ``url``."""
    return [
        "deployment=openai",
        f"deployment.variant.endpoint={url}/v1",
        f"deployment.api_key.name={KEY_ENV}",
        *FAST_RETRY,
        *extra,
    ]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env[KEY_ENV] = KEY
    env.pop("RAKKA_DISABLE_PLUGINS", None)
    return env


def request_line(i: int, *, batch_format: bool | None = None, **fields: Any) -> dict[str, Any]:
    """Line ``i``: alternately the Batch API form and the plain form."""
    body = {"messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 3}
    body.update(fields)
    if batch_format if batch_format is not None else i % 2 == 0:
        return {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": body,
        }
    return {"custom_id": f"req-{i}", **body}


def write_jsonl(path: Path, lines: Iterable[dict[str, Any] | str]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line if isinstance(line, str) else json.dumps(line))
            handle.write("\n")
    return path


def write_requests(path: Path, count: int) -> Path:
    return write_jsonl(path, (request_line(i) for i in range(count)))


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every output line must be a whole JSON record."""
    records = []
    with path.open("rb") as handle:
        for raw in handle:
            assert raw.endswith(b"\n"), f"torn line in {path}: {raw[:80]!r}"
            records.append(json.loads(raw))
    return records


def assert_exactly_once(records: Sequence[dict[str, Any]], expected_ids: Iterable[str]) -> None:
    counts = Counter(record["custom_id"] for record in records)
    repeated = {cid: n for cid, n in counts.items() if n != 1}
    assert not repeated, f"custom_ids not exactly once: {list(repeated.items())[:5]}"
    expected = set(expected_ids)
    assert set(counts) == expected, (
        f"missing {sorted(expected - set(counts))[:5]}, extra {sorted(set(counts) - expected)[:5]}"
    )


def outcome_counts(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(r["error"]["code"] if r["error"] else "ok" for r in records))


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


def wait_for_lines(path: Path, at_least: int, proc: subprocess.Popen[Any], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = count_lines(path)
        if lines >= at_least:
            return lines
        assert proc.poll() is None, f"batch exited early ({proc.returncode})"
        time.sleep(0.01)
    raise AssertionError(f"{path} did not reach {at_least} lines in {timeout}s")


class EmulatorProcess:
    """``rakka emulator`` in its own process (its own GIL, like a real server)."""

    def __init__(self, *, scenario: Path | None = None, extra: Sequence[str] = ()) -> None:
        args = [RAKKA, "emulator", "--port", "0", *extra]
        if scenario is not None:
            args += ["--scenario", str(scenario)]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env()
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        found = re.search(r"listening on (http://\S+)", first)
        if found is None:
            self.stop()
            raise AssertionError(f"emulator did not start: {first!r} {self.proc.stderr!r}")
        self.url = found.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def batch_command(
    input_path: Path | str, output: Path, url: str, *options: str, overrides: Sequence[str] = ()
) -> list[str]:
    return [
        RAKKA,
        "batch",
        str(input_path),
        "-o",
        str(output),
        *options,
        *endpoint_overrides(url, *overrides),
    ]


def start_batch(command: Sequence[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env()
    )


def run_batch(command: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), capture_output=True, text=True, env=child_env(), timeout=timeout
    )
