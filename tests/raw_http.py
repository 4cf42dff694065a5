"""A loopback HTTP/1.1 server scripted byte by byte, for faults no real server makes on
purpose (trickled headers, resets, bodies that never end). Shared by the tests."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# --- a server scripted byte by byte ---------------------------------------------------------

# Writes one answer; returning False closes the connection at once.
Script = Callable[[socket.socket, threading.Event], bool | None]


class RawServer:
    """Loopback HTTP/1.1: reads each request, then runs ``script(sock, stopping)``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        reader = sock.makefile("rb")
        try:
            while _read_request(reader) and self.script(sock, self.stopping) is not False:
                pass
        except OSError:
            pass  # the client gave up on the connection
        finally:
            # The reader holds the descriptor too: close both, or no FIN/RST is sent.
            reader.close()
            sock.close()

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _read_request(reader: Any) -> bool:
    length = 0
    line = reader.readline()
    if not line:
        return False
    while line not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
        line = reader.readline()
    reader.read(length)
    return True


@pytest.fixture
def raw_server() -> Iterator[Callable[[Script], RawServer]]:
    servers: list[RawServer] = []

    def start(script: Script) -> RawServer:
        servers.append(RawServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# --- OpenAI-shaped chunked SSE, byte by byte -------------------------------------------------


def chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def event(data: dict[str, Any] | str) -> bytes:
    """One ``data:`` event in its own chunk."""
    text = data if isinstance(data, str) else json.dumps(data)
    return chunk(f"data: {text}\n\n".encode())


def delta(content: str | None, finish: str | None = None) -> bytes:
    """A ``chat.completion.chunk`` event for choice 0."""
    body = {} if content is None else {"content": content}
    return event(
        {
            "id": "chatcmpl-raw",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": body, "finish_reason": finish}],
        }
    )
