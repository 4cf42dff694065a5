"""HTTP over one shared urllib3 pool, with per-phase timeouts mapped to classified errors.

urllib3 has one "read" timeout for every socket read. We need two: ``request_timeout``
(request sent → first response byte) and ``read_timeout`` (between bytes of the body,
including between stream events), so a long healthy stream is never cut by the
first-byte limit. The first is passed to urllib3 for the header wait; the second is set
on the socket once the headers are in. A total ``deadline`` clips both.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import ProtocolError as Urllib3ProtocolError

from rakka_runtime.errors import InferenceError, NetworkError, Timeout

READ_SIZE = 65536


POOL_SIZE = 64  # connections kept per host unless the deployment allows more in flight


def make_pool(
    *, connect: float, request_timeout: float, maxsize: int = POOL_SIZE
) -> urllib3.PoolManager:
    """One pool manager per session; connections are reused across requests and streams."""
    return urllib3.PoolManager(
        num_pools=8,
        maxsize=maxsize,
        block=False,
        retries=False,  # retry is a policy of ours, not urllib3's
        timeout=urllib3.Timeout(connect=connect, read=request_timeout),
    )


@lru_cache(maxsize=32)
def _fixed_timeout(connect: float, read: float) -> urllib3.Timeout:
    # Without a deadline the pair is a deployment's constants: build it once. urllib3
    # clones the Timeout for each request, so sharing one is safe.
    return urllib3.Timeout(connect=connect, read=read)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def post(
    pool: urllib3.PoolManager,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    connect: float,
    request_timeout: float,
    deadline: float | None = None,
) -> urllib3.BaseHTTPResponse:
    """POST ``body``; return once the response headers are in (the body is not read).

    Raises :class:`Timeout` naming the limit that fired, or :class:`NetworkError`.
    """
    first_byte, limit = request_timeout, "request_timeout"
    # Connecting has its own limit: a short request_timeout must not shorten it.
    connect_within, connect_limit = connect, "connect"
    left = _remaining(deadline)
    if left is not None:
        if left <= 0:
            raise Timeout("the request deadline passed before sending", limit="deadline")
        if left < first_byte:
            first_byte, limit = left, "deadline"
        if left < connect_within:
            connect_within, connect_limit = left, "deadline"
    try:
        return pool.urlopen(
            "POST",
            url,
            body=body,
            headers=headers,
            timeout=(
                _fixed_timeout(connect, request_timeout)
                if left is None
                else urllib3.Timeout(connect=connect_within, read=first_byte)
            ),
            preload_content=False,
            redirect=False,
        )
    except NewConnectionError as exc:
        # Checked first: urllib3 derives it (a refused connection) from ConnectTimeoutError.
        raise NetworkError(f"cannot connect: {_reason(exc)}") from exc
    except ConnectTimeoutError as exc:
        raise Timeout(
            f"connect timed out after {connect_within:.3g}s ({connect_limit})",
            limit=connect_limit,
        ) from exc
    except ReadTimeoutError as exc:
        raise Timeout(f"no response within {first_byte:.3g}s ({limit})", limit=limit) from exc
    except (Urllib3ProtocolError, HTTPError, OSError) as exc:
        raise NetworkError(f"connection failed: {_reason(exc)}") from exc


def lowered_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The response headers as a plain dict with lower-case keys (repeated headers joined
    with ", "), built once per response so every policy and metric looks them up directly.

    urllib3's ``HTTPHeaderDict`` already keeps ``lower-case name → [name, *values]``; reading
    that is a few times cheaper than its public ``items()`` (a generator and a lookup per
    line). Any other mapping takes the public path.
    """
    container = getattr(headers, "_container", None)
    if isinstance(container, dict):
        return {
            key: values[1] if len(values) == 2 else ", ".join(values[1:])
            for key, values in container.items()
        }
    return {key.lower(): value for key, value in headers.items()}


def abort(response: urllib3.BaseHTTPResponse) -> None:
    """Cut an open response's connection, from any thread: a read blocked on it returns at
    once and fails. Does nothing once the connection went back to the pool (urllib3 then
    clears ``response.connection``), so a reused connection is never cut."""
    conn = getattr(response, "connection", None)
    sock = getattr(conn, "sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def set_read_timeout(response: urllib3.BaseHTTPResponse, seconds: float) -> None:
    """Switch the socket from the first-byte limit to the between-bytes limit."""
    conn = getattr(response, "connection", None)
    sock = getattr(conn, "sock", None)
    if isinstance(sock, socket.socket):
        sock.settimeout(seconds)


def read_body(
    response: urllib3.BaseHTTPResponse, *, read_timeout: float, deadline: float | None = None
) -> bytes:
    """Read a whole (non-streamed) body under the between-bytes limit."""
    if deadline is not None:  # the deadline is re-checked between reads
        return b"".join(iter_body(response, read_timeout=read_timeout, deadline=deadline))
    set_read_timeout(response, read_timeout)
    complete = False
    try:
        with _body_errors("read_timeout", read_timeout):
            data = response.read()
        complete = True
        return data
    finally:
        _finish(response, complete)


def iter_body(
    response: urllib3.BaseHTTPResponse, *, read_timeout: float, deadline: float | None = None
) -> Iterator[bytes]:
    """Yield body bytes as they arrive; raises Timeout / NetworkError on failure."""
    set_read_timeout(response, read_timeout)
    limit, silence = "read_timeout", read_timeout
    read1 = _fast_read1(response)
    complete = False
    try:
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout("the request deadline passed mid-response", limit="deadline")
                if left < read_timeout:
                    limit, silence = "deadline", left
                    set_read_timeout(response, left)
            with _body_errors(limit, silence):
                data = read1(READ_SIZE)
            if not data:
                complete = True
                return
            yield data
    finally:
        _finish(response, complete)


def _fast_read1(response: urllib3.BaseHTTPResponse) -> Callable[[int], bytes]:
    """The cheapest correct ``read1`` for this body.

    For a chunked, uncompressed body (every SSE stream we read), http.client's own
    ``read1`` already decodes the chunk framing; urllib3's wrapper adds a decoder check
    and buffer bookkeeping per call, about a quarter of the client's CPU per stream.
    Content-length bodies keep urllib3's (it enforces the length) and so do compressed ones.
    """
    fp = getattr(response, "_fp", None)
    if (
        isinstance(fp, http.client.HTTPResponse)
        and getattr(response, "chunked", False)
        and not response.headers.get("content-encoding")
    ):
        return fp.read1
    return response.read1


@contextmanager
def _body_errors(limit: str, silence: float) -> Iterator[None]:
    """Map what a body read can raise onto our errors (one place for both readers)."""
    try:
        yield
    except InferenceError:
        raise
    except (ReadTimeoutError, TimeoutError) as exc:
        raise Timeout(f"no bytes for {silence:.3g}s mid-response ({limit})", limit=limit) from exc
    except (Urllib3ProtocolError, HTTPError, http.client.HTTPException, OSError) as exc:
        raise NetworkError(f"connection broke mid-response: {_reason(exc)}") from exc


def _finish(response: urllib3.BaseHTTPResponse, complete: bool) -> None:
    # A fully read response hands its connection back to the pool; anything else (an
    # error, a caller that stopped early) closes it, since unread bytes would poison the
    # next request on that connection.
    if complete:
        response.release_conn()
    else:
        discard(response)


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
