"""Servers that misbehave on purpose cannot hang a request, exhaust memory or garble an
answer, on either driver. Each server is a loopback socket scripted byte by byte."""

from __future__ import annotations

import json
import socket
import threading
import time
import zlib
from collections.abc import Callable

import pytest
from driver_clients import Client
from raw_http import RawServer, Script, chunk, delta, event

from rakka_runtime.errors import Cancelled, InferenceError, ProtocolError, Timeout

Make = Callable[..., Client]
RawFactory = Callable[[Script], RawServer]
NO_RETRY = "deployment.retry.enabled=false"

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\nx-request-id: req_hostile\r\n"
)


def completion_json(text: str = "fine") -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-hostile",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    ).encode()


def trickle(data: bytes, every: float) -> Script:
    """Send ``data`` one byte every ``every`` seconds (then hold the connection)."""

    def script(sock: socket.socket, stopping: threading.Event) -> bool:
        for i in range(len(data)):
            if stopping.wait(every):
                return False
            sock.sendall(data[i : i + 1])
        stopping.wait(30)
        return False

    return script


def silent(sock: socket.socket, stopping: threading.Event) -> bool:
    stopping.wait(30)
    return False


def timed(call: Callable[[], InferenceError]) -> tuple[InferenceError, float]:
    started = time.monotonic()
    error = call()
    return error, time.monotonic() - started


# --- must not hang ------------------------------------------------------------------------


def test_headers_trickled_forever_are_cut_by_request_timeout(
    client_at: Make, raw_server: RawFactory
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"x-slow: " + b"a" * 10_000 + b"\r\n\r\n"
    server = raw_server(trickle(head, 0.05))
    client = client_at(server.url, NO_RETRY, "deployment.timeouts.request_timeout=500ms")
    error, elapsed = timed(lambda: client.failure(stream=False))
    assert isinstance(error, Timeout) and error.limit == "request_timeout", error
    assert elapsed < 3.0


def test_headers_trickled_forever_are_cut_by_the_deadline(
    client_at: Make, raw_server: RawFactory
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"x-slow: " + b"a" * 10_000 + b"\r\n\r\n"
    server = raw_server(trickle(head, 0.05))
    client = client_at(server.url, NO_RETRY, "deployment.timeouts.read_timeout=1s")
    error, elapsed = timed(lambda: client.failure(stream=False, deadline=0.6))
    assert isinstance(error, Timeout) and error.limit == "deadline", error
    assert elapsed < 3.0


def test_a_body_trickled_forever_is_cut_by_the_deadline(
    client_at: Make, raw_server: RawFactory
) -> None:
    server = raw_server(trickle(SSE_HEAD + b"\r\n" + chunk(b": " + b"x" * 10_000), 0.01))
    client = client_at(server.url, NO_RETRY, "deployment.timeouts.read_timeout=1s")
    error, elapsed = timed(lambda: client.failure(deadline=1.0))
    assert isinstance(error, Timeout) and error.limit == "deadline", error
    assert elapsed < 3.5


def test_the_default_config_bounds_a_request(client_at: Make, raw_server: RawFactory) -> None:
    client = client_at(raw_server(silent).url)
    state = client.runtime.core.new_state(client.runtime.request("hi"))
    assert state.deadline is not None and state.deadline - time.monotonic() == pytest.approx(
        600, abs=5
    )


def test_cancel_ends_a_request_waiting_for_headers(client_at: Make, raw_server: RawFactory) -> None:
    server = raw_server(silent)
    client = client_at(server.url, NO_RETRY)
    started = client.start(stream=True)
    deadline = time.monotonic() + 5
    while server.connections == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # the request is on the wire once the server has its connection
    assert server.connections == 1
    began = time.monotonic()
    started.cancel()
    outcome = started.outcome(timeout=5)
    assert isinstance(outcome, Cancelled), outcome
    assert time.monotonic() - began < 1.0


# --- must not exhaust memory --------------------------------------------------------------


def gzip_of_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    parts = [packer.compress(block) for _ in range(size >> 20)]
    return b"".join(parts) + packer.flush()


def test_a_gzip_bomb_is_cut_at_the_body_limit(client_at: Make, raw_server: RawFactory) -> None:
    bomb = gzip_of_zeros(64 << 20)

    def script(sock: socket.socket, stopping: threading.Event) -> bool:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(bomb), bomb)
        )
        return True

    server = raw_server(script)
    client = client_at(server.url, NO_RETRY, "deployment.limits.max_body_bytes=1048576")
    error = client.failure(stream=False)
    assert isinstance(error, ProtocolError) and "max_body_bytes" in error.message, error
    assert not error.is_retryable or error.kind == "protocol"


def test_a_streamed_gzip_bomb_is_cut_at_the_event_limit(
    client_at: Make, raw_server: RawFactory
) -> None:
    bomb = gzip_of_zeros(64 << 20)  # one "line" of zeros, never a line end

    def script(sock: socket.socket, stopping: threading.Event) -> bool:
        sock.sendall(SSE_HEAD + b"content-encoding: gzip\r\n\r\n" + chunk(bomb) + b"0\r\n\r\n")
        return True

    server = raw_server(script)
    client = client_at(server.url, NO_RETRY, "deployment.limits.max_event_bytes=262144")
    error = client.failure()
    assert isinstance(error, ProtocolError) and "max_event_bytes" in error.message, error


def test_a_body_over_the_limit_is_refused_by_its_length(
    client_at: Make, raw_server: RawFactory
) -> None:
    def script(sock: socket.socket, stopping: threading.Event) -> bool:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: 104857600\r\n\r\n{"
        )
        stopping.wait(30)
        return False

    server = raw_server(script)
    client = client_at(server.url, NO_RETRY)
    error, elapsed = timed(lambda: client.failure(stream=False))
    assert isinstance(error, ProtocolError) and "max_body_bytes" in error.message, error
    assert elapsed < 2.0


def test_a_stream_line_that_never_ends_is_cut(client_at: Make, raw_server: RawFactory) -> None:
    piece = chunk(b"a" * 65536)

    def script(sock: socket.socket, stopping: threading.Event) -> bool:
        sock.sendall(SSE_HEAD + b"\r\n" + chunk(b"data: "))
        for _ in range(64):  # 4 MiB, one line
            if stopping.is_set():
                return False
            sock.sendall(piece)
        stopping.wait(30)
        return False

    server = raw_server(script)
    client = client_at(server.url, NO_RETRY, "deployment.limits.max_event_bytes=1048576")
    error = client.failure()
    assert isinstance(error, ProtocolError) and "max_event_bytes" in error.message, error


# --- wire conformance ---------------------------------------------------------------------


def test_nothing_after_done_is_read_or_waited_for(client_at: Make, raw_server: RawFactory) -> None:
    def script(sock: socket.socket, stopping: threading.Event) -> bool:
        sock.sendall(SSE_HEAD + b"\r\n" + delta("one ") + delta("two", "stop"))
        sock.sendall(event("[DONE]") + delta(" AFTER-DONE"))
        stopping.wait(30)  # and the connection stays open
        return False

    server = raw_server(script)
    client = client_at(server.url, NO_RETRY, "deployment.timeouts.read_timeout=5s")
    started = time.monotonic()
    result, deltas = client.run()
    assert result.text == "one two" and "".join(deltas) == "one two"
    assert time.monotonic() - started < 2.0


def test_a_finished_stream_gives_its_connection_back(
    client_at: Make, raw_server: RawFactory
) -> None:
    def script(sock: socket.socket, stopping: threading.Event) -> bool:
        sock.sendall(SSE_HEAD + b"\r\n" + delta("ok", "stop") + event("[DONE]") + b"0\r\n\r\n")
        return True

    server = raw_server(script)
    client = client_at(server.url, NO_RETRY)
    for _ in range(3):
        assert client.run()[0].text == "ok"
    assert server.connections == 1


def test_an_answer_read_to_its_length_gives_its_connection_back(
    client_at: Make, raw_server: RawFactory
) -> None:
    """The body arrives in two parts; once its content-length is in, the answer is whole
    (no read waits for its end) and the connection serves the next request."""
    body = completion_json("whole")
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"

    def script(sock: socket.socket, stopping: threading.Event) -> bool:
        sock.sendall(head % len(body) + body[:10])
        stopping.wait(0.05)
        sock.sendall(body[10:])
        return True

    server = raw_server(script)
    client = client_at(server.url, NO_RETRY)
    for _ in range(3):
        result, _ = client.run(stream=False)
        assert result.text == "whole"
    assert server.connections == 1


def test_an_html_page_answering_a_stream_is_a_protocol_error(
    client_at: Make, raw_server: RawFactory
) -> None:
    page = b"<html><body>Gateway says hi</body></html>"

    def script(sock: socket.socket, stopping: threading.Event) -> bool:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: %d\r\n\r\n%s"
            % (len(page), page)
        )
        return True

    server = raw_server(script)
    client = client_at(server.url, NO_RETRY)
    error = client.failure()
    assert isinstance(error, ProtocolError) and "text/html" in error.message, error


def test_too_many_headers_is_a_protocol_error_and_not_retried(
    client_at: Make, raw_server: RawFactory
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(300))

    def script(sock: socket.socket, stopping: threading.Event) -> bool:
        sock.sendall(head + b"content-length: 2\r\n\r\n{}")
        return True

    server = raw_server(script)
    client = client_at(server.url, "deployment.retry.initial_backoff=10ms")
    error = client.failure(stream=False)
    assert isinstance(error, ProtocolError), error
    assert len(error.attempts) == 1 and server.connections == 1


def test_a_plain_answer_after_a_clean_head_still_works(
    client_at: Make, raw_server: RawFactory
) -> None:
    body = completion_json("hello")

    def script(sock: socket.socket, stopping: threading.Event) -> bool:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        return True

    server = raw_server(script)
    client = client_at(server.url, NO_RETRY)
    result, _ = client.run(stream=False)
    assert result.text == "hello" and result.provider_request_id is None


def test_a_content_length_in_other_digits_is_no_crash(
    client_at: Make, raw_server: RawFactory
) -> None:
    """``content-length: ²`` (one latin-1 byte): ``str.isdigit()`` accepts it, ``int()``
    does not. The thread driver's HTTP client reads it as no length (the body then ends
    with the connection); aiohttp refuses the head. Neither is a crash in the core."""
    body = completion_json("hello")

    def script(sock: socket.socket, stopping: threading.Event) -> bool:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: \xb2\r\nconnection: close\r\n\r\n" + body
        )
        return False

    server = raw_server(script)
    client = client_at(server.url, NO_RETRY)
    if client.driver == "sync":
        result, _ = client.run(stream=False)
        assert result.text == "hello"
    else:
        error = client.failure(stream=False)
        assert isinstance(error, ProtocolError), error
