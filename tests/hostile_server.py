"""A loopback HTTP server that answers from a script: for the hostile-server tests.

Each request gets the next scripted answer (the last one repeats). The server reads the
request head and body, records them, writes the answer's bytes as given and closes the
connection, so a test controls every byte a misbehaving server sends. ``{auth}`` in an
answer's body is replaced by the credential the request carried (``Authorization:
Bearer`` or ``api-key``), as a gateway that echoes the key would.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def encode(self) -> bytes:
        head = [f"HTTP/1.1 {self.status} X"]
        headers = {"content-length": str(len(self.body)), "connection": "close", **self.headers}
        head += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + self.body


def json_answer(status: int, payload: Any, **headers: str) -> Answer:
    return Answer(
        status,
        {"content-type": "application/json", **headers},
        json.dumps(payload).encode("utf-8"),
    )


def chat_ok(text: str = "ok") -> Answer:
    return json_answer(
        200,
        {
            "id": "chatcmpl-1",
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
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        },
    )


class ScriptedServer:
    """``with ScriptedServer([answer, ...]) as server: ... server.url``."""

    def __init__(self, answers: Sequence[Answer]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data and len(data) < 1 << 20:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                index = len(self.requests)
                self.requests.append((head, body))
                answer = self.answers[min(index, len(self.answers) - 1)]
                if b"{auth}" in answer.body:
                    answer = Answer(
                        answer.status,
                        answer.headers,
                        answer.body.replace(b"{auth}", credential_of(head)),
                    )
                conn.sendall(answer.encode())
            except OSError:
                return


def credential_of(head: bytes) -> bytes:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"authorization":
            return value.removeprefix(b"Bearer ")
        if name == b"api-key":
            return value
    return b""
