"""A Redis that stalls for seconds (SIGSTOP, then SIGCONT) under load: once it answers
again the fleet is back at its rate within a couple of seconds. Concurrency slots taken
by requests a stall interrupted (their release failed, or their reservation timed out but
ran once Redis woke) are given back when Redis answers, not after their lease.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from redis_support import RedisServer

from rakka_runtime.config.schema import RateLimitPolicy
from rakka_runtime.config.validation import validate
from rakka_runtime.errors import Backpressure
from rakka_runtime.policies.shared.redis_admission import SharedAdmission

pytest.importorskip("redis", reason="the redis package is not installed (extra 'redis')")

SLOTS = 8
WORK = 0.3  # how long each admitted "request" holds its slot (longer than a Redis timeout)


def replica(server: RedisServer, prefix: str, **redis: Any) -> SharedAdmission:
    policy = validate(
        RateLimitPolicy,
        {
            "backend": "redis",
            "concurrent_requests": SLOTS,
            "redis": {"url": server.url, "key_prefix": prefix, **redis},
        },
    )
    return SharedAdmission.from_policy("d", policy)


class Load:
    """Threads admitting, holding for WORK and releasing, as fast as the slots allow;
    every admission's time is recorded."""

    def __init__(self, replicas: list[SharedAdmission], threads_each: int) -> None:
        self.admitted: list[tuple[float, bool]] = []  # (when, shared through Redis)
        self.refused = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(admission,), daemon=True)
            for admission in replicas
            for _ in range(threads_each)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        assert not any(thread.is_alive() for thread in self._threads)

    def _run(self, admission: SharedAdmission) -> None:
        while not self._stop.is_set():
            try:
                grant = admission.admit(0, deadline=time.monotonic() + 1.0)
            except Backpressure:
                with self._lock:
                    self.refused += 1
                continue
            with self._lock:
                self.admitted.append((time.monotonic(), grant.local is None))
            self._stop.wait(WORK)
            admission.release(grant, requests_used=1, tokens_used=0)

    def shared_rate(self, start: float, end: float) -> float:
        """Admissions through Redis per second in [start, end)."""
        with self._lock:
            count = sum(1 for at, shared in self.admitted if start <= at < end and shared)
        return count / (end - start)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, what
        time.sleep(0.01)


@pytest.mark.parametrize("stall", [1.0, 3.0])
def test_the_fleet_is_back_at_its_rate_within_seconds_after_a_redis_stall(
    own_redis_server: RedisServer, prefix: str, stall: float
) -> None:
    replicas = [replica(own_redis_server, prefix) for _ in range(2)]
    try:
        with Load(replicas, threads_each=SLOTS) as load:
            wait_until(lambda: len(load.admitted) >= 20, 10, "no steady traffic")
            before = time.monotonic()
            time.sleep(1.0)
            steady = load.shared_rate(before, time.monotonic())
            own_redis_server.stop()
            time.sleep(stall)  # the stall itself: requests in flight cannot release
            own_redis_server.cont()
            back = time.monotonic()
            # Every replica notices within its retry_interval (1 s); then the slots the
            # stall interrupted must be free again, not held for their 30 s lease.
            wait_until(lambda: all(r.shared for r in replicas), 5, "Redis never came back in use")
            time.sleep(3.0)
            rates = [load.shared_rate(back + i, back + i + 1) for i in range(3)]
        print(f"stall {stall:g}s: steady {steady:.0f}/s; after {[round(r) for r in rates]}/s")
        assert steady > 0.5 * SLOTS / WORK
        # From the second second on, the fleet runs at its rate again.
        assert min(rates[1:]) > 0.8 * steady, (steady, rates)
        # Every request has ended: no slot may stay taken (a lease waiting out its 30 s).
        wait_until(lambda: replicas[0].slots_in_use() == 0, 2, "slots kept after the stall")
    finally:
        for admission in replicas:
            admission.close()
