"""The circuit breaker shared through a real Redis: one trip opens it everywhere, probes
are limited across the fleet, stale evidence is ignored.

Each ``SharedCircuitBreaker`` (or runtime) built here stands for one process.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from redis_support import RedisServer, redis_overrides

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.config.schema import CircuitBreakerPolicy
from rakka_runtime.config.validation import validate
from rakka_runtime.errors import CircuitOpen, ServerError
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.plugins import BUILTIN_PLUGINS, PluginHooks, make_plugin_manager
from rakka_runtime.policies.circuit import CLOSED, HALF_OPEN, OPEN
from rakka_runtime.policies.shared.redis_circuit import SharedCircuitBreaker, SharedPermit
from rakka_testing import RuntimeFactory

CACHE = 0.025  # the default state_cache: how stale a process's view may be


def replica(
    server: RedisServer, prefix: str, *, events: list[Any] | None = None, **policy: Any
) -> SharedCircuitBreaker:
    redis = {"url": server.url, "key_prefix": prefix, **policy.pop("redis", {})}
    config = validate(CircuitBreakerPolicy, {"backend": "redis", "redis": redis, **policy})

    def heard(old: str, new: str, retry_at: float | None) -> None:
        if events is not None:
            events.append((old, new))

    return SharedCircuitBreaker.from_policy("d", config, on_change=heard)


def fail(breaker: SharedCircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.settle(breaker.acquire(), "failure")


def test_one_process_trip_opens_the_circuit_for_all(redis_server: RedisServer, prefix: str) -> None:
    heard_a: list[Any] = []
    heard_b: list[Any] = []
    a = replica(redis_server, prefix, events=heard_a, failure_threshold=3, open_duration=30)
    b = replica(redis_server, prefix, events=heard_b, failure_threshold=3, open_duration=30)
    b.settle(b.acquire(), "success")  # b has read the circuit closed
    fail(a, 2)
    assert a.state == CLOSED  # evidence is per process: two failures are not three
    fail(a)
    assert a.state == OPEN
    time.sleep(CACHE * 2)
    with pytest.raises(CircuitOpen) as info:
        b.acquire()
    assert info.value.retry_at is not None
    assert 29 < info.value.retry_at - time.monotonic() <= 30
    assert heard_a == [(CLOSED, OPEN)]
    assert heard_b == [(CLOSED, OPEN)]  # each process reports what it acts on


def test_half_open_probes_are_limited_across_the_fleet(
    redis_server: RedisServer, prefix: str
) -> None:
    fleet = [
        replica(
            redis_server, prefix, failure_threshold=1, open_duration=0.3, half_open_max_probes=1
        )
        for _ in range(4)
    ]
    fail(fleet[0])
    time.sleep(0.35)
    permits: list[tuple[SharedCircuitBreaker, SharedPermit]] = []
    refused: list[CircuitOpen] = []
    lock = threading.Lock()

    def ask(breaker: SharedCircuitBreaker) -> None:
        try:
            permit = breaker.acquire()
        except CircuitOpen as exc:
            with lock:
                refused.append(exc)
        else:
            with lock:
                permits.append((breaker, permit))

    threads = [threading.Thread(target=ask, args=(b,)) for b in fleet for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(permits) == 1 and len(refused) == 7
    prober, permit = permits[0]
    assert permit.probe and prober.state == HALF_OPEN
    prober.settle(permit, "failure")  # the probe failed: open again for everyone
    time.sleep(CACHE * 2)
    for breaker in fleet:
        with pytest.raises(CircuitOpen) as info:
            breaker.acquire()
        assert info.value.retry_at is not None  # open (with a time), not half-open
    time.sleep(0.35)
    probe = fleet[1].acquire()
    fleet[1].settle(probe, "success")  # a probe success closes it for everyone
    time.sleep(CACHE * 2)
    for breaker in fleet:
        assert not breaker.acquire().probe
        assert breaker.state == CLOSED


def test_the_probe_of_a_process_that_died_frees_itself(
    redis_server: RedisServer, prefix: str
) -> None:
    policy: dict[str, Any] = {
        "failure_threshold": 1,
        "open_duration": 0.2,
        "redis": {"lease": "300ms"},
    }
    dead = replica(redis_server, prefix, **policy)
    alive = replica(redis_server, prefix, **policy)
    fail(dead)
    time.sleep(0.25)
    assert dead.acquire().probe  # ... and never settled
    with pytest.raises(CircuitOpen, match="probe"):
        alive.acquire()
    time.sleep(0.35)
    assert alive.acquire().probe


def test_evidence_from_an_earlier_period_is_ignored(redis_server: RedisServer, prefix: str) -> None:
    a = replica(redis_server, prefix, failure_threshold=1, open_duration=0.2)
    b = replica(redis_server, prefix, failure_threshold=1, open_duration=0.2)
    slow = b.acquire()  # a slow call admitted while closed
    fail(a)  # meanwhile the circuit opens ...
    time.sleep(0.25)
    a.settle(a.acquire(), "success")  # ... and recovers
    time.sleep(CACHE * 2)
    b.acquire()  # b reads the new period
    b.settle(slow, "failure")  # the slow call fails late: stale, it must not reopen
    time.sleep(CACHE * 2)
    assert a.acquire() and b.acquire()
    assert a.state == b.state == CLOSED


class Transitions:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def rakka_breaker_state_changed(
        self, deployment: str, old_state: str, new_state: str, retry_at: float | None
    ) -> None:
        self.seen.append((old_state, new_state))


def test_runtimes_share_the_circuit_and_fail_fast_without_the_network(
    redis_server: RedisServer, prefix: str, emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    def runtime(events: Transitions) -> Any:
        pm = make_plugin_manager(
            disabled=set(BUILTIN_PLUGINS) - {"circuit_breaker"},
            extra_plugins=[("transitions", events)],
        )
        return make_runtime(
            emulator,
            "deployment.retry.enabled=false",
            "deployment.circuit_breaker.failure_threshold=2",
            *redis_overrides(redis_server.url, prefix, limits=False, breaker=True),
            hooks=PluginHooks(pm),
        )

    heard_1, heard_2 = Transitions(), Transitions()
    first, second = runtime(heard_1), runtime(heard_2)
    assert second.chat("hi").text
    emulator.set_scenario({"rules": [{"fault": "server_error;status=503"}]})
    for _ in range(2):
        with pytest.raises(ServerError):
            first.chat("hi")
    sent = emulator.stats.requests
    time.sleep(CACHE * 2)
    with pytest.raises(CircuitOpen):
        second.chat("hi")
    assert emulator.stats.requests == sent  # refused before the network
    assert heard_1.seen == heard_2.seen == [(CLOSED, OPEN)]
