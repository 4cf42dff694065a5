"""HTTP/1.1 framing: read one request off a connection, build response heads and chunks.

Hand-rolled rather than ``http.server`` for two reasons: the emulator is the yardstick a
benchmark measures the client against, so per-request work must stay tiny (no
``email.parser`` header parsing), and fault injection needs byte-level control of the socket
(resets, truncated bodies, half-sent streams).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol

MAX_LINE = 65536
MAX_HEADERS = 100
MAX_BODY = 64 * 1024 * 1024

STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("ascii") for s in HTTPStatus
}
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Readable(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...
    def read(self, size: int = -1, /) -> bytes: ...


class BadRequest(Exception):
    """The bytes on the connection are not an HTTP/1.x request we can answer."""


@dataclass(slots=True)
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    """Lower-cased names; a repeated header keeps its last value."""
    body: bytes

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


def read_request(rfile: Readable, send: Callable[[bytes], object]) -> Request | None:
    """Read one request; ``None`` when the peer closed the connection between requests.

    ``send`` answers ``Expect: 100-continue`` before the body is read.
    """
    line = rfile.readline(MAX_LINE + 1)
    # RFC 9112 section 2.2: a server should ignore empty lines before a request line.
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) > MAX_LINE:
        raise BadRequest("request line too long")
    parts = line.split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise BadRequest("malformed request line")
    method, target, version = (p.decode("latin-1") for p in parts)
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = rfile.readline(MAX_LINE + 1)
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            return None
        name, sep, value = line.partition(b":")
        if not sep or len(line) > MAX_LINE:
            raise BadRequest("malformed header line")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    else:
        raise BadRequest("too many headers")
    if headers.get("expect", "").lower() == "100-continue":
        send(CONTINUE)
    body = _read_body(rfile, headers)
    if body is None:
        return None
    return Request(method, target, version, headers, body)


def _read_body(rfile: Readable, headers: dict[str, str]) -> bytes | None:
    if "transfer-encoding" in headers:
        if headers["transfer-encoding"].lower() != "chunked":
            raise BadRequest("unsupported transfer-encoding")
        return _read_chunked(rfile)
    length_text = headers.get("content-length")
    if not length_text:
        return b""
    try:
        length = int(length_text)
    except ValueError:
        raise BadRequest("bad content-length") from None
    if length < 0 or length > MAX_BODY:
        raise BadRequest("bad content-length")
    body = rfile.read(length)
    return body if len(body) == length else None


def _read_chunked(rfile: Readable) -> bytes | None:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = rfile.readline(MAX_LINE + 1)
        if not size_line:
            return None
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadRequest("bad chunk size") from None
        if size == 0:
            break
        total += size
        if total > MAX_BODY:
            raise BadRequest("body too large")
        data = rfile.read(size + 2)
        if len(data) != size + 2:
            return None
        parts.append(data[:size])
    while True:  # trailer section
        line = rfile.readline(MAX_LINE + 1)
        if line in (b"\r\n", b"\n", b""):
            break
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The ``Date`` header value, formatted at most once per second."""
    global _date_cache
    now = int(time.time())
    cached = _date_cache
    if cached[0] != now:
        cached = (now, formatdate(now, usegmt=True).encode("ascii"))
        _date_cache = cached
    return cached[1]
