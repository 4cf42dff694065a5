"""Closing the runtime closes its Redis connections."""

from __future__ import annotations

from typing import Any

from redis_support import RedisServer, redis_overrides

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.config.loader import load_config
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
