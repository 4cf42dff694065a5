"""Scheduling against a real loopback emulator: results, priorities, bounded read-ahead,
exactly-once across resumes, and stopping with a grace period."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batch_support import outcome_counts, request_line

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.batch import execute_batch
from rakka_runtime.batch.input import read_items
from rakka_runtime.batch.output import RecordWriter, scan_output
from rakka_runtime.batch.records import Record
from rakka_runtime.batch.runner import BatchRunner
from rakka_runtime.runtime import Runtime
from rakka_runtime.types import ExecuteBatch

StartEmulator = Callable[..., Emulator]
MakeRuntime = Callable[..., Runtime]


def test_execute_batch_returns_records_in_input_order_with_totals(
    batch_emulator: StartEmulator, batch_runtime: MakeRuntime
) -> None:
    emulator = batch_emulator(scenario={"rules": [{"fault": "server_error", "requests": [5]}]})
    runtime = batch_runtime(emulator, "deployment.retry.enabled=false")
    requests: list[Any] = [request_line(i) for i in range(40)]
    requests.append({"messages": "not a list"})
    requests.append(request_line(3))  # a duplicate custom_id
    requests.append(request_line(50, stream=True))
    requests.append(ExecuteBatch(messages=[{"role": "user", "content": "built"}], stream=False))
    seen: list[str] = []
    result = execute_batch(
        requests, concurrency=6, runtime=runtime, on_record=lambda r: seen.append(r["custom_id"])
    )
    records = result.records
    assert [r["custom_id"] for r in records] == [
        *(f"req-{i}" for i in range(40)),
        "line-41",
        "req-3",
        "req-50",
        "line-44",
    ]
    assert sorted(seen) == sorted(r["custom_id"] for r in records)
    counts = outcome_counts(records)
    assert counts["invalid_request"] == 1 and counts["duplicate_custom_id"] == 1
    assert counts.get("server_error", 0) == 1  # request 5 of the emulator, retry disabled
    assert counts["ok"] == 41
    assert result.summary.to_dict()["outcomes"] == dict(sorted(counts.items()))
    assert result.outcome.complete and result.outcome.written == 44
    streamed = records[42]
    assert streamed["response"]["body"]["choices"][0]["message"]["content"]
    assert streamed["ttft_ms"] is not None and streamed["ttft_ms"] <= streamed["latency_ms"]
    failed = next(r for r in records if r["error"] and r["error"]["code"] == "server_error")
    assert failed["response"]["status_code"] == 500 and failed["cost_usd"] == 0.0
    assert "line 41:" in records[40]["error"]["message"]


def test_priorities_order_the_requests_read_ahead(
    batch_emulator: StartEmulator, batch_runtime: MakeRuntime
) -> None:
    # Request 1 stalls, so the window fills behind it; then the highest priority goes first.
    # It is critical itself, so it goes first whether or not the reader is faster.
    emulator = batch_emulator(scenario={"rules": [{"fault": "stall;seconds=0.4", "requests": [1]}]})
    runtime = batch_runtime(emulator)
    lines: list[dict[str, Any]] = [
        {
            "custom_id": "first",
            "priority": "critical",
            "messages": [{"role": "user", "content": "x"}],
        }
    ]
    for priority in ("background", "normal", "high", "critical"):
        for i in range(3):
            lines.append(
                {
                    "custom_id": f"{priority}-{i}",
                    "priority": priority,
                    "messages": [{"role": "user", "content": "x"}],
                }
            )
    order: list[str] = []
    execute_batch(
        lines,
        concurrency=1,
        runtime=runtime,
        read_ahead=32,
        on_record=lambda r: order.append(r["custom_id"]),
    )
    assert order == [
        "first",
        *(f"{p}-{i}" for p in ("critical", "high", "normal", "background") for i in range(3)),
    ]


class CountingLines:
    """A file-like source of input lines that counts how many were taken."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.consumed = 0

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self.count):
            self.consumed += 1
            yield json.dumps(request_line(i)).encode() + b"\n"


def test_the_reader_never_runs_more_than_the_window_ahead(
    batch_emulator: StartEmulator, batch_runtime: MakeRuntime
) -> None:
    emulator = batch_emulator(scenario={"rules": [{"fault": "stall;seconds=0.002"}]})
    runtime = batch_runtime(emulator)
    source = CountingLines(300)
    written = 0
    widest = 0

    def sink(_line: int, _record: Record, _encoded: bytes) -> None:
        nonlocal written, widest
        written += 1
        widest = max(widest, source.consumed - written)

    concurrency, read_ahead = 2, 4
    runner = BatchRunner(runtime, sink, concurrency=concurrency, read_ahead=read_ahead)
    outcome = runner.run(read_items(source))
    assert outcome.complete and written == 300 and source.consumed == 300
    # In the window, in the workers, and the one the reader holds while the window is full.
    assert widest <= read_ahead + concurrency + 1
    assert widest >= read_ahead  # the window did fill: the bound above was exercised


def file_sink(writer: RecordWriter) -> Callable[[int, Record, bytes], None]:
    return lambda _line, _record, encoded: writer.write(encoded)


def test_resume_after_any_crash_point_keeps_every_line_exactly_once_with_duplicates(
    tmp_path: Path, batch_emulator: StartEmulator, batch_runtime: MakeRuntime
) -> None:
    runtime = batch_runtime(batch_emulator())
    ids = ["a", "b", "a", "c", "a", "b", "d"]
    source = b"".join(
        json.dumps({"custom_id": cid, "messages": [{"role": "user", "content": str(n)}]}).encode()
        + b"\n"
        for n, cid in enumerate(ids)
    )
    full = tmp_path / "full.jsonl"
    writer = RecordWriter(str(full))
    BatchRunner(runtime, file_sink(writer), concurrency=3).run(read_items(source.splitlines(True)))
    writer.close()
    complete = full.read_bytes().splitlines(True)
    assert len(complete) == len(ids)
    for kept in range(len(complete)):  # a crash after `kept` records (plus a torn one)
        out = tmp_path / f"out-{kept}.jsonl"
        out.write_bytes(b"".join(complete[:kept]) + complete[kept][:25])
        state = scan_output(str(out))
        writer = RecordWriter(str(out))
        BatchRunner(runtime, file_sink(writer), concurrency=3, resume=state).run(
            read_items(source.splitlines(True))
        )
        writer.close()
        records = [json.loads(raw) for raw in out.read_bytes().splitlines()]
        real = sorted(
            r["custom_id"]
            for r in records
            if not r["error"] or r["error"]["code"] != "duplicate_custom_id"
        )
        dups = sorted(
            r["custom_id"]
            for r in records
            if r["error"] and r["error"]["code"] == "duplicate_custom_id"
        )
        assert real == ["a", "b", "c", "d"], kept
        assert dups == ["a", "a", "b"], kept


def test_stop_lets_in_flight_requests_finish_and_leaves_the_rest_unsent(
    batch_emulator: StartEmulator, batch_runtime: MakeRuntime
) -> None:
    emulator = batch_emulator(scenario={"rules": [{"fault": "stall;seconds=0.3"}]})
    runtime = batch_runtime(emulator)
    records: list[Record] = []
    runner = BatchRunner(runtime, lambda _l, r, _e: records.append(r), concurrency=3, grace=5)
    threading.Timer(0.1, runner.request_stop).start()
    started = time.monotonic()
    outcome = runner.run(
        read_items(json.dumps(request_line(i)).encode() + b"\n" for i in range(50))
    )
    assert time.monotonic() - started < 2
    assert outcome.stopped and not outcome.complete and outcome.abandoned == 0
    assert len(records) == 3 and all(r["error"] is None for r in records)  # in flight: done
    assert outcome.unsent > 0  # read ahead, never sent: a re-run sends them


def test_requests_still_running_after_the_grace_period_are_abandoned_unwritten(
    batch_emulator: StartEmulator, batch_runtime: MakeRuntime
) -> None:
    emulator = batch_emulator(scenario={"rules": [{"fault": "stall;seconds=3"}]})
    runtime = batch_runtime(emulator, "deployment.timeouts.request_timeout=10s")
    records: list[Record] = []
    runner = BatchRunner(runtime, lambda _l, r, _e: records.append(r), concurrency=2, grace=0.3)
    threading.Timer(0.2, runner.request_stop).start()
    started = time.monotonic()
    outcome = runner.run(
        read_items(json.dumps(request_line(i)).encode() + b"\n" for i in range(10))
    )
    assert time.monotonic() - started < 1.5
    assert outcome.abandoned == 2 and records == []
    time.sleep(0.1)
    assert records == []  # the output is sealed: a late answer is never written


def test_requests_failing_retryably_while_stopping_are_left_for_the_rerun(
    batch_emulator: StartEmulator, batch_runtime: MakeRuntime
) -> None:
    # Every answer is a 503: requests sit in their retry loops when the stop comes, and
    # the grace deadline ends those loops. Such a failure says nothing about the request.
    emulator = batch_emulator(scenario={"rules": [{"fault": "server_error;status=503"}]})
    runtime = batch_runtime(
        emulator,
        "deployment.retry.max_retries=1000",
        "deployment.retry.initial_backoff=20ms",
        "deployment.retry.max_backoff=20ms",
        "deployment.circuit_breaker.enabled=false",
    )
    records: list[Record] = []
    runner = BatchRunner(runtime, lambda _l, r, _e: records.append(r), concurrency=3, grace=0.3)
    threading.Timer(0.3, runner.request_stop).start()
    outcome = runner.run(
        read_items(json.dumps(request_line(i)).encode() + b"\n" for i in range(20))
    )
    assert records == []
    assert not outcome.complete and outcome.unsent + outcome.abandoned >= 3


def test_concurrency_beyond_the_pool_is_warned_about_unless_limits_allow_it(
    batch_emulator: StartEmulator, batch_runtime: MakeRuntime, caplog: Any
) -> None:
    emulator = batch_emulator()
    unlimited = batch_runtime(emulator, "deployment.rate_limits.concurrent_requests=null")
    with caplog.at_level("WARNING", logger="rakka_runtime.batch"):
        execute_batch(
            [request_line(i) for i in range(3)], concurrency=65, runtime=unlimited, driver="thread"
        )
    assert "concurrency 65 is more than the 64 pooled connections" in caplog.text
    assert "concurrent_requests=65" in caplog.text
    caplog.clear()
    limited = batch_runtime(emulator, "deployment.rate_limits.concurrent_requests=100")
    with caplog.at_level("WARNING", logger="rakka_runtime.batch"):
        result = execute_batch(
            [request_line(i) for i in range(3)], concurrency=65, runtime=limited, driver="thread"
        )
    assert result.summary.outcomes["ok"] == 3
    assert "pooled connections" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="rakka_runtime.batch"):  # no pool to outrun
        result = execute_batch(
            [request_line(i) for i in range(3)], concurrency=65, runtime=unlimited
        )
    assert result.summary.outcomes["ok"] == 3 and "pooled connections" not in caplog.text


def test_abandoned_streams_are_cut_not_left_running(
    batch_emulator: StartEmulator, batch_runtime: MakeRuntime
) -> None:
    # Slow streams (~8 s each): after the grace period they are cancelled, so their
    # workers end at once instead of reading (and paying for) the rest unseen.
    emulator = batch_emulator(chunk_delay=0.02)
    runtime = batch_runtime(emulator)
    records: list[Record] = []
    runner = BatchRunner(runtime, lambda _l, r, _e: records.append(r), concurrency=2, grace=0.3)

    def stop_once_both_stream() -> None:
        # Observable state, not a fixed delay: on a loaded machine the runner may take
        # longer than any delay to send its first requests.
        limit = time.monotonic() + 10
        while emulator.stats.requests < 2 and time.monotonic() < limit:
            time.sleep(0.01)
        runner.request_stop()

    threading.Thread(target=stop_once_both_stream, daemon=True).start()
    lines = (
        json.dumps(request_line(i, stream=True, max_tokens=400)).encode() + b"\n" for i in range(4)
    )
    outcome = runner.run(read_items(lines))
    # The two streams in flight end at the grace period: cut by the runner (abandoned) or,
    # when their deadline (the same instant) fires first, deferred; either way unwritten
    # and sent again by a re-run, like the two lines never sent.
    assert emulator.stats.requests == 2 and records == []
    assert outcome.abandoned + outcome.unsent == 4 and outcome.written == 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(
        t.name.startswith("rakka-batch-worker") for t in threading.enumerate()
    ):
        time.sleep(0.02)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("rakka-batch-worker")]
    assert records == []  # a cancelled request is not written either: the re-run sends it
