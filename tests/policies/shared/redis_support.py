"""A real redis-server as a child process, and the config overrides that point at it."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pytest

REDIS_SERVER = shutil.which("redis-server")
SKIP_REASON = (
    "redis-server is not on PATH: the shared (Redis) policy tests need a real Redis "
    "(Debian/Ubuntu: apt-get install -y redis-server)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``redis-server --port P --save '' --appendonly no`` on loopback: no files, no
    persistence, so a restart starts empty (as a lost Redis would)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if REDIS_SERVER is None:
            pytest.skip(SKIP_REASON)
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        assert self.process is not None
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited at start")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING")

    def kill(self) -> None:
        """SIGKILL: no shutdown, every connection reset, all data gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        """SIGSTOP: the server hangs (connections stay open, nothing is answered)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        """SIGCONT: the server answers again, the commands sent meanwhile first."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> object:
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True)


def unique_prefix() -> str:
    """A key prefix of its own per test, so tests sharing one server never share state."""
    return f"t{uuid.uuid4().hex[:12]}"


def redis_overrides(
    url: str, prefix: str, *, limits: bool = True, breaker: bool = False
) -> list[str]:
    """Hydra overrides putting rate limits and/or the breaker on the Redis at ``url``."""
    out = []
    for section, enabled in (("rate_limits", limits), ("circuit_breaker", breaker)):
        if enabled:
            out += [
                f"deployment.{section}.backend=redis",
                f"deployment.{section}.redis.url={url}",
                f"deployment.{section}.redis.key_prefix={prefix}",
            ]
    return out
