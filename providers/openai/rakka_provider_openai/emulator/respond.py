"""Writing one response on a connection, including the wire-level half of a fault.

Every method returns whether the connection may carry another request; the connection loop
closes it otherwise.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Sequence

from .faults import Fault
from .framing import LAST_CHUNK, STATUS_LINES, chunk, http_date

JSON = b"application/json"
EVENT_STREAM = b"text/event-stream; charset=utf-8"
MALFORMED_BODY = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [ <<'
MALFORMED_EVENT = b'data: {"id": "chatcmpl-malformed", "choices": [ <<\n\n'
_DRIP_PIECES = 8


class Responder:
    __slots__ = ("_chunked", "_keep_alive", "_sock", "_started", "_wait", "headers")

    def __init__(
        self,
        sock: socket.socket,
        *,
        started: float,
        keep_alive: bool,
        chunked: bool,
        wait: Callable[[float], bool],
    ) -> None:
        self._sock = sock
        self._started = started
        self._keep_alive = keep_alive
        self._chunked = chunked
        self._wait = wait
        """Sleeps; returns True when the emulator is stopping and the response should end."""
        self.headers: list[bytes] = []
        """Extra ``name: value\\r\\n`` lines for whatever response gets sent."""

    def _head(self, status: int, content_type: bytes, length: int | None, close: bool) -> bytes:
        ms = int((time.perf_counter() - self._started) * 1000)
        parts = [
            STATUS_LINES[status],
            b"date: ",
            http_date(),
            b"\r\ncontent-type: ",
            content_type,
            b"\r\nopenai-processing-ms: %d\r\nopenai-version: 2020-10-01\r\n" % ms,
            *self.headers,
        ]
        if length is not None:
            parts.append(b"content-length: %d\r\n" % length)
        elif self._chunked:
            parts.append(b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n")
        else:
            parts.append(b"cache-control: no-cache\r\n")
        if close:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def send(
        self, status: int, body: bytes, content_type: bytes = JSON, fault: Fault | None = None
    ) -> bool:
        """A complete (``Content-Length``) response, shaped by a body-level fault if given."""
        if fault is not None and fault.name == "malformed":
            body = MALFORMED_BODY
        head = self._head(status, content_type, len(body), not self._keep_alive)
        if fault is None or fault.name not in ("cut", "stall_mid", "drip"):
            self._sock.sendall(head + body)
        elif fault.name == "cut":
            # The promised length is never delivered: the client sees a short read.
            self._sock.sendall(head + body[: len(body) // 2])
            return False
        elif fault.name == "stall_mid":
            self._sock.sendall(head)
            if self._wait(fault.number("seconds", 1.0)):
                return False
            self._sock.sendall(body)
        else:
            delay = fault.number("delay_ms", 50.0) / 1000
            self._sock.sendall(head)
            step = max(1, -(-len(body) // _DRIP_PIECES))
            for offset in range(0, len(body), step):
                if offset and self._wait(delay):
                    return False
                self._sock.sendall(body[offset : offset + step])
        return self._keep_alive

    def stream(self, events: Sequence[bytes], *, delay: float, fault: Fault | None) -> bool:
        """An SSE body, one HTTP chunk per event (or close-delimited for HTTP/1.0 clients)."""
        stop_after = len(events)
        stall_at, stall_for = -1, 0.0
        if fault is not None:
            if fault.name == "cut":
                stop_after = min(stop_after, fault.count("after", 2))
            elif fault.name == "stall_mid":
                stall_at, stall_for = fault.count("after", 1), fault.number("seconds", 1.0)
            elif fault.name == "drip":
                delay = fault.number("delay_ms", 50.0) / 1000
        frame = chunk if self._chunked else _identity
        close = not (self._keep_alive and self._chunked)
        head = self._head(200, EVENT_STREAM, None, close)
        if delay <= 0 and stall_at < 0:
            body = b"".join(frame(e) for e in events[:stop_after])
            if stop_after < len(events):
                self._sock.sendall(head + body)
                return False
            self._sock.sendall(head + body + (LAST_CHUNK if self._chunked else b""))
            return not close
        self._sock.sendall(head)
        # The last event and the end of the body go out together, as real servers flush
        # them: a client that stops at [DONE] finds the body already complete.
        together = self._chunked and bool(events) and stall_at < len(events)
        for i, event in enumerate(events):
            if i == stop_after:
                return False
            if i == stall_at and self._wait(stall_for):
                return False
            if i and delay > 0 and self._wait(delay):
                return False
            end = LAST_CHUNK if together and i == len(events) - 1 else b""
            self._sock.sendall(frame(event) + end)
        if stall_at >= len(events) and self._wait(stall_for):
            return False
        if self._chunked and not together:
            self._sock.sendall(LAST_CHUNK)
        return not close

    def reset(self) -> bool:
        """Close with an RST before any byte: ``SO_LINGER`` 0 discards instead of a FIN."""
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._sock.close()
        return False


def _identity(data: bytes) -> bytes:
    return data
