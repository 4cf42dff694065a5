"""Fixtures of the shared-policy tests: one real redis-server for the session (tests keep
apart by key prefix), and a server of its own for a test that kills it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis_support import REDIS_SERVER, SKIP_REASON, RedisServer, unique_prefix


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    pytest.importorskip("redis", reason="the redis package is not installed (extra 'redis')")
    server = RedisServer().start()
    yield server
    server.kill()


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A server only this test uses (it may kill and restart it)."""
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    pytest.importorskip("redis", reason="the redis package is not installed (extra 'redis')")
    server = RedisServer().start()
    yield server
    server.kill()


@pytest.fixture
def prefix() -> str:
    return unique_prefix()
