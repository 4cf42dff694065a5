"""The async bench server: paced streams and slow answers for thousands of connections.

Run in its own process (``python -m benchmarks.aio_server``), pinned to its own core by
the harness. It prints ``PORT <n>`` once listening and serves until stdin closes.

``benchmarks/server.py`` answers as fast as it can on one thread per connection: right
for CPU per request, wrong for thousands of open streams that each send a chunk every
50 ms. This one is an ``asyncio.Protocol`` server (one event loop, no task per
connection):

* ``POST .../chat/completions`` with ``"stream": true``: a chunked SSE stream in OpenAI's
  shapes: a role chunk, ``--chunks`` content chunks paced at ``--rate`` a second, a finish
  chunk, the ``include_usage`` chunk and ``[DONE]``. Each content chunk's ``content`` is
  the server's ``time.monotonic()`` when it wrote the chunk (CLOCK_MONOTONIC, shared by
  every process on the machine), so a client measures send-to-receipt delay by
  subtracting it from its own clock.
* Otherwise a non-streamed ``chat.completion``, written ``--delay`` seconds after the
  request arrived (a model's latency, without a thread or task per request).
* ``GET /_stats``: accepted connections, requests, streams, and the server's CPU seconds.

Pacing uses a timer wheel of 5 ms ticks: every stream due in a tick gets its next chunk in
one pass (one timer for all of them, not one per chunk), stamped with that tick's clock.
A chunk is late by at most a tick plus the pass; the stamp is taken when the pass
starts, so server-side lateness counts in the measured delay, never hides from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import defaultdict
from typing import Any

from benchmarks.payloads import (
    _OPENAI_HEADERS,
    CREATED,
    FINGERPRINT,
    RESPONSE_ID,
    SERVED_MODEL,
    _head,
    _usage,
    completion_response,
)

TICK = 0.005  # seconds per wheel slot
_STREAM_MARKERS = (b'"stream":true', b'"stream": true')
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n"
    b'{"error":"not found"}\n'
)


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _event(payload: bytes) -> bytes:
    event = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


def _chunk_json(choices: list[dict[str, Any]], usage: dict[str, Any] | None) -> bytes:
    return _dumps(
        {
            "id": RESPONSE_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": SERVED_MODEL,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
            "usage": usage,
        }
    )


class Payloads:
    """Every byte a stream sends, precomputed but for the content chunks' timestamps."""

    def __init__(self, chunks: int) -> None:
        def choice(delta: dict[str, Any], finish: str | None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

        self.head = _head(
            "200 OK",
            [
                ("content-type", "text/event-stream; charset=utf-8"),
                ("transfer-encoding", "chunked"),
                ("connection", "keep-alive"),
                *_OPENAI_HEADERS,
            ],
        )
        role = _chunk_json(
            choice({"role": "assistant", "content": "", "refusal": None}, None), None
        )
        self.first = self.head + _event(role)
        marker = "@@STAMP@@"
        template = _chunk_json(choice({"content": marker}, None), None)
        before, after = template.split(marker.encode())
        self.before = b"data: " + before
        self.after = after + b"\n\n"
        # The stamp is always "%.6f" of a monotonic clock well under 1e9 s: fixed framing
        # would need a fixed width, so the chunk size is computed per chunk (cheap).
        finish = _chunk_json(choice({}, "stop"), None)
        usage = _chunk_json([], _usage(chunks))
        self.last = (
            _event(finish)
            + _event(usage)
            + b"%x\r\n%s\r\n" % (14, b"data: [DONE]\n\n")
            + b"0\r\n\r\n"
        )

    def content(self, stamp: bytes) -> bytes:
        event_len = len(self.before) + len(stamp) + len(self.after)
        return b"%x\r\n%s%s%s\r\n" % (event_len, self.before, stamp, self.after)


class Stats:
    def __init__(self) -> None:
        self.accepted = 0
        self.chat_connections = 0
        self.requests = 0
        self.streams = 0
        self.open_streams = 0
        self.max_open_streams = 0
        self.max_lag_s = 0.0  # worst lateness of a wheel pass (server saturation)

    def snapshot(self) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "accepted": self.accepted,
            "chat_connections": self.chat_connections,
            "requests": self.requests,
            "streams": self.streams,
            "open_streams": self.open_streams,
            "max_open_streams": self.max_open_streams,
            "max_lag_s": self.max_lag_s,
            "cpu_s": usage.ru_utime + usage.ru_stime,
        }


class _Stream:
    __slots__ = ("conn", "left")

    def __init__(self, conn: BenchProtocol, left: int) -> None:
        self.conn = conn
        self.left = left


class Wheel:
    """Paced streams: slot -> the streams whose next chunk is due in that tick."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stats: Stats, every: float) -> None:
        self.loop = loop
        self.stats = stats
        self.step = max(1, round(every / TICK))  # ticks between two chunks of a stream
        self.slots: defaultdict[int, list[_Stream]] = defaultdict(list)
        self.origin = loop.time()
        self.tick = 0
        self.running = False

    def add(self, stream: _Stream) -> None:
        due = int((self.loop.time() - self.origin) / TICK) + self.step
        self.slots[due].append(stream)
        if not self.running:
            self.running = True
            self.tick = due - self.step
            self.loop.call_at(self.origin + (self.tick + 1) * TICK, self._pass)

    def _pass(self) -> None:
        self.tick += 1
        lag = self.loop.time() - (self.origin + self.tick * TICK)
        if lag > self.stats.max_lag_s:
            self.stats.max_lag_s = lag
        due = self.slots.pop(self.tick, None)
        if due:
            stamp = b"%.6f" % time.monotonic()
            later = self.slots[self.tick + self.step]
            for stream in due:
                conn = stream.conn
                if conn.transport is None:
                    continue
                conn.send_content(stamp)
                stream.left -= 1
                if stream.left > 0:
                    later.append(stream)
                else:
                    conn.end_stream()
        if self.slots:
            # Catch up without sleeping when a pass ran late (the saturated case).
            self.loop.call_at(self.origin + (self.tick + 1) * TICK, self._pass)
        else:
            self.running = False


class BenchProtocol(asyncio.Protocol):
    def __init__(self, server: AioBenchServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.counted = False
        self.busy = False  # a response is being written (HTTP/1.1: no pipelining here)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.stats.accepted += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = buf[:end].split(b"\r\n")
        method, path = lines[0].split(b" ", 2)[:2]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(buf) < end + 4 + length:
            return
        body = buf[end + 4 : end + 4 + length]
        self.buf = buf[end + 4 + length :]
        server = self.server
        stats = server.stats
        transport = self.transport
        assert transport is not None
        if method == b"POST" and path.endswith(b"/chat/completions"):
            stats.requests += 1
            if not self.counted:
                self.counted = True
                stats.chat_connections += 1
            self.busy = True
            if any(marker in body for marker in _STREAM_MARKERS):
                stats.streams += 1
                stats.open_streams += 1
                stats.max_open_streams = max(stats.max_open_streams, stats.open_streams)
                transport.write(server.payloads.first)
                server.wheel.add(_Stream(self, server.chunks))
            else:
                server.loop.call_later(server.delay, self._answer)
        elif method == b"GET" and path == b"/_stats":
            payload = json.dumps(stats.snapshot()).encode()
            transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(payload), payload)
            )
            transport.close()
        else:
            transport.write(_NOT_FOUND)

    def _answer(self) -> None:
        if self.transport is not None:
            self.transport.write(self.server.completion)
        self._done()

    def send_content(self, stamp: bytes) -> None:
        assert self.transport is not None
        self.transport.write(self.server.payloads.content(stamp))

    def end_stream(self) -> None:
        if self.transport is not None:
            self.transport.write(self.server.payloads.last)
        self.server.stats.open_streams -= 1
        self._done()

    def _done(self) -> None:
        self.busy = False
        if self.buf and self.transport is not None:
            self._next_request()


class AioBenchServer:
    def __init__(self, chunks: int, rate: float, delay: float) -> None:
        self.chunks = chunks
        self.delay = delay
        self.payloads = Payloads(chunks)
        self.completion = completion_response(20)
        self.stats = Stats()
        self.loop = asyncio.get_running_loop()
        self.wheel = Wheel(self.loop, self.stats, 1.0 / rate)


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(host: str, port: int, chunks: int, rate: float, delay: float) -> None:
    _raise_nofile()
    state = AioBenchServer(chunks, rate, delay)
    loop = state.loop
    server = await loop.create_server(
        lambda: BenchProtocol(state), host, port, backlog=4096, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    # Serve until the harness closes our stdin: no orphan if it dies.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=200, help="content chunks per stream")
    parser.add_argument("--rate", type=float, default=20.0, help="content chunks a second")
    parser.add_argument("--delay", type=float, default=0.05, help="non-streamed answer delay (s)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.chunks, args.rate, args.delay))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
