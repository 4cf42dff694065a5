"""``rakka batch`` as a real process: exit codes, progress, summary, signals and resume."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from batch_support import (
    RAKKA,
    EmulatorProcess,
    assert_exactly_once,
    batch_command,
    count_lines,
    endpoint_overrides,
    outcome_counts,
    read_records,
    run_batch,
    start_batch,
    wait_for_lines,
    write_jsonl,
    write_requests,
)

StartEmulator = Callable[..., EmulatorProcess]


def test_missing_input_exits_2_with_one_line(tmp_path: Path) -> None:
    done = run_batch([RAKKA, "batch", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o")])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory"
    ]
    assert not (tmp_path / "o").exists()


def test_bad_override_and_bad_grace_exit_2_without_traceback(tmp_path: Path) -> None:
    source = write_requests(tmp_path / "in.jsonl", 1)
    for extra in (["deployment.retry.max_retries=-1"], ["--grace", "soon"]):
        done = run_batch([RAKKA, "batch", str(source), "-o", str(tmp_path / "o"), *extra])
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_a_batch_with_bad_lines_completes_with_a_summary_matching_its_lines(
    tmp_path: Path,
) -> None:
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [
            *(
                {
                    "custom_id": f"r{i}",
                    "messages": [{"role": "user", "content": f"q{i}"}],
                    "max_tokens": 2,
                }
                for i in range(30)
            ),
            "this is not json",
            {"custom_id": "bad-url", "method": "POST", "url": "/v1/completions", "body": {}},
            {"custom_id": "r1", "messages": [{"role": "user", "content": "dup"}]},
        ],
    )
    output, summary_path = tmp_path / "out.jsonl", tmp_path / "summary.json"
    # The default deployment: the bundled emulator, in the batch process itself.
    done = run_batch(
        [
            RAKKA,
            "batch",
            str(source),
            "-o",
            str(output),
            "--summary-json",
            str(summary_path),
            "--progress-interval",
            "0.05",
            "-c",
            "4",
        ]
    )
    assert done.returncode == 0, done.stderr
    records = read_records(output)
    assert len(records) == 33
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "complete" and summary["records"] == 33
    assert (
        summary["outcomes"]
        == outcome_counts(records)
        == {"ok": 30, "invalid_request": 2, "duplicate_custom_id": 1}
    )
    assert summary["tokens"]["completion"] == 60
    assert summary["latency_ms"]["p50"] is not None and summary["ttft_ms"]["p95"] is not None
    bad = next(r for r in records if r["custom_id"] == "line-31")
    assert bad["error"]["message"].startswith("line 31: not valid JSON")
    # stderr is not a terminal here: plain progress lines, then the summary.
    assert "batch: 33/33 (100.0%)" in done.stderr
    assert "33 records: 30 ok, 3 errors" in done.stderr

    again = run_batch([RAKKA, "batch", str(source), "-o", str(output)])
    assert again.returncode == 0
    assert "resuming: 33 records already" in again.stderr
    assert count_lines(output) == 33


def resume_words(stderr: str) -> list[str]:
    line = next(li for li in stderr.splitlines() if li.startswith("resume with: "))
    words = shlex.split(line.removeprefix("resume with: "))
    assert words[:2] == ["rakka", "batch"]
    return [RAKKA, *words[1:]]


def test_sigterm_lets_in_flight_requests_finish_then_exits_143_with_a_resume_hint(
    tmp_path: Path, emulator_process: StartEmulator
) -> None:
    # The first eight requests are slow, the fourth slowest; the rest (the resumed run) are
    # fast. Three records written means the fourth request is still in flight, whatever
    # the batch has started since: the signal never lands between waves, when nothing
    # may be in flight (the next request not started yet on a loaded host).
    emulator = emulator_process(
        {
            "rules": [
                {"fault": "stall;seconds=1.5", "requests": [4]},
                {"fault": "stall;seconds=0.5", "requests": [1, 2, 3, 5, 6, 7, 8]},
            ]
        }
    )
    source = write_requests(tmp_path / "in.jsonl", 24)
    output = tmp_path / "out.jsonl"
    proc = start_batch(batch_command(source, output, emulator.url, "-c", "4", "--grace", "10s"))
    at_signal = wait_for_lines(output, 3, proc, timeout=30)
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    assert time.monotonic() - started < 3  # the in-flight wave only, not the whole batch
    after = read_records(output)
    assert at_signal < len(after) < 24  # in-flight requests finished; nothing new started
    assert all(record["error"] is None for record in after)
    assert "stopped by SIGTERM" in stderr and "no new requests" in stderr

    resumed = run_batch(resume_words(stderr))
    assert resumed.returncode == 0, resumed.stderr
    assert_exactly_once(read_records(output), (f"req-{i}" for i in range(24)))


@pytest.mark.soak  # the runner's own test covers abandoning; this one, the CLI's signals
def test_a_second_sigint_abandons_in_flight_requests_and_exits_130(
    tmp_path: Path, emulator_process: StartEmulator
) -> None:
    emulator = emulator_process(
        {
            "rules": [
                {"fault": "stall;seconds=20", "requests": [3, 4]},
                {"fault": "stall;seconds=0.2", "requests": [1, 2]},
            ]
        }
    )
    source = write_requests(tmp_path / "in.jsonl", 12)
    output = tmp_path / "out.jsonl"
    proc = start_batch(
        batch_command(
            source,
            output,
            emulator.url,
            "-c",
            "2",
            overrides=["deployment.timeouts.request_timeout=60s"],
        )
    )
    wait_for_lines(output, 2, proc, timeout=30)
    time.sleep(0.3)  # requests 3 and 4 are now stalled in flight
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 3
    assert "2 in-flight requests abandoned" in stderr
    assert count_lines(output) == 2

    resumed = run_batch(resume_words(stderr))
    assert resumed.returncode == 0, resumed.stderr
    assert_exactly_once(read_records(output), (f"req-{i}" for i in range(12)))


def test_metrics_port_serves_prometheus_while_running(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    import urllib.request

    source = write_requests(tmp_path / "in.jsonl", 300)
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [
                RAKKA,
                "batch",
                str(source),
                "-o",
                str(tmp_path / "out.jsonl"),
                "-c",
                "1",
                "--metrics-port",
                "0",
                "--progress",
                "off",
            ],
            stderr=stderr,
        )
        deadline = time.monotonic() + 30
        while "metrics: " not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.02)
        url = log.read_text().split("metrics: ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            assert b"rakka" in response.read()
        assert proc.wait(timeout=60) == 0, log.read_text()


def test_a_batch_runs_from_a_compiled_config_and_its_resume_hint_keeps_it(
    tmp_path: Path, emulator_process: StartEmulator
) -> None:
    emulator = emulator_process(
        {"rules": [{"fault": "stall;seconds=0.5", "requests": list(range(1, 5))}]}
    )
    compiled = tmp_path / "batch.json"
    compile_words = [RAKKA, "config", "compile", "policy=batch"]
    done = run_batch([*compile_words, *endpoint_overrides(emulator.url), "-o", str(compiled)])
    assert done.returncode == 0, done.stderr
    source = write_requests(tmp_path / "in.jsonl", 12)
    output = tmp_path / "out.jsonl"
    command = [RAKKA, "batch", str(source), "-o", str(output), "-c", "2", "--compiled"]
    proc = start_batch([*command, str(compiled)])
    wait_for_lines(output, 2, proc, timeout=30)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    words = resume_words(stderr)
    assert words[words.index("--compiled") + 1] == str(compiled)
    resumed = run_batch(words)
    assert resumed.returncode == 0, resumed.stderr
    assert_exactly_once(read_records(output), (f"req-{i}" for i in range(12)))

    mixed = run_batch([*command, str(compiled), "deployment.model=x"])
    assert mixed.returncode == 2
    assert "--compiled takes no overrides" in mixed.stderr


def test_lines_refused_by_a_pause_are_not_done_and_the_resume_sends_them(
    tmp_path: Path, emulator_process: StartEmulator
) -> None:
    # A hostile retry-after: the first request is told to come back in 11.6 days.
    emulator = emulator_process(
        {"rules": [{"fault": "rate_limit;retry_after=999999", "requests": [1]}]}
    )
    source = write_requests(tmp_path / "in.jsonl", 6)
    output = tmp_path / "out.jsonl"
    done = run_batch(
        batch_command(
            source,
            output,
            emulator.url,
            "-c",
            "1",
            overrides=[
                "deployment.rate_limits.on_capacity_exhausted=reject",
                "deployment.retry.max_retries=0",
            ],
        ),
        timeout=60,
    )
    assert done.returncode == 1, done.stderr  # not a silent success
    records = read_records(output)
    assert outcome_counts(records) == {"rate_limited": 1}  # the others were never sent
    assert "5 lines were refused by the deployment's rate limits" in done.stderr
    assert "paused for 1e+06s" not in done.stderr

    resumed = run_batch(resume_words(done.stderr))
    assert resumed.returncode == 0, resumed.stderr
    assert_exactly_once(read_records(output), (f"req-{i}" for i in range(6)))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_just_after_the_first_still_exits_128_plus_the_first(
    tmp_path: Path, emulator_process: StartEmulator, signum: signal.Signals
) -> None:
    # Fast requests: the run ends a moment after the first signal, and the second one
    # lands while the process prints its summary and exits.
    emulator = emulator_process({"rules": [{"fault": "stall;seconds=0.05", "every": 1}]})
    source = write_requests(tmp_path / "in.jsonl", 400)
    for delay in (0.1, 0.2, 0.3):
        output = tmp_path / f"out-{delay}.jsonl"
        proc = start_batch(batch_command(source, output, emulator.url, "-c", "2"))
        wait_for_lines(output, 4, proc, timeout=30)
        proc.send_signal(signum)
        time.sleep(delay)  # the gap between the two signals is what is tested
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 128 + signum, (delay, proc.returncode, stderr)
        assert f"stopped by {signum.name}" in stderr
