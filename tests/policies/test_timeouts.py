"""Each time limit fires on its own phase and says which one it was, on both drivers.

Servers are real loopback sockets: the emulator's ``stall``/``stall_mid``/``drip`` faults,
and raw sockets scripted here byte by byte. Limits are real and short (0.2-0.5 s).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from driver_clients import AsyncClient, Client
from raw_http import RawServer, Script, delta, event

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.errors import CircuitOpen, InferenceError, NetworkError, Timeout
from rakka_runtime.types import ChatResult

Make = Callable[..., Client]
NO_RETRY = "deployment.retry.enabled=false"

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\nx-request-id: req_raw\r\n\r\n"
)
WORDS = [f"w{i} " for i in range(15)]


def stream_script(
    *,
    before: float = 0.0,
    after_head: float = 0.0,
    stall_at: int = -1,
    stall: float = 0.0,
    every: float = 0.0,
) -> Script:
    """An SSE answer of :data:`WORDS` with pauses: before the head, after it, before event
    ``stall_at``, and ``every`` seconds between events."""

    def script(sock: socket.socket, stopping: threading.Event) -> None:
        if stopping.wait(before):
            return
        sock.sendall(SSE_HEAD)
        if stopping.wait(after_head):
            return
        for i, word in enumerate(WORDS):
            if (i == stall_at and stopping.wait(stall)) or (i and stopping.wait(every)):
                return
            sock.sendall(delta(word))
        sock.sendall(delta(None, "stop") + event("[DONE]") + b"0\r\n\r\n")

    return script


def reset_script(sock: socket.socket, stopping: threading.Event) -> bool:
    # Linger 0: closing sends an RST instead of a FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return False


# --- running -------------------------------------------------------------------------------


def run(
    client: Client, *, stream: bool = True, fault: str | None = None, **kw: Any
) -> tuple[ChatResult, list[str]]:
    headers = {"x-emulator-fault": fault} if fault else None
    return client.run("time me", stream=stream, extra_headers=headers, **kw)


def timed_failure(client: Client, **kw: Any) -> tuple[InferenceError, float]:
    started = time.monotonic()
    with pytest.raises(InferenceError) as caught:
        run(client, **kw)
    return caught.value, time.monotonic() - started


# --- connect ---------------------------------------------------------------------------------


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listener never accepts and whose backlog is full: SYNs go unanswered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    try:
        for _ in range(16):
            sock = socket.socket()
            sock.settimeout(0.1)
            try:
                sock.connect(("127.0.0.1", port))
            except TimeoutError:
                sock.close()
                break
            held.append(sock)
        else:
            pytest.skip("this kernel accepts connections beyond the backlog; no connect stall")
        yield port
    finally:
        for sock in held:
            sock.close()
        listener.close()


def test_connect_timeout_names_connect_and_is_not_shortened(
    full_backlog: int, client_at: Make
) -> None:
    client = client_at(
        f"http://127.0.0.1:{full_backlog}",
        NO_RETRY,
        "deployment.timeouts.connect=400ms",
        "deployment.timeouts.request_timeout=100ms",  # must not shorten the connect limit
    )
    error, elapsed = timed_failure(client)
    assert isinstance(error, Timeout) and error.limit == "connect", error
    assert 0.35 <= elapsed < 2.0


def test_a_refused_connection_is_a_network_error_not_a_timeout(
    client_at: Make,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connecting is refused
        error, elapsed = timed_failure(client_at(f"http://127.0.0.1:{port}", NO_RETRY))
    assert isinstance(error, NetworkError) and "refused" in error.message
    assert elapsed < 1.0


# --- request_timeout: request sent → first response byte -------------------------------------

FIRST_BYTE = ("deployment.timeouts.request_timeout=300ms", "deployment.timeouts.read_timeout=5s")


@pytest.mark.parametrize("stream", [True, False])
def test_emulator_stall_before_headers_is_request_timeout(
    emulator: Emulator, client_at: Make, stream: bool
) -> None:
    client = client_at(emulator.url, NO_RETRY, *FIRST_BYTE)
    error, elapsed = timed_failure(client, stream=stream, fault="stall;seconds=2")
    assert isinstance(error, Timeout) and error.limit == "request_timeout"
    assert 0.25 <= elapsed < 1.5


def test_raw_stall_before_headers_is_request_timeout(
    raw_server: Callable[[Script], RawServer], client_at: Make
) -> None:
    server = raw_server(stream_script(before=2))
    error, elapsed = timed_failure(client_at(server.url, NO_RETRY, *FIRST_BYTE))
    assert isinstance(error, Timeout) and error.limit == "request_timeout"
    assert 0.25 <= elapsed < 1.5


# --- read_timeout: silence between bytes -----------------------------------------------------

BETWEEN = ("deployment.timeouts.request_timeout=5s", "deployment.timeouts.read_timeout=300ms")


@pytest.mark.parametrize(
    ("script", "delivered"),
    [(stream_script(after_head=2), 0), (stream_script(stall_at=4, stall=2), 4)],
    ids=["after-headers", "between-events"],
)
def test_raw_silence_after_the_headers_is_read_timeout(
    raw_server: Callable[[Script], RawServer],
    client_at: Make,
    script: Script,
    delivered: int,
) -> None:
    client = client_at(raw_server(script).url, NO_RETRY, *BETWEEN)
    error, elapsed = timed_failure(client)
    assert isinstance(error, Timeout) and error.limit == "read_timeout"
    assert 0.25 <= elapsed < 1.5
    assert error.partial is not None and error.partial.text == "".join(WORDS[:delivered])


@pytest.mark.parametrize("stream", [True, False])
def test_emulator_stall_mid_answer_is_read_timeout(
    emulator: Emulator, client_at: Make, stream: bool
) -> None:
    client = client_at(emulator.url, NO_RETRY, *BETWEEN)
    error, elapsed = timed_failure(client, stream=stream, fault="stall_mid;after=3;seconds=2")
    assert isinstance(error, Timeout) and error.limit == "read_timeout"
    assert 0.25 <= elapsed < 1.5


# --- a long healthy answer -------------------------------------------------------------------

SLOW_BUT_ALIVE = (
    "deployment.timeouts.request_timeout=300ms",
    "deployment.timeouts.read_timeout=1s",
)


def test_a_long_dripping_stream_is_not_cut_by_the_first_byte_limit(
    raw_server: Callable[[Script], RawServer], client_at: Make
) -> None:
    server = raw_server(stream_script(every=0.1))  # 15 events over 1.4 s
    client = client_at(server.url, NO_RETRY, *SLOW_BUT_ALIVE)
    started = time.monotonic()
    result, deltas = run(client)
    assert time.monotonic() - started >= 1.3
    assert [d for d in deltas if d] == WORDS and result.text == "".join(WORDS)
    assert result.finish_reason == "stop"


def test_a_slowly_dripping_body_is_not_cut_by_the_first_byte_limit(
    emulator: Emulator, client_at: Make
) -> None:
    client = client_at(emulator.url, NO_RETRY, *SLOW_BUT_ALIVE)
    started = time.monotonic()
    result, _ = run(client, stream=False, fault="drip;delay_ms=100", max_tokens=6)
    assert time.monotonic() - started >= 0.6  # 8 pieces, 7 pauses
    assert result.text and result.finish_reason == "length"


# --- the total deadline ----------------------------------------------------------------------


def test_the_deadline_cuts_a_healthy_stream(
    raw_server: Callable[[Script], RawServer], client_at: Make
) -> None:
    server = raw_server(stream_script(every=0.1))
    client = client_at(server.url, NO_RETRY, *SLOW_BUT_ALIVE, "deployment.timeouts.deadline=500ms")
    error, elapsed = timed_failure(client)
    assert isinstance(error, Timeout) and error.limit == "deadline"
    assert 0.45 <= elapsed < 1.0


def test_the_deadline_bounds_the_wait_for_headers_and_is_not_retried(
    emulator: Emulator, client_at: Make
) -> None:
    client = client_at(
        emulator.url,
        "deployment.timeouts.request_timeout=5s",
        "deployment.timeouts.deadline=300ms",
        "deployment.retry.initial_backoff=10ms",
    )
    error, elapsed = timed_failure(client, fault="stall;seconds=2")
    assert isinstance(error, Timeout) and error.limit == "deadline"
    assert 0.25 <= elapsed < 1.0
    assert [a.kind for a in error.attempts] == ["timeout"]
    assert emulator.stats.requests == 1


# --- resets and the pool ---------------------------------------------------------------------


def test_a_reset_is_a_network_error(
    emulator: Emulator,
    raw_server: Callable[[Script], RawServer],
    client_at: Make,
) -> None:
    from_emulator, _ = timed_failure(client_at(emulator.url, NO_RETRY), fault="reset")
    from_raw, _ = timed_failure(client_at(raw_server(reset_script).url, NO_RETRY))
    for error in (from_emulator, from_raw):
        assert isinstance(error, NetworkError) and error.status is None


@pytest.mark.parametrize(
    ("fault", "limit"),
    [("stall_mid;after=2;seconds=1", "read_timeout"), ("stall;seconds=1", "request_timeout")],
)
def test_a_timed_out_connection_is_not_reused(
    emulator: Emulator, client_at: Make, fault: str, limit: str
) -> None:
    client = client_at(
        emulator.url,
        NO_RETRY,
        "deployment.timeouts.request_timeout=200ms",
        "deployment.timeouts.read_timeout=200ms",
    )
    first, _ = run(client)
    assert emulator.stats.connections_accepted == 1
    error, _ = timed_failure(client, fault=fault)
    assert isinstance(error, Timeout) and error.limit == limit
    # The timed-out exchange reused the pooled connection; the next one must not, or it
    # would read the rest of the abandoned answer.
    second, _ = run(client)
    assert emulator.stats.connections_accepted == 2
    assert second.text == first.text and second.provider_request_id != first.provider_request_id
    run(client)
    assert emulator.stats.connections_accepted == 2  # a healthy connection is reused


# --- a timeout the process was too busy to notice in time ------------------------------------


def _busy_once(client: AsyncClient, phase: str, seconds: float) -> None:
    """Keep ``client``'s loop busy for ``seconds`` from the pass after its next request
    begins ``phase`` (``connect``: the send; ``head``: aiohttp reading the head), as a
    process busy elsewhere would: scheduled from inside the loop, so it does not depend
    on when this test's thread runs."""
    transport = client.aio._transport
    name = "session" if phase == "connect" else "head_awaited"
    original = getattr(transport, name)

    def busy(*args: Any) -> Any:
        setattr(transport, name, original)
        client.loop.call_soon(time.sleep, seconds)
        return original(*args)

    setattr(transport, name, busy)


@pytest.mark.parametrize("client_at", ["async"], indirect=True)
@pytest.mark.parametrize("phase", ["connect", "head"])
def test_a_busy_loop_gives_a_wait_the_time_it_could_not_watch(
    raw_server: Callable[[Script], RawServer],
    client_at: Make,
    phase: str,
) -> None:
    # Only the asyncio driver watches its limits on the loop, so only there can a busy
    # process keep a wait from seeing what came in time; the thread driver's limits are
    # socket timeouts kept by the kernel for the thread that waits. The loop is kept busy
    # 1.2 s, past the 300 ms limit of the phase the request is in: a connection the kernel
    # completed meanwhile (connect), a head that comes 1.5 s after the request (head).
    # Their timers run about 0.9 s late and give the wait that long again: both succeed.
    server = raw_server(stream_script(before=0.0 if phase == "connect" else 1.5))
    client = client_at(
        server.url,
        NO_RETRY,
        "deployment.timeouts.connect=300ms",
        "deployment.timeouts.request_timeout=300ms",
    )
    assert isinstance(client, AsyncClient)
    _busy_once(client, phase, 1.2)
    outcome = client.start().outcome()
    assert isinstance(outcome, ChatResult), outcome
    assert outcome.text == "".join(WORDS)


@pytest.mark.parametrize("client_at", ["async"], indirect=True)
def test_a_server_silent_through_the_grace_is_blamed(
    raw_server: Callable[[Script], RawServer], client_at: Make
) -> None:
    # The loop is busy past the head's limit, the wait gets that time back, and the server
    # stays silent through it too: the timeout, on time now, counts against the server
    # (a threshold of one opens the circuit), and took at most about twice the limit.
    server = raw_server(stream_script(before=5))
    client = client_at(
        server.url,
        NO_RETRY,
        "deployment.timeouts.request_timeout=300ms",
        "deployment.circuit_breaker.failure_threshold=1",
    )
    assert isinstance(client, AsyncClient)
    _busy_once(client, "head", 1.2)
    started_at = time.monotonic()
    error = client.start().outcome()
    elapsed = time.monotonic() - started_at
    assert isinstance(error, Timeout) and error.limit == "request_timeout", error
    assert not error.noticed_late, error.late_by
    assert 1.5 <= elapsed < 4.0, elapsed
    opened, _ = timed_failure(client)
    assert isinstance(opened, CircuitOpen), opened


@pytest.mark.parametrize("client_at", ["async"], indirect=True)
def test_writing_the_request_is_not_bounded_by_connect(client_at: Make) -> None:
    # A server that accepts and never reads: the 32 MB request fills the socket buffers.
    # aiohttp writes the body while it awaits the head, so the write is bounded by
    # request_timeout (1.5 s), not by the 300 ms connect limit. (The thread driver's send
    # is bounded per socket operation.)
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    taker = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    taker.start()
    try:
        client = client_at(
            f"http://127.0.0.1:{listener.getsockname()[1]}",
            NO_RETRY,
            "deployment.timeouts.connect=300ms",
            "deployment.timeouts.request_timeout=1500ms",
        )
        started = time.monotonic()
        error = client.failure("x" * (32 << 20))
        elapsed = time.monotonic() - started
        assert isinstance(error, Timeout) and error.limit == "request_timeout", error
        assert 1.2 <= elapsed < 4.0, elapsed
    finally:
        for sock in accepted:
            sock.close()
        listener.close()
