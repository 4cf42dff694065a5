"""HTTP for the thread driver: one urllib3 pool per session, bounded in time whatever the
server sends.

urllib3's timeouts bound each socket read, not a phase: a server that sends its headers
one byte every half second never trips a 2 s read timeout. So every exchange also has a
*watch*: a shared reaper thread shuts the socket down when the phase's absolute limit
passes — ``request_timeout`` (or the deadline, if sooner) until the response head is
complete, then the request's deadline — and the blocked read fails at once. The same
watch is how ``cancel()`` cuts a request from another thread in any phase, including
while it waits for headers. Between body reads the socket timeout is ``read_timeout``.

Only primitives leave this module: status, lower-cased headers, byte blocks.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import ProtocolError as Urllib3ProtocolError
from urllib3.util.url import parse_url

from rakka_runtime.errors import InferenceError, NetworkError, ProtocolError, Timeout

READ_SIZE = 65536
POOL_SIZE = 64  # connections kept per host unless the deployment allows more in flight
_DRAIN_AFTER_END = 0.005  # seconds the end of a body is awaited after the provider's end marker

_MAX_ROUTES = 64  # URLs (and timeout pairs) a pool manager remembers
_current = threading.local()  # the Watch of the exchange this thread is sending


class _Reaper:
    """One daemon thread that fires the earliest due watch (lazily started).

    Disarming only marks a watch; its heap entry is dropped when due, or earlier by a
    compaction once stale entries outnumber live ones, so the heap stays proportional to
    the requests waiting for their heads, not to the request rate.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._live = 0  # armed watches (approximately: a disarm is counted lazily)

    def arm(self, watch: Watch, when: float) -> None:
        with self._cond:
            heap = self._heap
            if len(heap) > 64 and len(heap) > 2 * self._live:
                heap[:] = [entry for entry in heap if entry[2].when == entry[0]]
                heapq.heapify(heap)
                self._live = len(heap)
            heapq.heappush(heap, (when, next(self._seq), watch))
            self._live += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rakka-reaper", daemon=True)
                self._thread.start()
            if heap[0][2] is watch:
                self._cond.notify()

    def disarmed(self) -> None:
        self._live -= 1  # unlocked and approximate: it only paces compaction

    def _run(self) -> None:
        heap = self._heap
        while True:
            with self._cond:
                while True:
                    while heap and heap[0][2].when != heap[0][0]:  # re-armed or disarmed
                        heapq.heappop(heap)
                    if not heap:
                        self._cond.wait()
                        continue
                    delay = heap[0][0] - time.monotonic()
                    if delay <= 0:
                        _, _, watch = heapq.heappop(heap)
                        self._live -= 1
                        break
                    self._cond.wait(delay)
            watch.fire()


_REAPER = _Reaper()


class Watch:
    """The time limit and the cancel switch of one exchange's socket."""

    __slots__ = ("_conn", "_lock", "fired", "head_limit", "head_within", "limit", "when")

    def __init__(self, head_within: float = 0.0, head_limit: str = "") -> None:
        self.head_within, self.head_limit = head_within, head_limit
        self._conn: HTTPConnection | None = None
        self._lock = threading.Lock()
        self.when: float | None = None
        self.limit = ""  # which limit the current phase is bound by
        self.fired = ""  # "" or the limit that cut the socket ("cancel" for a cancel)

    def arm(self, when: float | None, limit: str) -> None:
        self.when, self.limit = when, limit
        if when is not None:
            _REAPER.arm(self, when)

    def disarm(self) -> None:
        if self.when is not None:
            self.when = None
            _REAPER.disarmed()

    def attach(self, conn: HTTPConnection | None) -> None:
        with self._lock:
            self._conn = conn
            if conn is not None and self.fired:
                _shutdown(conn)

    def fire(self, why: str | None = None) -> None:
        with self._lock:
            if why is None and self.when is None:
                return  # disarmed meanwhile
            self.fired = why or self.limit
            if self._conn is not None:
                _shutdown(self._conn)

    def cancel(self) -> None:
        self.fire("cancel")


def _shutdown(conn: HTTPConnection) -> None:
    sock = getattr(conn, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _WatchedMixin:
    """Publishes the connection to the exchange's watch while it waits for the head."""

    def getresponse(self) -> urllib3.response.HTTPResponse:
        watch: Watch | None = getattr(_current, "watch", None)
        if watch is not None:  # the request is sent: the head limit runs from here
            watch.arm(time.monotonic() + watch.head_within, watch.head_limit)
            watch.attach(self)  # type: ignore[arg-type]
        return super().getresponse()  # type: ignore[misc,no-any-return]


class _Conn(_WatchedMixin, HTTPConnection):  # type: ignore[misc]
    pass


class _SConn(_WatchedMixin, HTTPSConnection):  # type: ignore[misc]
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Conn


class _SPool(HTTPSConnectionPool):
    ConnectionCls = _SConn


class PoolManager(urllib3.PoolManager):
    """urllib3's pool manager, plus a memo from a URL to its host's connection pool and
    request target. Every request of a deployment goes to one URL; parsing it and finding
    its pool again on each request (what ``PoolManager.urlopen`` does) cost about a tenth
    of the client's CPU per non-streamed request."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._routes: dict[str, tuple[HTTPConnectionPool, str]] = {}
        self._timeouts: dict[tuple[float, float], urllib3.Timeout] = {}

    def route(self, url: str) -> tuple[HTTPConnectionPool, str]:
        """The connection pool of ``url``'s host, and the request target to send it."""
        route = self._routes.get(url)
        if route is not None and route[0].pool is not None:  # not closed (evicted, cleared)
            return route
        route = (self.connection_from_url(url), parse_url(url).request_uri)
        if len(self._routes) < _MAX_ROUTES:
            self._routes[url] = route
        return route

    def timeout(self, connect: float, read: float) -> urllib3.Timeout:
        """A (shared, never mutated: urllib3 clones it per request) ``Timeout``."""
        key = (connect, read)
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = urllib3.Timeout(connect=connect, read=read)
            if len(self._timeouts) < _MAX_ROUTES:
                self._timeouts[key] = timeout
        return timeout


def make_pool(*, connect: float, request_timeout: float, maxsize: int = POOL_SIZE) -> PoolManager:
    """One pool manager per session; connections are reused across requests and streams."""
    manager = PoolManager(
        num_pools=8,
        maxsize=maxsize,
        block=False,
        retries=False,  # retry is a policy of ours, not urllib3's
        timeout=urllib3.Timeout(connect=connect, read=request_timeout),
    )
    manager.pool_classes_by_scheme = {"http": _Pool, "https": _SPool}
    return manager


class Response:
    """An open response: the head is in, the body not read yet."""

    __slots__ = ("_raw", "_watch", "headers", "status")

    def __init__(self, raw: urllib3.BaseHTTPResponse, watch: Watch) -> None:
        self._raw = raw
        self._watch = watch
        self.status = raw.status
        self.headers = lowered_headers(raw.headers)

    def reader(self, read_timeout: float, deadline: float | None) -> Callable[[], bytes]:
        """A function returning the body bytes that have arrived (waiting for some), ``b""``
        at its end (raw: content encodings are the exchange's). Each read waits at most
        ``read_timeout``, and never past the deadline."""
        raw = self._raw
        set_read_timeout(raw, read_timeout)
        read1 = _fast_read1(raw)
        failure = self._failure
        bounded = deadline is not None and deadline - time.monotonic() < read_timeout

        def read() -> bytes:
            nonlocal bounded
            limit, silence = "read_timeout", read_timeout
            if deadline is not None:
                if not bounded and deadline - time.monotonic() < read_timeout:
                    bounded = True  # from here on every read is bounded by the deadline
                if bounded:
                    limit, silence = "deadline", deadline - time.monotonic()
                    if silence <= 0:
                        raise Timeout("the request deadline passed mid-response", limit="deadline")
                    set_read_timeout(raw, silence)
            try:
                return read1(READ_SIZE)
            except BaseException as exc:
                raise failure(exc, limit, silence) from exc

        return read

    def finish(self, how: str) -> None:
        """Hand the connection back when the body was read to its end (``"complete"``),
        else close it. After the provider's end marker (``"ended"``) the rest of the body
        is awaited only an instant: a server that keeps the response open then costs the
        connection, never time."""
        raw = self._raw
        self._watch.disarm()
        if how == "complete" or (how == "ended" and _ended_soon(raw)):
            raw.release_conn()
        else:
            discard(raw)

    def abort(self) -> None:
        self._watch.cancel()

    def _failure(self, exc: BaseException, limit: str, silence: float) -> BaseException:
        if self._watch.fired == "cancel":
            return NetworkError("the connection was cut (cancelled)")
        if isinstance(exc, InferenceError):
            return exc
        if isinstance(exc, ReadTimeoutError | TimeoutError):
            if limit == "deadline":
                return Timeout("the request deadline passed mid-response", limit="deadline")
            return Timeout(
                f"no bytes for {silence:.3g}s mid-response (read_timeout)", limit="read_timeout"
            )
        if isinstance(exc, Urllib3ProtocolError | HTTPError | http.client.HTTPException | OSError):
            return NetworkError(f"connection broke mid-response: {_reason(exc)}")
        return exc


def send(
    manager: PoolManager,
    method: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    connect: float,
    request_timeout: float,
    deadline: float | None,
    on_cancel: Callable[[Callable[[], None] | None], None],
) -> Response:
    """Send; return once the whole response head is in (the body is not read).

    Raises :class:`Timeout` naming the limit that fired, or :class:`NetworkError`.
    """
    head_limit, limit = request_timeout, "request_timeout"
    connect_within, connect_limit = connect, "connect"
    now = time.monotonic()
    if deadline is not None:
        left = deadline - now
        if left <= 0:
            raise Timeout("the request deadline passed before sending", limit="deadline")
        if left < head_limit:
            head_limit, limit = left, "deadline"
        if left < connect_within:
            connect_within, connect_limit = left, "deadline"
    watch = Watch(head_limit, limit)  # armed once the request is sent
    on_cancel(watch.cancel)
    _current.watch = watch
    try:
        pool, target = manager.route(url)
        raw = pool.urlopen(
            method,
            target,
            body=body,
            headers=headers,
            timeout=manager.timeout(connect_within, head_limit),
            preload_content=False,
            decode_content=False,
            redirect=False,
            assert_same_host=False,
        )
    except BaseException as exc:
        watch.disarm()
        raise _send_failure(exc, watch, connect_within, connect_limit, head_limit, limit) from exc
    finally:
        _current.watch = None
    watch.disarm()
    if watch.fired:  # fired just as the head completed: the socket is already cut
        discard(raw)
        raise _send_failure(OSError("cut"), watch, connect_within, connect_limit, head_limit, limit)
    return Response(raw, watch)


def _send_failure(
    exc: BaseException,
    watch: Watch,
    connect_within: float,
    connect_limit: str,
    head_limit: float,
    limit: str,
) -> BaseException:
    if watch.fired == "cancel":
        return NetworkError("the connection was cut (cancelled)")
    if watch.fired:
        return Timeout(
            f"no complete response head within {head_limit:.3g}s ({watch.fired})",
            limit=watch.fired,
        )
    if isinstance(exc, NewConnectionError):
        # Checked first: urllib3 derives it (a refused connection) from ConnectTimeoutError.
        return NetworkError(f"cannot connect: {_reason(exc)}")
    if isinstance(exc, ConnectTimeoutError):
        return Timeout(
            f"connect timed out after {connect_within:.3g}s ({connect_limit})",
            limit=connect_limit,
        )
    if isinstance(exc, ReadTimeoutError):
        return Timeout(f"no response within {head_limit:.3g}s ({limit})", limit=limit)
    if _too_many_headers(exc):
        error = ProtocolError(f"malformed response head: {_reason(exc)}", should_retry=False)
        return error
    if isinstance(exc, Urllib3ProtocolError | HTTPError | OSError):
        return NetworkError(f"connection failed: {_reason(exc)}")
    return exc


def _too_many_headers(exc: BaseException) -> bool:
    chain: BaseException | None = exc
    for _ in range(8):
        if chain is None:
            return False
        if isinstance(chain, http.client.HTTPException) and "headers" in str(chain):
            return True
        chain = chain.__context__ or chain.__cause__
    return False


def lowered_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The response headers as a plain dict with lower-case keys (repeated headers joined
    with ", "), built once per response so every policy and metric looks them up directly.

    urllib3's ``HTTPHeaderDict`` already keeps ``lower-case name → [name, *values]``; reading
    that is a few times cheaper than its public ``items()``. Any other mapping takes the
    public path.
    """
    container = getattr(headers, "_container", None)
    if isinstance(container, dict):
        return {
            key: values[1] if len(values) == 2 else ", ".join(values[1:])
            for key, values in container.items()
        }
    return {key.lower(): value for key, value in headers.items()}


def set_read_timeout(response: urllib3.BaseHTTPResponse, seconds: float) -> None:
    """Switch the socket from the head limit to the between-bytes limit."""
    conn = getattr(response, "connection", None)
    sock = getattr(conn, "sock", None)
    if isinstance(sock, socket.socket):
        sock.settimeout(seconds)


def _fast_read1(response: urllib3.BaseHTTPResponse) -> Callable[[int], bytes]:
    """The cheapest correct ``read1`` for this body.

    For a chunked body (every SSE stream we read), http.client's own ``read1`` already
    decodes the chunk framing; urllib3's wrapper adds buffer bookkeeping per call, about a
    quarter of the client's CPU per stream. Content-length bodies keep urllib3's (it
    enforces the length).
    """
    fp = getattr(response, "_fp", None)
    if isinstance(fp, http.client.HTTPResponse) and getattr(response, "chunked", False):
        return fp.read1
    return lambda n: response.read1(n, decode_content=False)


def _ended_soon(raw: urllib3.BaseHTTPResponse) -> bool:
    """Whether the body ends within an instant (its closing framing already sent)."""
    conn = getattr(raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if not isinstance(sock, socket.socket):
        return False
    try:
        sock.settimeout(_DRAIN_AFTER_END)
        fp = getattr(raw, "_fp", None)
        read = fp.read1 if isinstance(fp, http.client.HTTPResponse) else raw.read1
        return not read(READ_SIZE) and bool(raw.isclosed())  # type: ignore[attr-defined]
    except (OSError, HTTPError, http.client.HTTPException, ValueError):
        return False


def discard(response: urllib3.BaseHTTPResponse) -> None:
    """Give up on a response: close it rather than drain an unknown remainder."""
    try:
        response.close()
    finally:
        response.release_conn()


def _reason(exc: BaseException) -> str:
    # urllib3 messages can embed the pool repr and URL; keep the root cause only.
    chain: list[BaseException] = [exc]
    while chain[-1].__context__ is not None and len(chain) < 8:
        chain.append(chain[-1].__context__)
    if any(isinstance(e, http.client.IncompleteRead) for e in chain):
        return "the server closed the connection before the response was complete"
    for e in chain:
        if isinstance(e, ConnectionResetError):
            return "connection reset by the server"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
    text = str(getattr(exc, "reason", None) or chain[-1] or exc)
    return text[:200]
