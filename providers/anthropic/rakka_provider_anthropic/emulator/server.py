"""The emulator: an Anthropic Messages API (``POST /v1/messages``) on loopback.

Standard library only, and it never imports ``rakka_runtime``: it tests the runtime (and
the official ``anthropic`` SDK) from the outside. HTTP/1.1 keep-alive, a thread per
connection; streams are sent chunked, one SSE event per chunk.

It checks what the real API checks first: the key (``x-api-key``, or ``Authorization:
Bearer`` as recent SDKs send it; 401 ``authentication_error``), a dated
``anthropic-version`` header, a JSON body with ``model``, ``max_tokens`` and
``messages`` (400 ``invalid_request_error``). Every answer carries ``request-id`` and the
``anthropic-ratelimit-*`` headers (per-minute windows, RFC 3339 resets).

Request headers that steer it: ``x-emulator-fault`` (see :mod:`.faults`) and
``x-emulator-usage: {"cache_creation_input_tokens": W, "cache_read_input_tokens": R,
"input_tokens": I}`` (any subset) to set usage counts.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from .content import Answer, answer
from .faults import ERROR_FAULTS, Fault, FaultBudget, parse_fault
from .keys import KeyRing

_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")  # any dated API version is accepted


class _Window:
    """Per-minute use of one limit, for the ``anthropic-ratelimit-*`` headers."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._minute = 0
        self._used = 0

    def take(self, amount: int) -> tuple[int, int, str]:
        """Charge ``amount``; ``(limit, remaining, reset RFC 3339)``."""
        now = time.time()
        minute = int(now // 60)
        with self._lock:
            if minute != self._minute:
                self._minute, self._used = minute, 0
            self._used += amount
            remaining = max(0, self.limit - self._used)
        reset = datetime.fromtimestamp((minute + 1) * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.limit, remaining, reset


class Emulator:
    """An Anthropic Messages API server on loopback; ``with Emulator() as emu: emu.url``.

    ``keys`` / ``key_file`` restrict the accepted ``x-api-key`` values (none: any key);
    the key file may rotate underneath (the old key works for ``key_grace`` seconds).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keys: Iterable[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        key_grace: float = 1.0,
        model: str = "claude-sonnet-4-5",
        chunk_delay: float = 0.0,
        requests_per_minute: int = 4_000,
        input_tokens_per_minute: int = 2_000_000,
        output_tokens_per_minute: int = 400_000,
    ) -> None:
        self.host = host
        self.port = port
        self.model = model
        self.chunk_delay = chunk_delay
        self.keys = KeyRing(None if keys is None else list(keys), key_file, grace=key_grace)
        self.budget = FaultBudget()
        self.requests = _Window(requests_per_minute)
        self.input_tokens = _Window(input_tokens_per_minute)
        self.output_tokens = _Window(output_tokens_per_minute)
        self.served = 0
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()

    @property
    def url(self) -> str:
        """The SDK's ``base_url`` (the runtime's ``endpoint``): no ``/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_emu{os.getpid():x}{next(self._ids):08d}"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Emulator:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        emulator = self

        class Handler(_Handler):
            server_emulator = emulator

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024
            address_family = socket.AF_INET6 if ":" in self.host else socket.AF_INET

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that hangs up mid-answer (a cancel, a closed stream) is normal
                # for an API server; anything else still prints its traceback.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._server = Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"anthropic-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:  # keep-alive connections: no client left hanging
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def track(self, sock: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._sockets.add(sock)
            else:
                self._sockets.discard(sock)


def _error_body(kind: str, message: str, request_id: str) -> bytes:
    return json.dumps(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    ).encode()


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_emulator: Emulator

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server_emulator.track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server_emulator.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing -------------------------------------------------------------------------

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        all_headers = {"content-type": "application/json", "content-length": str(len(body))}
        all_headers.update(headers or {})
        self._head(status, all_headers)
        self.wfile.write(body)
        self.wfile.flush()

    def _error(self, status: int, kind: str, message: str, headers: dict[str, str]) -> None:
        self._send(status, _error_body(kind, message, headers["request-id"]), headers)

    def do_GET(self) -> None:
        request_id = self.server_emulator.next_id("req")
        self._error(404, "not_found_error", f"no route {self.path}", {"request-id": request_id})

    def do_POST(self) -> None:
        emu = self.server_emulator
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        request_id = emu.next_id("req")
        headers = {"request-id": request_id}
        if self.path.split("?")[0].rstrip("/") not in ("/v1/messages",):
            self._error(404, "not_found_error", f"no route {self.path}", headers)
            return
        fault: Fault | None = None
        spec = self.headers.get("x-emulator-fault")
        if spec:
            try:
                fault = parse_fault(spec)
            except ValueError as exc:
                self._error(400, "invalid_request_error", f"x-emulator-fault: {exc}", headers)
                return
            if not emu.budget.admit(fault):
                fault = None
        if not emu.keys.accepts(self._key()):
            self._error(401, "authentication_error", "invalid x-api-key", headers)
            return
        if not _VERSION.fullmatch(self.headers.get("anthropic-version") or ""):
            self._error(
                400, "invalid_request_error", "anthropic-version: header is required", headers
            )
            return
        body = self._body(raw, headers)
        if body is None:
            return
        if fault is not None:
            if fault.params.get("should_retry"):
                headers["x-should-retry"] = fault.params["should_retry"]
            if fault.name == "reset":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                    self.connection.close()
                return
            if fault.name == "stall":
                time.sleep(fault.number("seconds", 1.0))
            if fault.name in ERROR_FAULTS or (fault.name == "stream_error" and not body["stream"]):
                self._fault_error(fault, headers)
                return
        usage = self._usage_override()
        result = answer(body, refusal=fault is not None and fault.name == "refusal")
        if "input_tokens" in usage:
            result.input_tokens = usage["input_tokens"]
        counts = {
            "input_tokens": result.input_tokens,
            "cache_creation_input_tokens": usage.get("cache_creation_input_tokens", 0),
            "cache_read_input_tokens": usage.get("cache_read_input_tokens", 0),
        }
        headers.update(self._ratelimit_headers(sum(counts.values()), result.output_tokens))
        emu.served += 1
        message_id = emu.next_id("msg")
        if body["stream"]:
            self._stream(body, result, counts, message_id, headers, fault)
            return
        if fault is not None and fault.name == "malformed":
            self._send(200, b'{"id": "msg_broken", "content": [', headers)
            return
        message = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": result.blocks,
            "stop_reason": result.stop_reason,
            "stop_sequence": result.stop_sequence,
            "usage": {**counts, "output_tokens": result.output_tokens},
        }
        self._send(200, json.dumps(message).encode(), headers)

    def _key(self) -> str | None:
        # x-api-key, or the bearer form recent SDKs send (``Authorization: Bearer KEY``).
        key = self.headers.get("x-api-key")
        if key is None:
            scheme, _, value = (self.headers.get("authorization") or "").partition(" ")
            if scheme.lower() == "bearer" and value:
                key = value.strip()
        return key

    def _body(self, raw: bytes, headers: dict[str, str]) -> dict[str, Any] | None:
        try:
            body = json.loads(raw)
        except ValueError:
            self._error(400, "invalid_request_error", "the request body is not valid JSON", headers)
            return None
        problem = None
        if not isinstance(body, dict):
            problem = "the request body must be a JSON object"
        elif not isinstance(body.get("model"), str):
            problem = "model: Field required"
        elif not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            problem = "max_tokens: Field required (an integer >= 1)"
        elif not isinstance(body.get("messages"), list) or not body["messages"]:
            problem = "messages: at least one message is required"
        else:
            for i, message in enumerate(body["messages"]):
                if not isinstance(message, dict) or message.get("role") not in (
                    "user",
                    "assistant",
                ):
                    problem = f"messages.{i}.role: Input should be 'user' or 'assistant'"
                    break
                if "content" not in message:
                    problem = f"messages.{i}.content: Field required"
                    break
            if problem is None and body["messages"][0]["role"] != "user":
                problem = "messages: the first message must use the 'user' role"
            if problem is None and "system" in body and not isinstance(body["system"], str | list):
                problem = "system: Input should be a valid string or list"
        if problem is not None or not isinstance(body, dict):
            self._error(400, "invalid_request_error", problem or "not an object", headers)
            return None
        checked: dict[str, Any] = body
        checked["stream"] = bool(checked.get("stream"))
        return checked

    def _usage_override(self) -> dict[str, int]:
        text = self.headers.get("x-emulator-usage")
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            return {}
        if not isinstance(value, dict):
            return {}
        return {k: v for k, v in value.items() if isinstance(v, int) and v >= 0}

    def _ratelimit_headers(self, input_tokens: int, output_tokens: int) -> dict[str, str]:
        emu = self.server_emulator
        out: dict[str, str] = {}
        tightest: tuple[float, int, int, str] | None = None
        for name, window, amount in (
            ("requests", emu.requests, 1),
            ("input-tokens", emu.input_tokens, input_tokens),
            ("output-tokens", emu.output_tokens, output_tokens),
        ):
            limit, remaining, reset = window.take(amount)
            out[f"anthropic-ratelimit-{name}-limit"] = str(limit)
            out[f"anthropic-ratelimit-{name}-remaining"] = str(remaining)
            out[f"anthropic-ratelimit-{name}-reset"] = reset
            if name != "requests":
                share = remaining / limit if limit else 0.0
                if tightest is None or share < tightest[0]:
                    tightest = (share, limit, remaining, reset)
        if tightest is not None:
            _, limit, remaining, reset = tightest
            out["anthropic-ratelimit-tokens-limit"] = str(limit)
            out["anthropic-ratelimit-tokens-remaining"] = str(remaining)
            out["anthropic-ratelimit-tokens-reset"] = reset
        return out

    def _fault_error(self, fault: Fault, headers: dict[str, str]) -> None:
        if fault.name == "stream_error":
            status, kind, message = ERROR_FAULTS["overloaded"]
        else:
            status, kind, message = ERROR_FAULTS[fault.name]
        if fault.name == "rate_limit":
            headers["retry-after"] = fault.params.get("retry_after", "1")
        elif "retry_after" in fault.params:
            headers["retry-after"] = fault.params["retry_after"]
        if fault.name == "prompt_too_long":
            tokens = int(fault.number("tokens", 210_000))
            maximum = int(fault.number("max", 200_000))
            message = f"prompt is too long: {tokens} tokens > {maximum} maximum"
        self._error(status, kind, message, headers)

    # -- streams --------------------------------------------------------------------------

    def _events(
        self, body: dict[str, Any], result: Answer, counts: dict[str, int], message_id: str
    ) -> Iterator[bytes]:
        yield _event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {**counts, "output_tokens": 1},
                },
            },
        )
        for index, block in enumerate(result.blocks):
            if block["type"] == "text":
                yield _event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                if index == 0:
                    yield _event("ping", {"type": "ping"})
                words = block["text"].split(" ") if block["text"] else []
                for i, word in enumerate(words):
                    yield _event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": word if i == 0 else " " + word},
                        },
                    )
            else:
                yield _event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": block["id"],
                            "name": block["name"],
                            "input": {},
                        },
                    },
                )
                text = json.dumps(block["input"])
                yield _event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": ""},
                    },
                )
                for start in range(0, len(text), 10):
                    yield _event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {
                                "type": "input_json_delta",
                                "partial_json": text[start : start + 10],
                            },
                        },
                    )
            yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
        yield _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": result.stop_reason, "stop_sequence": result.stop_sequence},
                "usage": {"output_tokens": result.output_tokens},
            },
        )
        yield _event("message_stop", {"type": "message_stop"})

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(
        self,
        body: dict[str, Any],
        result: Answer,
        counts: dict[str, int],
        message_id: str,
        headers: dict[str, str],
        fault: Fault | None,
    ) -> None:
        delay = self.server_emulator.chunk_delay
        self._head(
            200,
            {
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "transfer-encoding": "chunked",
                **headers,
            },
        )
        after = -1
        if fault is not None and fault.name in ("stream_error", "cut"):
            after = int(fault.number("after", 3))
        for n, event in enumerate(self._events(body, result, counts, message_id)):
            if n == after:
                if fault is not None and fault.name == "stream_error":
                    self._chunk(
                        _event(
                            "error",
                            {
                                "type": "error",
                                "error": {"type": "overloaded_error", "message": "Overloaded"},
                            },
                        )
                    )
                    self.wfile.write(b"0\r\n\r\n")
                else:  # cut: no last chunk, the connection just ends
                    self.close_connection = True
                self.wfile.flush()
                return
            if n == 1 and fault is not None and fault.name == "malformed":
                self._chunk(b"event: content_block_delta\ndata: {not json\n\n")
            if delay and n > 1:
                time.sleep(delay)
            self._chunk(event)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
