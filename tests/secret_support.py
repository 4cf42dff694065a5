"""Test helpers for credentials: a kubelet-style secret volume, and a loopback server that
records the credential each request carried (the emulator checks keys but keeps no record).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_stamps = itertools.count(1)


class ProjectedVolume:
    """A Kubernetes secret volume: ``key -> ..data/key``, ``..data -> ..<timestamp>``.

    :meth:`write` updates it as the kubelet's AtomicWriter does: a new timestamped
    directory, a ``..data_tmp`` symlink to it renamed over ``..data``, then the old
    directory removed. The file ``key`` itself is never written.
    """

    def __init__(self, root: Path, key: str = "api-key") -> None:
        self.root = root
        self.key = key
        root.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        return self.root / self.key

    def write(self, value: str) -> None:
        stamp = f"..2026_11_27_10_00_00.{next(_stamps):06d}"
        target = self.root / stamp
        target.mkdir()
        (target / self.key).write_text(value, encoding="utf-8")
        data = self.root / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        tmp = self.root / "..data_tmp"
        os.symlink(stamp, tmp)
        os.replace(tmp, data)
        if not self.path.is_symlink():
            os.symlink(f"..data/{self.key}", self.path)
        if old is not None:
            shutil.rmtree(self.root / old)


@dataclass(frozen=True)
class Seen:
    """One request as the recording server saw it."""

    path: str
    authorization: str | None
    api_key: str | None
    prompt: str
    started: float
    finished: float


class _QuietOnHangUp(ThreadingHTTPServer):
    """A client that hangs up mid-stream (a test cancelling on purpose) is expected here;
    anything else still prints its traceback.

    Its listen backlog holds a burst of new connections (every request opens one): with
    socketserver's default of 5, a ninth concurrent connect on a busy machine could be
    dropped and retried by the kernel 1 s later, a delay a latency assertion then blamed
    on the runtime.
    """

    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class RecordingServer:
    """An OpenAI-shaped chat endpoint on loopback that records each request's credential.

    Streams ``chunks`` words, ``chunk_delay`` seconds apart, and answers every request
    (it checks no key): what it proves is which headers were sent, not who was let in.
    """

    def __init__(self, *, chunks: int = 5, chunk_delay: float = 0.0) -> None:
        self.chunks = chunks
        self.chunk_delay = chunk_delay
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self.first_chunk_sent = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                started = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = str(body["messages"][-1]["content"])
                stream = bool(body.get("stream"))
                self.send_response(200)
                self.send_header(
                    "Content-Type", "text/event-stream" if stream else "application/json"
                )
                self.send_header("Connection", "close")
                self.end_headers()
                if stream:
                    for event in _events(server.chunks):
                        self.wfile.write(b"data: " + event + b"\n\n")
                        self.wfile.flush()
                        server.first_chunk_sent.set()
                        time.sleep(server.chunk_delay)
                    self.wfile.write(b"data: [DONE]\n\n")
                else:
                    self.wfile.write(_completion(server.chunks))
                server._record(
                    Seen(
                        self.path,
                        self.headers.get("Authorization"),
                        self.headers.get("api-key"),
                        prompt,
                        started,
                        time.monotonic(),
                    )
                )

        self._httpd = _QuietOnHangUp(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def by_prompt(self, prompt: str) -> Seen:
        with self._lock:
            (found,) = [s for s in self.seen if s.prompt == prompt]
        return found

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def _events(chunks: int) -> Iterator[bytes]:
    for i in range(chunks):
        last = i == chunks - 1
        yield json.dumps(
            {
                "id": "chatcmpl-rec",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": f"w{i} "},
                        "finish_reason": "stop" if last else None,
                    }
                ],
            }
        ).encode()


def _completion(words: int) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-rec",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": " ".join(f"w{i}" for i in range(words)),
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": words + 1},
        }
    ).encode()


def wait_until(predicate: object, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` passes; returns its last value."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)
