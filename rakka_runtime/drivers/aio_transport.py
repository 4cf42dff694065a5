"""HTTP for the asyncio driver: one aiohttp ``ClientSession`` per deployment.

The session is made lazily, in the event loop that first uses it, with a connector sized
from the deployment's concurrency. Limits:

- ``connect``: aiohttp's ``sock_connect``;
- ``request_timeout``: the whole response head must arrive within it (an ``asyncio``
  timeout around the request, so a server trickling its headers is cut too); the deadline
  clips it;
- ``read_timeout``: aiohttp's ``sock_read`` (silence between body bytes); within the
  last ``read_timeout`` before the deadline a read is also bounded by the deadline.

aiohttp decompression is off (``auto_decompress=False``): the exchange decodes a
compressed body itself, in bounded steps. Only primitives leave this module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

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
        self._loop: asyncio.AbstractEventLoop | None = None

    def session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            self._loop = asyncio.get_running_loop()
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.connect, sock_read=self.read_timeout
                ),
                auto_decompress=False,
                # No cookies, as on the thread driver (urllib3 keeps none): an API client
                # sends the same request whatever a gateway set before, and skips the jar's
                # work per request.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("Accept-Encoding", "User-Agent"),
                raise_for_status=False,
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
        head_limit, limit = request_timeout, "request_timeout"
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("the request deadline passed before sending", limit="deadline")
            if left < head_limit:
                head_limit, limit = left, "deadline"
        session = self.session()
        try:
            async with asyncio.timeout(head_limit):
                raw = await session.request(
                    method,
                    self._url(url),
                    data=body,
                    headers={"Accept-Encoding": "identity", **headers},
                    allow_redirects=False,
                )
        except TimeoutError as exc:
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                raise Timeout(
                    f"connect timed out after {self.connect:.3g}s (connect)", limit="connect"
                ) from exc
            raise Timeout(
                f"no complete response head within {head_limit:.3g}s ({limit})", limit=limit
            ) from exc
        except aiohttp.ClientResponseError as exc:  # a malformed head (too many headers, ...)
            raise ProtocolError(
                f"malformed response head: {exc.message}", should_retry=False
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise NetworkError(f"cannot connect: {_reason(exc)}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise NetworkError(f"connection failed: {_reason(exc)}") from exc
        return Response(raw, self.read_timeout)

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

    __slots__ = ("_raw", "_read_timeout", "headers", "status")

    def __init__(self, raw: aiohttp.ClientResponse, read_timeout: float) -> None:
        self._raw = raw
        self._read_timeout = read_timeout
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
        """The body bytes that have arrived (waiting for some), ``b""`` at its end; raises
        Timeout / NetworkError on failure. (A coroutine, not an async generator: one
        frame less per block, and nothing for the loop's generator hooks to track.)"""
        content = self._raw.content
        read_timeout = self._read_timeout
        try:
            left = None if deadline is None else deadline - time.monotonic()
            if left is None or left >= read_timeout:
                return await content.readany()
            if left <= 0:
                raise Timeout("the request deadline passed mid-response", limit="deadline")
            try:
                async with asyncio.timeout(left):
                    return await content.readany()
            except TimeoutError as exc:
                if isinstance(exc, aiohttp.ServerTimeoutError):
                    raise
                raise Timeout("the request deadline passed mid-response", limit="deadline") from exc
        except InferenceError:
            raise
        except TimeoutError as exc:
            raise Timeout(
                f"no bytes for {read_timeout:.3g}s mid-response (read_timeout)",
                limit="read_timeout",
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise NetworkError(f"connection broke mid-response: {_reason(exc)}") from exc

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


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the server closed the connection before the response was complete"
    return text[:200]
