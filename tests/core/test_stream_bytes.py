"""Byte-level stream cases through the runtime, served by a raw-socket loopback server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from rakka_runtime.config.loader import load_config
from rakka_runtime.errors import InferenceError
from rakka_runtime.runtime import Runtime

Serve = Callable[..., Runtime]


def _chunk(text: str | None = None, finish: str | None = None, usage: bool = False) -> bytes:
    obj: dict[str, object] = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [],
    }
    if text is not None or finish is not None:
        delta = {} if text is None else {"content": text}
        obj["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage:
        obj["usage"] = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    return json.dumps(obj).encode()


class RawServer:
    """Answers one request per connection with a scripted list of byte writes."""

    def __init__(self, writes: Sequence[bytes], pause: float = 0.0) -> None:
        self.writes = writes
        self.pause = pause
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"x-request-id: req_raw\r\nconnection: close\r\n\r\n"
                )
                for piece in self.writes:
                    conn.sendall(piece)
                    if self.pause:
                        time.sleep(self.pause)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[RawServer] = []

    def start(writes: Sequence[bytes], pause: float = 0.0) -> Runtime:
        server = RawServer(writes, pause)
        servers.append(server)
        return Runtime(
            load_config(
                [
                    "deployment=openai",
                    f"deployment.variant.endpoint=http://127.0.0.1:{server.port}/v1",
                    "deployment.api_key=null",
                    "deployment.retry.enabled=false",
                ]
            )
        )

    yield start
    for server in servers:
        server.close()


def _split_everywhere(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("piece", [1, 7, 1000])
def test_line_ends_and_arbitrary_tcp_splits(serve: Serve, line_end: bytes, piece: int) -> None:
    events = [
        b": keep-alive comment",
        b"data: " + _chunk("Hel"),
        b"data: " + _chunk("lo"),
        b"data: " + _chunk(finish="stop"),
        b"data: " + _chunk(usage=True),
        b"data: [DONE]",
    ]
    stream = b"".join(e + line_end + line_end for e in events)
    runtime = serve(_split_everywhere(stream, piece), pause=0.0005 if piece < 10 else 0)
    with runtime:
        result = runtime.chat("hi", stream=True)
    assert result.text == "Hello"
    assert result.usage is not None and result.usage.input_tokens == 10
    assert result.provider_request_id == "req_raw"


def test_multi_line_data_is_joined(serve: Serve) -> None:
    body = json.dumps(json.loads(_chunk("multi")), indent=1).encode()
    stream = b"".join(b"data: " + line + b"\n" for line in body.split(b"\n")) + b"\n"
    stream += b"data: " + _chunk(finish="stop") + b"\n\ndata: [DONE]\n\n"
    with serve([stream]) as runtime:
        assert runtime.chat("hi", stream=True).text == "multi"


def test_finish_reason_without_done_is_complete(serve: Serve) -> None:
    stream = b"data: " + _chunk("ok") + b"\n\ndata: " + _chunk(finish="stop") + b"\n\n"
    with serve([stream]) as runtime:
        result = runtime.chat("hi", stream=True)
    assert result.text == "ok" and result.finish_reason == "stop"
    assert result.usage is None and result.cost_usd is None  # no usage: never $0


def test_clean_close_without_finish_is_interrupted(serve: Serve) -> None:
    stream = b"data: " + _chunk("par") + b"\n\ndata: " + _chunk("tial") + b"\n\n"
    with serve([stream]) as runtime, pytest.raises(InferenceError) as info:
        runtime.chat("hi", stream=True)
    assert info.value.kind == "stream_interrupted"
    assert info.value.partial is not None and info.value.partial.text == "partial"


def test_error_event_inside_stream_is_classified(serve: Serve) -> None:
    error = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
    stream = b"data: " + _chunk("a") + b"\n\ndata: " + json.dumps(error).encode() + b"\n\n"
    with serve([stream]) as runtime, pytest.raises(InferenceError) as info:
        runtime.chat("hi", stream=True)
    assert info.value.kind == "server_error"
    assert info.value.partial is not None and info.value.partial.text == "a"


def test_non_json_event_is_a_protocol_error(serve: Serve) -> None:
    with serve([b"data: {not json\n\n"]) as runtime, pytest.raises(InferenceError) as info:
        runtime.chat("hi", stream=True)
    assert info.value.kind == "protocol"
