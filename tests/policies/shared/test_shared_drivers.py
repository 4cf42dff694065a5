"""The Redis-shared rate limits and breaker behave the same from the asyncio driver as from
threads (their Redis calls run in a worker thread there, never on the event loop)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from driver_clients import Client
from redis_support import RedisServer, redis_overrides

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.errors import CircuitOpen
from rakka_runtime.types import ChatResult
from rakka_testing import EMULATOR_KEY

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
