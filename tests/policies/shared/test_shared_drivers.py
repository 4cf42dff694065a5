"""The Redis-shared rate limits and breaker behave the same from the asyncio driver as from
threads; on asyncio they ask Redis with redis-py's asyncio client, so a Redis that stalls
never blocks the event loop, and a cancel never strands what Redis granted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from driver_clients import Client
from redis_support import RedisServer, redis_overrides

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.aio import AsyncRuntime
from rakka_runtime.errors import CircuitOpen
from rakka_runtime.policies.shared.redis_admission import SharedAdmission
from rakka_runtime.types import ChatResult
from rakka_testing import EMULATOR_KEY, config_at

Make = Callable[..., Client]


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(keys=[EMULATOR_KEY]) as emu:
        yield emu


def test_shared_limits_queue_and_admit_on_both_drivers(
    client_at: Make, emulator: Emulator, redis_server: RedisServer, prefix: str
) -> None:
    client = client_at(
        emulator.url,
        *redis_overrides(redis_server.url, prefix),
        "deployment.rate_limits.concurrent_requests=2",
    )
    outcomes = client.run_many(
        6, max_tokens=5, extra_headers={"x-emulator-fault": "drip;delay_ms=20"}
    )
    assert len(outcomes) == 6 and all(isinstance(o, ChatResult) for o in outcomes), outcomes
    gate = next(p for p in client.runtime.core.policies if p.name == "rate_limits")
    assert gate.admission.slots_in_use() == 0  # type: ignore[attr-defined]


def test_a_shared_breaker_opens_for_every_runtime(
    client_at: Make, emulator: Emulator, redis_server: RedisServer, prefix: str
) -> None:
    overrides = (
        *redis_overrides(redis_server.url, prefix, limits=False, breaker=True),
        "deployment.retry.enabled=false",
        "deployment.circuit_breaker.failure_threshold=2",
    )
    first = client_at(emulator.url, *overrides)
    other = client_at(emulator.url, *overrides)
    for _ in range(2):
        assert first.failure(extra_headers={"x-emulator-fault": "server_error"}).kind == (
            "server_error"
        )
    assert isinstance(other.failure(), CircuitOpen)


# -- asyncio only: the event loop and cancellation ----------------------------------------

STALL_TIMEOUT = 1.0  # the Redis socket timeout in these tests: what a blocked loop would lose


def stalled_overrides(url: str, prefix: str, *, breaker: bool = True) -> list[str]:
    return [
        *redis_overrides(url, prefix, breaker=breaker),
        "deployment.rate_limits.concurrent_requests=8",
        "deployment.retry.enabled=false",
        f"deployment.rate_limits.redis.socket_timeout={STALL_TIMEOUT}",
        *([f"deployment.circuit_breaker.redis.socket_timeout={STALL_TIMEOUT}"] if breaker else []),
    ]


def admission_of(rt: AsyncRuntime) -> SharedAdmission:
    gate: Any = next(p for p in rt.core.policies if p.name == "rate_limits")
    admission: SharedAdmission = gate.admission
    return admission


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait on observable state, bounded."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


async def longest_stall_of_the_loop(work: Awaitable[Any]) -> float:
    """The longest the event loop went without running a ticking task while ``work`` ran."""
    longest = 0.0

    async def tick() -> None:
        nonlocal longest
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.005)
            longest = max(longest, time.monotonic() - before - 0.005)

    ticker = asyncio.create_task(tick())
    try:
        await work
    finally:
        ticker.cancel()
    return longest


def test_a_redis_stall_never_blocks_the_event_loop(
    emulator: Emulator, own_redis_server: RedisServer, prefix: str, monkeypatch: Any
) -> None:
    """Requests admitted while Redis answered get their response heads (rate-limit headers
    to apply in Redis) and end (slots to free in Redis) while it hangs: each of those
    Redis calls waits for its timeout, and the loop goes on meanwhile."""
    monkeypatch.setenv("RAKKA_TEST_KEY", EMULATOR_KEY)
    config = config_at(emulator.url, *stalled_overrides(own_redis_server.url, prefix))

    async def main() -> None:
        async with AsyncRuntime(config) as rt:
            admission = admission_of(rt)
            await rt.chat("warm up", max_tokens=5)  # connected, and Redis is up
            slow = {"x-emulator-fault": "stall;seconds=0.6"}  # the head comes after 0.6 s
            calls = [
                asyncio.create_task(rt.chat("hi", max_tokens=5, extra_headers=slow))
                for _ in range(4)
            ]
            await until(lambda: admission.in_flight == 4, "all four are admitted in Redis")
            own_redis_server.stop()
            try:
                results: list[Any] = []

                async def finish() -> None:
                    results.extend(await asyncio.gather(*calls))

                longest = await longest_stall_of_the_loop(finish())
                assert all(isinstance(r, ChatResult) for r in results), results
                assert admission.in_flight == 0
                assert not admission.shared  # the stall was noticed (it timed out)
                assert longest < STALL_TIMEOUT / 2, f"the event loop stalled {longest:.3f}s"
            finally:
                own_redis_server.cont()
            # Once Redis answers, what the stall interrupted is settled there.
            await until(lambda: admission.unsettled() == 0, "the settlements reach Redis")
            await until(lambda: admission.slots_in_use() == 0, "Redis holds no slot")

    asyncio.run(main())


def test_a_cancel_during_a_redis_call_ends_at_once_and_strands_nothing(
    emulator: Emulator, own_redis_server: RedisServer, prefix: str, monkeypatch: Any
) -> None:
    """``asyncio.timeout`` ends a request at once while its reservation waits for a hung
    Redis; the reservation goes on in the background (it may have reached Redis), and
    what it ends up granting is given back: nothing in flight, no slot held in Redis."""
    monkeypatch.setenv("RAKKA_TEST_KEY", EMULATOR_KEY)
    # The breaker stays local: a shared one enters first and, its state read more than
    # state_cache ago, would be the call the cancel lands in (a full run saw exactly that).
    overrides = stalled_overrides(own_redis_server.url, prefix, breaker=False)
    config = config_at(emulator.url, *overrides)

    async def main() -> None:
        async with AsyncRuntime(config) as rt:
            admission = admission_of(rt)
            await rt.chat("warm up", max_tokens=5)
            own_redis_server.stop()
            try:
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await rt.chat("hi", max_tokens=5)
                assert time.monotonic() - started < STALL_TIMEOUT * 0.8  # not after the timeout
                # The reservation times out in the background, falls back to the local
                # queue, and that grant is given back.
                await until(lambda: not admission.shared, "the Redis call timed out")
                await until(lambda: admission.in_flight == 0, "the grant is given back")
                assert admission.local.in_flight == 0
            finally:
                own_redis_server.cont()
            # Redis ran the reservation it had buffered when it woke: it is undone.
            await until(lambda: admission.unsettled() == 0, "the undo reaches Redis")
            await until(lambda: admission.slots_in_use() == 0, "Redis holds no slot")
            assert (await rt.chat("after", max_tokens=5)).text

    asyncio.run(main())
