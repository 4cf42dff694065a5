"""Closing the runtime closes its Redis connections, also under a call in flight."""

from __future__ import annotations

from typing import Any

import pytest
from redis_support import RedisServer, redis_overrides

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.config.loader import load_config
from rakka_runtime.config.schema import RateLimitPolicy
from rakka_runtime.config.validation import validate
from rakka_runtime.policies.shared.redis_admission import SharedAdmission
from rakka_runtime.policies.shared.redis_store import BackendUnavailable
from rakka_runtime.runtime import Runtime


def _clients(server: RedisServer) -> int:
    probe: Any = server.client()
    try:
        # Every connection but the probe's own.
        return len(probe.client_list()) - 1
    finally:
        probe.close()


def test_runtime_close_releases_redis_connections(
    own_redis_server: RedisServer, prefix: str
) -> None:
    with Emulator() as emu:
        runtime = Runtime(
            load_config(
                [
                    "deployment=openai",
                    f"deployment.variant.endpoint={emu.url}/v1",
                    "deployment.api_key=null",
                    "deployment.rate_limits.requests_per_minute=600",
                    *redis_overrides(own_redis_server.url, prefix, breaker=True),
                ]
            )
        )
        assert runtime.chat("hello").text
        assert _clients(own_redis_server) >= 1
        runtime.close()
    assert _clients(own_redis_server) == 0


def test_a_call_after_close_fails_at_once_as_closed_not_as_redis_down(
    own_redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A background settlement may still call Redis as the runtime closes. Such a call
    ends as 'closed': it does not open a new connection, and Redis is not counted down.
    (A call already in flight when the client closed failed as redis-py's broken reader,
    an AttributeError that killed the settlement thread: the store now maps whatever a
    closed client raises to the same 'closed'.)"""
    policy = validate(
        RateLimitPolicy,
        {
            "backend": "redis",
            "requests_per_minute": 600,
            "redis": {"url": own_redis_server.url, "key_prefix": prefix},
        },
    )
    admission = SharedAdmission.from_policy("d", policy)
    store = admission._store
    assert admission.slots_in_use() == 0  # connected
    admission.close()
    assert _clients(own_redis_server) == 0
    with pytest.raises(BackendUnavailable, match="closed"):
        store.call(admission._redis.peek([]))
    assert _clients(own_redis_server) == 0  # no connection opened again
    assert store.healthy
    assert "unreachable" not in caplog.text
