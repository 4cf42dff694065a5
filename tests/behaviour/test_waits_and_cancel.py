"""Waits (backoff, rate-limit queue, budget) end on cancel and on the deadline, on both
drivers, and leave nothing held: no slot, no place in line."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
from driver_clients import Client

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.aio import AsyncRuntime
from rakka_runtime.errors import Backpressure, BudgetExceeded, Cancelled, CircuitOpen
from rakka_runtime.policies.admission import AdmissionQueue
from rakka_runtime.runtime import Runtime
from rakka_runtime.types import ChatResult
from rakka_testing import EMULATOR_KEY, config_at, count_calls

Make = Callable[..., Client]
ONE_AT_A_TIME = "deployment.rate_limits.concurrent_requests=1"
SLOW = {"x-emulator-fault": "drip;delay_ms=100"}  # ~0.1 s per chunk
DRIP = {"x-emulator-fault": "drip;delay_ms=1"}  # ~8 ms for a plain body


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(keys=[EMULATOR_KEY]) as emu:
        yield emu


def queue_of(client: Client) -> AdmissionQueue:
    gate = next(p for p in client.runtime.core.policies if p.name == "rate_limits")
    admission = gate.admission  # type: ignore[attr-defined]
    assert isinstance(admission, AdmissionQueue)
    return admission


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    ends = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < ends, "condition not reached"
        time.sleep(0.01)


def test_cancel_ends_a_retry_backoff_at_once(client_at: Make, emulator: Emulator) -> None:
    client = client_at(emulator.url, "deployment.retry.initial_backoff=30s")
    started = client.start(stream=False, extra_headers={"x-emulator-fault": "server_error"})
    wait_until(lambda: emulator.stats.requests == 1)  # the first attempt failed: backing off
    time.sleep(0.05)
    began = time.monotonic()
    started.cancel()
    outcome = started.outcome()
    assert isinstance(outcome, Cancelled), outcome
    assert time.monotonic() - began < 1.0
    assert emulator.stats.requests == 1


def test_cancel_takes_a_request_out_of_the_queue(client_at: Make, emulator: Emulator) -> None:
    client = client_at(emulator.url, ONE_AT_A_TIME)
    queue = queue_of(client)
    holder = client.start(max_tokens=20, extra_headers=SLOW)
    wait_until(lambda: queue.in_flight == 1)
    queued = client.start(max_tokens=2)
    wait_until(lambda: queue.waiting == 1)
    queued.cancel()
    outcome = queued.outcome()
    assert isinstance(outcome, Cancelled), outcome
    assert queue.waiting == 0
    assert isinstance(holder.outcome(), ChatResult)
    wait_until(lambda: queue.in_flight == 0)


def test_the_deadline_bounds_a_queue_wait(client_at: Make, emulator: Emulator) -> None:
    client = client_at(emulator.url, ONE_AT_A_TIME)
    queue = queue_of(client)
    holder = client.start(max_tokens=30, extra_headers=SLOW)
    wait_until(lambda: queue.in_flight == 1)
    began = time.monotonic()
    error = client.failure(max_tokens=2, deadline=0.4)
    assert isinstance(error, Backpressure), error
    assert time.monotonic() - began < 1.5
    assert queue.waiting == 0
    assert isinstance(holder.outcome(), ChatResult)


def test_a_budget_refuses_before_sending(client_at: Make, emulator: Emulator) -> None:
    client = client_at(emulator.url, "deployment.budget.max_spend_per_hour_usd=0.0000001")
    error = client.failure(max_tokens=1000)
    assert isinstance(error, BudgetExceeded), error
    assert emulator.stats.requests == 0


def test_a_closed_stream_frees_its_slot(client_at: Make, emulator: Emulator) -> None:
    client = client_at(emulator.url, ONE_AT_A_TIME)
    queue = queue_of(client)
    started = client.start(max_tokens=50, extra_headers=SLOW)
    wait_until(lambda: queue.in_flight == 1)
    started.cancel()
    assert isinstance(started.outcome(), Cancelled)
    wait_until(lambda: queue.in_flight == 0)
    result, _ = client.run(max_tokens=2)  # the slot is there at once
    assert result.text


def test_a_freed_slot_wakes_the_next_in_line_not_everyone(
    client_at: Make, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 requests queue behind one concurrency slot. Each release may let only the head
    go, so it wakes the head: waking all 40 (each asks the queue again and goes back to
    sleep) made a long line cost O(n^2), and threads also asked again every 0.1 s."""
    client = client_at(emulator.url, ONE_AT_A_TIME)
    queue = queue_of(client)
    asked = count_calls(monkeypatch, queue, "reserve")
    outcomes = client.run_many(40, max_tokens=2, stream=False, extra_headers=DRIP)
    assert all(isinstance(o, ChatResult) for o in outcomes), outcomes
    assert len(outcomes) == 40
    # Each request: one ask on arrival, one when woken at the head (a few spare for a
    # wake that lands while it is still asking).
    assert asked.count <= 3 * 40, f"{asked.count} asks for 40 requests"
    assert queue.waiting == 0 and queue.in_flight == 0


# --- asyncio's own cancellation -------------------------------------------------------------


@pytest.fixture
def runtime(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("RAKKA_TEST_KEY", EMULATOR_KEY)
    rt = Runtime(config_at(emulator.url, ONE_AT_A_TIME, "deployment.retry.initial_backoff=30s"))
    yield rt
    rt.close()


def test_task_cancel_and_asyncio_timeout_end_a_request_and_free_its_slot(
    runtime: Runtime,
) -> None:
    async def main() -> None:
        async with AsyncRuntime.sharing(runtime) as rt:
            gate = next(p for p in rt.core.policies if p.name == "rate_limits")
            queue = gate.admission  # type: ignore[attr-defined]

            async def read_all() -> None:
                async for _ in rt.stream("long", max_tokens=50, extra_headers=SLOW):
                    pass

            task = asyncio.create_task(read_all())
            while queue.in_flight == 0:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert queue.in_flight == 0
            began = time.monotonic()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await rt.chat("slow", stream=True, max_tokens=50, extra_headers=SLOW)
            assert time.monotonic() - began < 1.0 and queue.in_flight == 0
            # In a backoff: the task's cancel ends it at once.
            fail = {"x-emulator-fault": "server_error"}
            task = asyncio.create_task(rt.chat("x", extra_headers=fail))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await rt.chat("after", max_tokens=2)).text

    asyncio.run(main())


def test_sync_and_async_share_one_breaker(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAKKA_TEST_KEY", EMULATOR_KEY)
    runtime = Runtime(
        config_at(
            emulator.url,
            "deployment.retry.enabled=false",
            "deployment.circuit_breaker.failure_threshold=2",
        )
    )
    try:
        for _ in range(2):
            with pytest.raises(Exception, match="server_error"):
                runtime.chat("x", extra_headers={"x-emulator-fault": "server_error"})

        async def main() -> None:
            async with AsyncRuntime.sharing(runtime) as rt:
                with pytest.raises(CircuitOpen):
                    await rt.chat("y")

        asyncio.run(main())
    finally:
        runtime.close()


def test_handle_cancel_between_reads_never_cancels_the_callers_other_work(
    runtime: Runtime,
) -> None:
    async def main() -> None:
        async with AsyncRuntime.sharing(runtime) as rt:
            handle = rt.stream("x", max_tokens=40)
            seen: list[str] = []

            async def consumer() -> str:
                try:
                    async for chunk in handle:
                        seen.append(chunk.text_delta)
                        await asyncio.sleep(0.05)  # the caller's own work, between reads
                    return "finished"
                except Cancelled:
                    return "Cancelled"

            task = asyncio.create_task(consumer())
            while len(seen) < 2:
                await asyncio.sleep(0.005)
            handle.cancel()  # lands while the consumer sleeps, not inside the request
            assert await task == "Cancelled"
            done = rt.stream("y", max_tokens=3)
            assert (await done.result()).text
            done.cancel()  # after the end: nothing to cut, and the task goes on
            await asyncio.sleep(0.05)

    asyncio.run(main())
