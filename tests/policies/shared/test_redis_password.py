"""``redis.password``: a secret reference, read on every new connection to a real Redis."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from redis_support import RedisServer

from rakka_runtime.config import load_config
from rakka_runtime.config.loader import dump_config_yaml
from rakka_runtime.config.schema import RateLimitPolicy
from rakka_runtime.config.validation import validate
from rakka_runtime.errors import ConfigError
from rakka_runtime.policies.line import Pending
from rakka_runtime.policies.shared.redis_admission import SharedAdmission

FIRST = "redis-canary-first-4b1e"
SECOND = "redis-canary-second-90ad"


def _admin(server: RedisServer, password: str | None) -> Any:
    import redis

    return redis.Redis.from_url(server.url, password=password, decode_responses=True)


def _shared(server: RedisServer, prefix: str, secret: Path) -> SharedAdmission:
    policy = validate(
        RateLimitPolicy,
        {
            "backend": "redis",
            "requests_per_minute": 60,
            "redis": {
                "url": server.url,
                "key_prefix": prefix,
                "password": {"from": "file", "path": str(secret)},
                "retry_interval": "50ms",
            },
        },
    )
    return SharedAdmission.from_policy("d", policy)


def _one_request(shared: SharedAdmission, driver: str) -> None:
    """Admit and release one request, with the blocking client or (each time in a new
    event loop, so a new asyncio client) with the asyncio one."""
    if driver == "sync":
        shared.release(shared.admit(0, wait=False), requests_used=1, tokens_used=0)
        return

    async def one() -> None:
        try:
            grant = await shared.areserve(0, wait=False)
            assert not isinstance(grant, Pending)
            await shared.arelease(grant, requests_used=1, tokens_used=0)
        finally:
            await shared.aclose()

    asyncio.run(one())


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_rotated_password_file_is_used_on_reconnection(
    own_redis_server: RedisServer,
    prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    driver: str,
) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(FIRST + "\n")
    _admin(own_redis_server, None).config_set("requirepass", FIRST)
    caplog.set_level(logging.DEBUG)

    shared = _shared(own_redis_server, prefix, secret)
    _one_request(shared, driver)
    assert shared.shared  # talking to Redis, authenticated
    assert shared.levels()["requests"] == pytest.approx(59.0, abs=0.5)

    # Rotate: Redis takes the new password and drops every connection; the file follows.
    admin = _admin(own_redis_server, FIRST)
    admin.config_set("requirepass", SECOND)
    secret.write_text(SECOND + "\n")
    admin.client_kill_filter(_type="normal")
    _one_request(shared, driver)
    assert shared.shared  # reconnected with the password read from the file again
    assert shared.levels()["requests"] == pytest.approx(58.0, abs=0.5)

    # A wrong password: Redis counts as down (the local fallback serves), and nothing
    # printed holds a password.
    secret.write_text("not-the-password")
    _admin(own_redis_server, SECOND).client_kill_filter(_type="normal")
    _one_request(shared, driver)
    assert not shared.shared
    shared.close()
    for text in (caplog.text, repr(shared)):
        assert FIRST not in text and SECOND not in text


def test_a_missing_password_secret_fails_the_start(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        _shared(redis_server, prefix, tmp_path / "absent")
    assert info.value.path == "deployment.rate_limits.redis.password"


def test_password_in_config_shows_as_a_reference_and_conflicts_with_a_url_password() -> None:
    config = load_config(
        [
            "deployment.rate_limits.redis.password={from: env, name: REDIS_PASSWORD}",
            "deployment.circuit_breaker.redis.password={from: inline, value: " + FIRST + "}",
        ]
    )
    shown = dump_config_yaml(config)
    assert "name: REDIS_PASSWORD" in shown
    assert FIRST not in shown
    with pytest.raises(ConfigError) as info:
        load_config(
            [
                f"deployment.rate_limits.redis.url=redis://:{FIRST}@cache:6379/0",
                "deployment.rate_limits.redis.password={from: env, name: REDIS_PASSWORD}",
            ]
        )
    assert str(info.value) == (
        "deployment.rate_limits.redis: the URL carries a password and `password` is set: keep one"
    )
    assert FIRST not in str(info.value)
