"""One Redis connection for a shared policy, its Lua scripts, and its health.

A call that fails (connection refused or reset, a timeout, an error reply) marks the
store *down*: the policy falls back (see ``on_backend_failure``) and a warning is logged
once per outage. While down, Redis is not asked at all, so requests do not each pay a
timeout; at most every ``retry_interval`` one caller is let through to try it again, and
the first call that succeeds brings the store back (logged at info).

redis-py is imported here, when a store is created, and only then: a runtime that never
uses ``backend: redis`` does not need the package.

Both drivers share one logic: a policy writes what it asks Redis as *steps*, a generator
that yields :class:`Call` values and is sent each reply (or has
:class:`BackendUnavailable` thrown in). :meth:`RedisStore.drive` runs steps with redis-py's
blocking client (threads); :meth:`RedisStore.adrive` with its asyncio client, on the
running event loop, with the same scripts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from rakka_runtime.errors import ConfigError

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from rakka_runtime.config.schema import RedisBackend, SecretRef

__all__ = [
    "BackendUnavailable",
    "Call",
    "LuaScript",
    "RedisStore",
    "Steps",
    "key",
    "reply_as_is",
    "safe_url",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

ASYNC_CONNECTIONS = 1024
"""Most connections of a store's asyncio client. A call holds one for its round trip, and
on a busy event loop that lasts until the loop comes back to it; the blocking client has
no limit at all (one connection per thread that calls at once)."""


class BackendUnavailable(Exception):
    """Redis could not serve this call; the caller falls back (or rejects)."""


@dataclass(frozen=True)
class LuaScript:
    """A script shipped in ``lua/``, run by SHA and sent in full when Redis lacks it."""

    name: str
    text: str = field(repr=False)
    sha: str = field(repr=False)

    @classmethod
    def load(cls, name: str) -> LuaScript:
        text = resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")
        return cls(name, text, hashlib.sha1(text.encode("utf-8")).hexdigest())


def reply_as_is(reply: Any) -> Any:
    return reply


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One script to run in Redis, and how to read its reply."""

    script: LuaScript
    keys: Sequence[str]
    args: Sequence[Any]
    read: Callable[[Any], T] = reply_as_is


Steps = Generator[Call[Any], Any, T]
"""What a policy asks Redis, one :class:`Call` at a time, ending with its answer."""


def _advance(
    steps: Steps[Any], reply: Any, failure: BackendUnavailable | None
) -> tuple[Call[Any] | None, Any]:
    """Hand ``steps`` the last reply, or throw in the failure: ``(next call, None)``, or
    ``(None, answer)`` once they are done."""
    try:
        return (steps.send(reply) if failure is None else steps.throw(failure)), None
    except StopIteration as stop:
        return None, stop.value


def key(prefix: str, kind: str, name: str, part: str) -> str:
    """``prefix:{kind:name}:part``: the braces keep a deployment's keys in one Redis
    Cluster hash slot, as a script touching several keys requires."""
    return f"{prefix}:{{{kind}:{name}}}:{part}"


def safe_url(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _PasswordFromSecret:
    """redis-py's credential provider protocol over a secret reference: asked on every new
    connection, so a rotated password file is read when Redis drops the old connections."""

    def __init__(self, ref: SecretRef, path: str, auth_error: type[Exception]) -> None:
        self._ref = ref
        self._path = path
        self._auth_error = auth_error

    def check(self) -> None:
        """Read the secret now: a missing one fails the start (ConfigError), not a call."""
        self._read()

    async def get_credentials_async(self) -> tuple[str]:
        # redis-py's asyncio client asks this one; the secret is a small local read.
        return self.get_credentials()

    def get_credentials(self) -> tuple[str]:
        try:
            return (self._read(),)
        except ConfigError as exc:
            # Raised inside redis-py's connect: as its own error type, the store counts it
            # as Redis being down (fallback, retried) rather than failing the request.
            # The message names the reference, never the value.
            raise self._auth_error(str(exc)) from None

    def _read(self) -> str:
        from rakka_runtime.secrets import resolve_secret

        return resolve_secret(self._ref, path=self._path, header=False).reveal()

    def __repr__(self) -> str:
        return f"_PasswordFromSecret({self._path})"


class RedisStore:
    """A Redis client with short timeouts plus the up/down state of that Redis.

    :param what: names the policy in log lines ("rate limits of deployment 'x'").
    :param config_path: where ``backend: redis`` was set, for the error without redis-py.
    """

    def __init__(
        self,
        config: RedisBackend,
        *,
        what: str,
        config_path: str = "backend",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(
                config_path,
                "redis needs the redis package: pip install 'rakka-runtime[redis]'",
            ) from exc
        self.config = config
        self.what = what
        self.url = safe_url(config.url)
        self._clock = clock
        credentials: dict[str, Any] = {}
        self._failures: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        self._closed = False
        if config.password is not None:
            policy_path = config_path.rpartition(".")[0] or config_path
            provider = _PasswordFromSecret(
                config.password,
                f"{policy_path}.redis.password",
                redis.exceptions.AuthenticationError,
            )
            provider.check()
            credentials["credential_provider"] = provider
        # One immediate retry on a broken connection only: after a Redis restart every
        # pooled socket is dead, and the retry reconnects instead of failing the call. A
        # timeout is not retried (that would double the time a request may lose here).
        self._options: dict[str, Any] = dict(
            socket_timeout=config.socket_timeout,
            socket_connect_timeout=config.socket_connect_timeout,
            decode_responses=True,
            **credentials,
        )
        self.client: redis.Redis = redis.Redis.from_url(
            config.url,
            retry=Retry(NoBackoff(), 1, (redis.exceptions.ConnectionError,)),
            **self._options,
        )
        # The asyncio client is made in the first event loop that asks (its connections
        # belong to that loop); see :meth:`_aclient`.
        self._aclient: redis.asyncio.Redis | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._noscript: type[BaseException] = redis.exceptions.NoScriptError
        self._lock = threading.Lock()
        self._healthy = True
        self._next_check = 0.0

    @property
    def healthy(self) -> bool:
        return self._healthy

    def usable(self) -> bool:
        """Whether to ask Redis now: always while up; while down, True for one caller per
        ``retry_interval`` (that caller's call is the reconnection attempt)."""
        if self._healthy:
            return True
        with self._lock:
            now = self._clock()
            if self._healthy or now >= self._next_check:
                self._next_check = now + self.config.retry_interval
                return True
            return False

    def retry_in(self) -> float:
        """Seconds until Redis will be tried again (0 while it is up)."""
        return 0.0 if self._healthy else max(0.0, self._next_check - self._clock())

    def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` atomically in Redis.

        :raises BackendUnavailable: Redis failed; the store is now down.
        """
        if self._closed:
            raise BackendUnavailable(f"the Redis client for the {self.what} is closed")
        client = self.client
        try:
            try:
                reply = client.evalsha(script.sha, len(keys), *keys, *args)
            except self._noscript:
                # A restarted Redis has lost its script cache; EVAL caches it again.
                reply = client.eval(script.text, len(keys), *keys, *args)
        except Exception as exc:
            if self._closed:
                # Closed under a call in another thread (a background settlement): redis-py
                # then fails in odd ways (its reader gone), and Redis is not down.
                raise BackendUnavailable(f"the Redis client for the {self.what} is closed") from exc
            if not isinstance(exc, self._failures):
                raise
            self._down(exc)
            raise BackendUnavailable(f"Redis at {self.url}: {exc}") from exc
        if not self._healthy:
            self._up()
        return reply

    def call(self, call: Call[T]) -> T:
        """Run one :class:`Call` (blocking). :raises BackendUnavailable: as :meth:`run`."""
        return call.read(self.run(call.script, call.keys, call.args))

    def drive(self, steps: Steps[T]) -> T:
        """Run ``steps`` on this thread with the blocking client; returns their answer."""
        reply: Any = None
        failure: BackendUnavailable | None = None
        while True:
            call, answer = _advance(steps, reply, failure)
            if call is None:
                return answer  # type: ignore[no-any-return]
            try:
                reply, failure = self.call(call), None
            except BackendUnavailable as exc:
                reply, failure = None, exc

    async def adrive(self, steps: Steps[T]) -> T:
        """Run ``steps`` with the asyncio client on the running loop: the same steps, the
        same scripts and the same up/down bookkeeping as :meth:`drive`."""
        reply: Any = None
        failure: BackendUnavailable | None = None
        while True:
            call, answer = _advance(steps, reply, failure)
            if call is None:
                return answer  # type: ignore[no-any-return]
            try:
                reply, failure = await self.acall(call), None
            except BackendUnavailable as exc:
                reply, failure = None, exc

    async def acall(self, call: Call[T]) -> T:
        """Run one :class:`Call` on the running loop.

        :raises BackendUnavailable: Redis failed; the store is now down.
        """
        client = self._aclient_here()
        if client is None:
            # This store's asyncio client belongs to another loop that still runs: its
            # connections cannot serve this one, so the blocking client does, in a thread.
            return await asyncio.to_thread(self.call, call)
        keys, args = call.keys, call.args
        try:
            try:
                reply = await client.evalsha(call.script.sha, len(keys), *keys, *args)
            except self._noscript:
                reply = await client.eval(call.script.text, len(keys), *keys, *args)
        except self._failures as exc:
            self._down(exc)
            raise BackendUnavailable(f"Redis at {self.url}: {exc}") from exc
        if not self._healthy:
            self._up()
        return call.read(reply)

    def _aclient_here(self) -> redis.asyncio.Redis | None:
        """The asyncio client of the running loop (made now if there is none, or if the
        loop it belonged to is closed); ``None`` while another live loop owns it."""
        loop = asyncio.get_running_loop()
        if self._aclient is not None and self._aloop is loop:
            return self._aclient
        if self._aloop is not None and not self._aloop.is_closed():
            return None
        import redis.asyncio
        import redis.exceptions
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # A blocking pool: past ASYNC_CONNECTIONS calls at once, a call waits (at most the
        # socket timeout) for a connection; redis-py's default asyncio pool refuses the
        # 101st concurrent call ("Too many connections"), which counted as Redis down.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.config.url,
            max_connections=ASYNC_CONNECTIONS,
            timeout=self.config.socket_timeout,
            retry=Retry(NoBackoff(), 1, (redis.exceptions.ConnectionError,)),
            **self._options,
        )
        self._aclient = redis.asyncio.Redis.from_pool(pool)  # closing it closes the pool
        self._aloop = loop
        return self._aclient

    async def aclose(self) -> None:
        """Close the asyncio client's connections if they belong to the running loop."""
        client = self._aclient
        if client is not None and self._aloop is asyncio.get_running_loop():
            self._aclient = self._aloop = None
            await client.aclose()

    def close(self) -> None:
        """Close the blocking client (an asyncio client is closed by :meth:`aclose`, on its
        own loop; one left open is dropped with that loop)."""
        self._closed = True
        self.client.close()

    def _down(self, exc: BaseException) -> None:
        with self._lock:
            self._next_check = self._clock() + self.config.retry_interval
            if not self._healthy:
                return
            self._healthy = False
        fallback = (
            "this process keeps its own state"
            if self.config.on_backend_failure == "local"
            else "calls are rejected"
        )
        log.warning(
            "Redis at %s is unreachable for the %s (%s: %s); %s until it answers again "
            "(tried every %gs)",
            self.url,
            self.what,
            type(exc).__name__,
            exc,
            fallback,
            self.config.retry_interval,
        )

    def _up(self) -> None:
        with self._lock:
            if self._healthy:
                return
            self._healthy = True
        log.info("Redis at %s answers again: sharing the %s again", self.url, self.what)
