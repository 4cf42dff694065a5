"""When Redis cannot be reached: fall back (or reject) at once, warn once, never hang.

"Unreachable" is a loopback port nobody listens on (refused at once) or a socket that
accepts and never answers (a hung Redis: only the socket timeout ends the wait). The
kill-and-restart run lives in test_shared_fleet.py.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis_support import free_port, redis_overrides

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.errors import Backpressure, CircuitOpen, ServerError
from rakka_runtime.plugins import BUILTIN_PLUGINS, PluginHooks, make_plugin_manager
from rakka_testing import RuntimeFactory

pytest.importorskip("redis", reason="the redis package is not installed (extra 'redis')")

STORE_LOG = "rakka_runtime.policies.shared.redis_store"


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A URL whose server accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # never accepted: connect succeeds (backlog), replies never come
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def shared_runtime(
    make_runtime: RuntimeFactory, emulator: Emulator, url: str, *overrides: str
) -> Any:
    pm = make_plugin_manager(disabled=set(BUILTIN_PLUGINS) - {"rate_limits", "circuit_breaker"})
    return make_runtime(
        emulator,
        "deployment.retry.enabled=false",
        *redis_overrides(url, "unreachable", limits=True, breaker=True),
        *overrides,
        hooks=PluginHooks(pm),
    )


def test_local_fallback_keeps_serving_with_local_limits_and_warns_once(
    emulator: Emulator, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens
    rt = shared_runtime(
        make_runtime,
        emulator,
        url,
        "deployment.rate_limits.requests_per_minute=3",
        "deployment.rate_limits.on_capacity_exhausted=reject",
        "deployment.circuit_breaker.failure_threshold=2",
    )
    caplog.set_level(logging.WARNING, logger=STORE_LOG)
    for _ in range(3):
        assert rt.chat("hi").text
    with pytest.raises(Backpressure):
        rt.chat("hi")  # the local bucket still limits
    assert emulator.stats.requests == 3
    warned = [r.getMessage() for r in caplog.records if r.name == STORE_LOG]
    assert len(warned) == 2, warned  # once for the limits, once for the breaker
    assert all("127.0.0.1" in message for message in warned)


def test_local_fallback_breaker_still_trips(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    rt = shared_runtime(
        make_runtime, emulator, url, "deployment.circuit_breaker.failure_threshold=2"
    )
    emulator.set_scenario({"rules": [{"fault": "server_error;status=503"}]})
    for _ in range(2):
        with pytest.raises(ServerError):
            rt.chat("hi")
    with pytest.raises(CircuitOpen):
        rt.chat("hi")
    assert emulator.stats.requests == 2


def test_reject_fails_calls_while_redis_is_unreachable(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    limits = shared_runtime(
        make_runtime, emulator, url, "deployment.rate_limits.redis.on_backend_failure=reject"
    )
    with pytest.raises(Backpressure, match="unreachable") as limited:
        limits.chat("hi")
    assert limited.value.retry_after is not None and limited.value.retry_after <= 1.0
    breaker = shared_runtime(
        make_runtime, emulator, url, "deployment.circuit_breaker.redis.on_backend_failure=reject"
    )
    with pytest.raises(CircuitOpen, match="unreachable") as opened:
        breaker.chat("hi")
    assert opened.value.retry_at is not None
    assert opened.value.retry_at - time.monotonic() <= 1.0
    assert emulator.stats.requests == 0


def test_a_hung_redis_delays_a_request_by_at_most_the_socket_timeout(
    emulator: Emulator, make_runtime: RuntimeFactory, silent_redis: str
) -> None:
    rt = shared_runtime(
        make_runtime,
        emulator,
        silent_redis,
        "deployment.rate_limits.requests_per_minute=1000",
        "deployment.rate_limits.redis.socket_timeout=200ms",
        "deployment.circuit_breaker.redis.socket_timeout=200ms",
    )
    started = time.monotonic()
    assert rt.chat("hi").text
    first = time.monotonic() - started
    # Breaker and limits each wait out one timeout, then fall back.
    assert 0.2 <= first < 2 * 0.2 + 0.6, first
    started = time.monotonic()
    for _ in range(5):
        assert rt.chat("hi").text
    assert time.monotonic() - started < 0.5  # down: Redis is not asked again for a second


def test_requests_queued_behind_a_hung_redis_wait_for_one_timeout_not_one_each(
    emulator: Emulator, make_runtime: RuntimeFactory, silent_redis: str
) -> None:
    pm = make_plugin_manager(disabled=set(BUILTIN_PLUGINS) - {"rate_limits"})
    rt = make_runtime(
        emulator,
        "deployment.retry.enabled=false",
        "deployment.rate_limits.requests_per_minute=1000",
        "deployment.rate_limits.redis.socket_timeout=300ms",
        *redis_overrides(silent_redis, "hung"),
        hooks=PluginHooks(pm),
    )
    took: list[float] = []

    def call() -> None:
        started = time.monotonic()
        rt.chat("hi")
        took.append(time.monotonic() - started)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(took) == 8
    # In line, only the head asks Redis; once it timed out, the rest fall back at once
    # (one after another, each asking again, would take 8 x 0.3 s).
    assert max(took) < 0.3 + 0.6, took
