"""HTTP for the asyncio driver: one aiohttp ``ClientSession`` per deployment.

The session is made lazily, in the event loop that first uses it, with a connector sized
from the deployment's concurrency. Limits:

- ``connect``: from the send until aiohttp starts reading the head: a connection from the
  pool or a new one (name resolution and TCP/TLS included), and the request's head
  written (aiohttp writes the body while it awaits the response head, so a large body is
  written under ``request_timeout``);
- ``request_timeout``: once the connection is up and the request sent, the whole response
  head must arrive within it (a server trickling its headers is cut too), so it never
  shortens the connect limit; the deadline clips it;
- ``read_timeout``: the longest a body read waits for bytes; the deadline clips it.

All three are the transport's :class:`~rakka_runtime.drivers.aio_deadlines.Deadlines`:
one loop timer for all its waits, rather than a timer per wait (an ``asyncio.timeout``
per request, aiohttp's ``sock_read`` rescheduled per received block), and one that gives
a wait the time a busy loop kept it from watching (aiohttp's ``sock_connect`` timer cut
connections the kernel had completed while the loop was busy). The head's clock starts
in the session's response class, which aiohttp asks to read the head once the request is
sent.

aiohttp decompression is off (``auto_decompress=False``): the exchange decodes a
compressed body itself, in bounded steps. Only primitives leave this module.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from rakka_runtime.drivers.aio_deadlines import Deadlines
from rakka_runtime.errors import InferenceError, NetworkError, ProtocolError, Timeout

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig

READ_SIZE = 65536
POOL_SIZE = 100  # the least connections a deployment with a concurrency limit may open
_MAX_URLS = 64  # parsed URLs a transport remembers
_DRAIN_AFTER_END = 0.005  # seconds the end of a body is awaited after the provider's end marker


class AioTransport:
    """A deployment's aiohttp session, bound to the first event loop that uses it."""

    def __init__(self, deployment: DeploymentConfig) -> None:
        timeouts = deployment.timeouts
        self.connect = timeouts.connect
        self.read_timeout = timeouts.read_timeout
        # No cap of aiohttp's own unless the deployment has one: a hidden connector limit
        # would queue requests the rate-limit policy already admitted (and time them out).
        in_flight = deployment.rate_limits.concurrent_requests
        self._limit = 0 if in_flight is None else max(POOL_SIZE, in_flight)
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self._identity: tuple[Mapping[str, str], Mapping[str, str]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: Deadlines | None = None
        # Requests connecting or sending -> (request_timeout, the deadline or inf):
        # their head's clock starts when aiohttp starts reading the head.
        self._sending: dict[asyncio.Task[object], tuple[float, float]] = {}

    def session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            self._loop = asyncio.get_running_loop()
            self._deadlines = Deadlines(self._loop)
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=0),
                # Every phase is bounded by the transport's deadlines, none by aiohttp.
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,
                # No cookies, as on the thread driver (urllib3 keeps none): an API client
                # sends the same request whatever a gateway set before, and skips the jar's
                # work per request.
                cookie_jar=aiohttp.DummyCookieJar(),
                # No skip_auto_headers: the request sets Accept-Encoding itself and the
                # provider its User-Agent, which aiohttp then leaves alone; skipping
                # costs a CIMultiDict and a copy of the headers per request.
                raise_for_status=False,
                response_class=_head_timed(self),
            )
        elif self._loop is not asyncio.get_running_loop():
            raise RuntimeError(
                "an AsyncRuntime is bound to the event loop that first used it; make one per loop"
            )
        return session

    async def send(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        request_timeout: float,
        deadline: float | None,
    ) -> Response:
        """Send; return once the whole response head is in."""
        now = time.monotonic()
        cap = math.inf if deadline is None else deadline
        if cap <= now:
            raise Timeout("the request deadline passed before sending", limit="deadline")
        session = self.session()
        deadlines = self._deadlines
        assert deadlines is not None
        task = asyncio.current_task()
        assert task is not None
        # Connecting (and writing the request) until head_awaited() starts the head's clock.
        self._sending[task] = (request_timeout, cap)
        deadlines.arm(task, min(cap, now + self.connect), cap)
        try:
            raw = await session.request(
                method,
                self._url(url),
                data=body,
                headers=self._with_identity(headers),
                allow_redirects=False,
            )
        except BaseException as exc:
            late = deadlines.leave(task)
            if late is not None:
                raise self._no_head(task, request_timeout, cap, late) from exc
            self._sending.pop(task, None)
            failure = _send_failure(exc)
            if failure is None:
                raise
            raise failure from exc
        late = deadlines.leave(task)
        if late is not None:  # the time was up as the head arrived
            raw.close()
            raise self._no_head(task, request_timeout, cap, late)
        if self._sending:  # aiohttp read the head without saying so: keep no stale entry
            self._sending.pop(task, None)
        return Response(raw, self.read_timeout, deadlines)

    def head_awaited(self, task: asyncio.Task[object]) -> None:
        """``task``'s request is sent and aiohttp reads the head: its clock starts now."""
        sending = self._sending.pop(task, None)
        if sending is not None and self._deadlines is not None:
            request_timeout, cap = sending
            self._deadlines.arm(task, min(cap, time.monotonic() + request_timeout), cap)

    def _no_head(
        self, task: asyncio.Task[object], request_timeout: float, cap: float, late: float
    ) -> Timeout:
        """What a wait for the head that ran out of time was cut by (noticed ``late``)."""
        connecting = self._sending.pop(task, None) is not None
        if time.monotonic() >= cap:
            what = "the response head" if not connecting else "a connection"
            return Timeout(f"the request deadline passed waiting for {what}", limit="deadline")
        if connecting:
            return Timeout(
                f"no connection made and request sent within {self.connect:.3g}s (connect)",
                limit="connect",
                late_by=late,
            )
        return Timeout(
            f"no complete response head within {request_timeout:.3g}s (request_timeout)",
            limit="request_timeout",
            late_by=late,
        )

    def _with_identity(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """``headers`` asking for an uncompressed body. A codec sends its session's one
        headers object until the credential changes: merged once per object, not per
        request (aiohttp copies what it is given)."""
        last = self._identity
        if last is None or last[0] is not headers:
            last = self._identity = (headers, {"Accept-Encoding": "identity", **headers})
        return last[1]

    def _url(self, url: str) -> URL:
        """``url`` parsed once (a deployment sends every request to the same one)."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = URL(url)
            if len(self._urls) < _MAX_URLS:
                self._urls[url] = parsed
        return parsed

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


class Response:
    """An open response: the head is in, the body not read yet."""

    __slots__ = ("_deadlines", "_raw", "_read_timeout", "headers", "status")

    def __init__(
        self, raw: aiohttp.ClientResponse, read_timeout: float, deadlines: Deadlines
    ) -> None:
        self._raw = raw
        self._read_timeout = read_timeout
        self._deadlines = deadlines
        self.status = raw.status
        items = raw.headers.items()
        headers = {key.lower(): value for key, value in items}
        if len(headers) != len(items):  # a repeated header: its values joined, in order
            headers = {}
            for key, value in items:
                name = key.lower()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers

    async def read(self, deadline: float | None) -> bytes:
        """The body bytes that have arrived (waiting up to ``read_timeout`` for some, less
        when the deadline is nearer), ``b""`` at its end; raises Timeout / NetworkError on
        failure. (A coroutine, not an async generator: one frame less per block, and
        nothing for the loop's generator hooks to track.)"""
        now = time.monotonic()
        due, limit = now + self._read_timeout, "read_timeout"
        if deadline is not None and deadline < due:
            if deadline <= now:
                raise Timeout("the request deadline passed mid-response", limit="deadline")
            due, limit = deadline, "deadline"
        deadlines = self._deadlines
        task = asyncio.current_task()
        assert task is not None
        deadlines.arm(task, due, math.inf if deadline is None else deadline)
        try:
            block = await self._raw.content.readany()
        except BaseException as exc:
            late = deadlines.leave(task)
            if late is not None:
                raise self._timed_out(limit, late) from exc
            if isinstance(exc, aiohttp.ClientError | OSError):
                raise NetworkError(f"connection broke mid-response: {_reason(exc)}") from exc
            raise
        late = deadlines.leave(task)
        if late is not None:  # the time was up as the bytes arrived
            raise self._timed_out(limit, late)
        return block

    def _timed_out(self, limit: str, late: float) -> Timeout:
        if limit == "deadline":
            return Timeout("the request deadline passed mid-response", limit="deadline")
        return Timeout(
            f"no bytes for {self._read_timeout:.3g}s mid-response (read_timeout)",
            limit="read_timeout",
            late_by=late,
        )

    async def finish(self, how: str) -> None:
        """Hand the connection back when the body was read to its end (``"complete"``),
        else close it. After the provider's end marker (``"ended"``) the rest of the body
        is awaited only an instant: a server that keeps the response open then costs the
        connection, never time."""
        raw = self._raw
        if how == "ended" and not raw.content.at_eof():
            try:
                async with asyncio.timeout(_DRAIN_AFTER_END):
                    rest = await raw.content.read(READ_SIZE)
                how = "complete" if not rest and raw.content.at_eof() else how
            except (TimeoutError, aiohttp.ClientError, OSError):
                pass
        elif how == "ended":
            how = "complete"
        if how == "complete":
            raw.release()
        else:
            raw.close()


def _head_timed(transport: AioTransport) -> type[aiohttp.ClientResponse]:
    """aiohttp's response class, telling ``transport`` when the head starts to be read."""

    class HeadTimed(aiohttp.ClientResponse):
        async def start(self, connection: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
            task = asyncio.current_task()
            if task is not None:
                transport.head_awaited(task)
            return await super().start(connection)

    return HeadTimed


def _send_failure(exc: BaseException) -> InferenceError | None:
    """What an exception from sending a request means (``None``: raise it as it is)."""
    if isinstance(exc, aiohttp.ClientResponseError):  # a malformed head (too many headers, ...)
        return ProtocolError(f"malformed response head: {exc.message}", should_retry=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return NetworkError(f"cannot connect: {_reason(exc)}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return NetworkError(f"connection failed: {_reason(exc)}")
    return None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):  # asyncio's text names no cause
        os_error = exc.os_error
        cause = os_error.strerror or type(os_error).__name__
        if isinstance(os_error, ConnectionRefusedError):
            cause = "connection refused"
        return f"{exc.host}:{exc.port}: {cause}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the server closed the connection before the response was complete"
    return text[:200]
