"""The bench server: a loopback OpenAI-compatible endpoint that costs as little as possible.

Run in its own process (``python -m benchmarks.server``), so its CPU is never counted in a
client's. It prints ``PORT <n>`` on stdout once listening, then serves until killed or
stdin closes.

* ``POST .../chat/completions``: a precomputed ``chat.completion`` (``content-length``), or,
  when the body asks for ``"stream": true``, a precomputed chunked SSE stream of
  ``--chunks`` content chunks (one HTTP chunk per event). HTTP/1.1 keep-alive.
* ``GET /_stats``: JSON counters: connections that carried a chat request, requests, streams
  and the server process's own CPU seconds, so the harness can check the server is not the
  bottleneck and count how many connections each client opened.

One thread per connection; the request parser reads only the request line,
``content-length`` and ``connection`` headers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import socket
import sys
import threading

from benchmarks.payloads import completion_response, stream_response

_STREAM_MARKERS = (b'"stream":true', b'"stream": true')
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n"
    b'{"error":"not found"}\n'
)


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted = 0
        self.chat_connections = 0
        self.requests = 0
        self.streams = 0

    def snapshot(self) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with self.lock:
            return {
                "accepted": self.accepted,
                "chat_connections": self.chat_connections,
                "requests": self.requests,
                "streams": self.streams,
                "cpu_s": usage.ru_utime + usage.ru_stime,
            }


class BenchServer:
    def __init__(self, host: str, port: int, chunks: int) -> None:
        self.completion = completion_response(chunks)
        self.stream = stream_response(chunks)
        self.counters = Counters()
        self.listener = socket.create_server((host, port), backlog=1024)
        self.port: int = self.listener.getsockname()[1]

    def serve_forever(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.counters.lock:
                self.counters.accepted += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        counters = self.counters
        recv = sock.recv
        sendall = sock.sendall
        buf = b""
        counted = False
        try:
            while True:
                end = buf.find(b"\r\n\r\n")
                while end < 0:
                    data = recv(65536)
                    if not data:
                        return
                    buf += data
                    end = buf.find(b"\r\n\r\n")
                head = buf[:end]
                lines = head.split(b"\r\n")
                method, path = lines[0].split(b" ", 2)[:2]
                length = 0
                close = False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection":
                        close = value.strip().lower() == b"close"
                    elif name == b"expect" and b"100-continue" in value.lower():
                        sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                buf = buf[end + 4 :]
                while len(buf) < length:
                    data = recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                if method == b"POST" and path.endswith(b"/chat/completions"):
                    streamed = any(marker in body for marker in _STREAM_MARKERS)
                    with counters.lock:
                        counters.requests += 1
                        if streamed:
                            counters.streams += 1
                        if not counted:
                            counters.chat_connections += 1
                            counted = True
                    sendall(self.stream if streamed else self.completion)
                elif method == b"GET" and path == b"/_stats":
                    payload = json.dumps(counters.snapshot()).encode()
                    sendall(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\n\r\n%s" % (len(payload), payload)
                    )
                else:
                    sendall(_NOT_FOUND)
                if close:
                    return
        except OSError:
            return
        finally:
            sock.close()


def fetch_stats(port: int, host: str = "127.0.0.1") -> dict[str, float]:
    """The server's counters, over a fresh connection (not counted as a chat connection)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET /_stats HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        data = b""
        while True:
            part = sock.recv(65536)
            if not part:
                break
            data += part
    _, _, body = data.partition(b"\r\n\r\n")
    stats: dict[str, float] = json.loads(body)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=100, help="content chunks per stream")
    args = parser.parse_args(argv)
    server = BenchServer(args.host, args.port, args.chunks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"PORT {server.port}", flush=True)
    # Serve until the harness closes our stdin (or kills us): no orphan if it dies.
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
