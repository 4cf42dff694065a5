"""The emulator's lifecycle: a listening socket, an accept loop, one thread per connection.

Connections are HTTP/1.1 keep-alive and served by daemon threads; ``stop()`` wakes the
accept loop through a socket pair (no polling interval to wait out) and shuts the open
connections so no client is left hanging on a stopped emulator.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType

from . import errors
from .app import EmulatorApp
from .framing import BadRequest, read_request
from .keys import KeyRing
from .limits import RateBucket
from .respond import Responder
from .scenario import ScenarioSource, load_scenario
from .stats import Stats

log = logging.getLogger(__name__)

_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


class Emulator:
    """An OpenAI / Azure OpenAI compatible chat-completions server on loopback.

    ``requests_per_minute``/``tokens_per_minute`` size the bucket behind the
    ``x-ratelimit-*`` headers; with ``enforce_limits`` an empty bucket answers 429.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keys: Iterable[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        key_grace: float = 1.0,
        scenario: ScenarioSource | None = None,
        model: str = "gpt-4o-mini",
        chunk_delay: float = 0.0,
        requests_per_minute: int = 10_000,
        tokens_per_minute: int = 10_000_000,
        enforce_limits: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.stats = Stats()
        self._stopping = threading.Event()
        self._app = EmulatorApp(
            model=model,
            keys=KeyRing(None if keys is None else list(keys), key_file, grace=key_grace),
            bucket=RateBucket(requests_per_minute, tokens_per_minute),
            enforce_limits=enforce_limits,
            chunk_delay=chunk_delay,
            scenario=load_scenario(scenario),
            stats=self.stats,
            stopping=self._stopping,
        )
        self._listener: socket.socket | None = None
        self._waker: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}

    @property
    def model(self) -> str:
        return self._app.model

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI SDK's ``base_url``: :attr:`url` + ``/v1``."""
        return self.url + "/v1"

    def set_scenario(self, scenario: ScenarioSource | None) -> None:
        """Install a new scenario (request numbering restarts at 1); ``None`` removes it."""
        self._app.scenario = load_scenario(scenario)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Emulator:
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(1024)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._waker = socket.socketpair()
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"rakka-emulator:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None or self._stopping.is_set():
            return
        self._stopping.set()
        assert self._waker is not None and self._listener is not None
        with contextlib.suppress(OSError):
            self._waker[1].send(b"x")
        self._thread.join()
        self._listener.close()
        for sock in self._waker:
            sock.close()
        with self._lock:
            open_connections = list(self._connections.items())
        for sock, _ in open_connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 1.0
        for _, thread in open_connections:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._thread is not None and not self._stopping.is_set() else "idle"
        return f"<Emulator {self.url} {state}>"

    # -- serving --------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._waker is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._waker[0], selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is not self._listener:
                        return
                    self._accept_ready()

    def _accept_ready(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # Out of descriptors, say: back off instead of spinning on a ready listener.
                log.exception("emulator accept failed")
                self._stopping.wait(0.05)
                return
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stats.count_connection()
            thread = threading.Thread(
                target=self._serve_connection,
                args=(sock,),
                name="rakka-emulator-conn",
                daemon=True,
            )
            with self._lock:
                self._connections[sock] = thread
            thread.start()

    def _serve_connection(self, sock: socket.socket) -> None:
        rfile = sock.makefile("rb", buffering=65536)
        try:
            while not self._stopping.is_set():
                try:
                    request = read_request(rfile, sock.sendall)
                except BadRequest as exc:
                    body = errors.emulator_error(f"bad HTTP request: {exc}")
                    sock.sendall(_BAD_REQUEST % (len(body), body))
                    break
                if request is None:
                    break
                responder = Responder(
                    sock,
                    started=time.perf_counter(),
                    keep_alive=request.keep_alive,
                    chunked=request.version != "HTTP/1.0",
                    wait=self._app.wait,
                )
                if not self._app.handle(responder, request):
                    break
        except OSError:
            pass  # the client went away, or a fault closed the socket under us
        except Exception:
            log.exception("emulator failed while serving a connection")
        finally:
            with self._lock:
                self._connections.pop(sock, None)
            rfile.close()
            sock.close()
