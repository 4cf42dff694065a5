"""examples/serve_sse.py under a real uvicorn server on loopback, read by a real HTTP client.

The app runs on the default ``local`` deployment (the embedded emulator, no key). The
disconnect tests ask the emulator for a slow, long answer (``x-emulator-fault: drip``, or a
``stall`` before the first byte), read a few events, drop the connection, and then watch
what the upstream request did: the ``rakka_requests_in_flight`` gauge back to 0, the
emulator's connection closed, and (with ``concurrent_requests=1`` and ``reject``) the
rate-limit slot free for the next request at once.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from examples.serve_sse import create_app
from rakka_runtime.aio import AsyncRuntime
from rakka_runtime.metrics import metrics_snapshot

pytestmark = pytest.mark.timeout(60)

DEPLOYMENT = 'deployment="local"'
# One upstream request at a time, refused (not queued) when the slot is taken: a leaked
# slot shows up as a `backpressure` failure of the next request, not as a slow one.
ONE_SLOT = (
    "deployment.rate_limits.concurrent_requests=1",
    "deployment.rate_limits.on_capacity_exhausted=reject",
)
DRIP = {"x-emulator-fault": "drip;delay_ms=50"}  # 20 events a second: a long answer is slow
PROMPT = "Tell me about queues"


@dataclass
class Served:
    host: str
    port: int
    server: uvicorn.Server

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=10)


@contextmanager
def serve(app: ASGIApp) -> Iterator[Served]:
    """Run ``app`` under uvicorn in a thread, on an ephemeral loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    try:
        # Ready when uvicorn says so: the lifespan (the runtime) is up and it is accepting.
        wait_for(lambda: server.started or not thread.is_alive(), 30, "uvicorn to start")
        assert server.started, "uvicorn exited during start-up"
        yield Served("127.0.0.1", port, server)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not shut down"


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Poll ``condition`` until it holds; returns how long that took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.002)
    return time.monotonic() - start


def in_flight() -> float:
    """The deployment's ``rakka_requests_in_flight`` (metrics are per process: the tests
    compare it with its value before they start a request)."""
    value = metrics_snapshot().get("rakka_requests_in_flight", {}).get(DEPLOYMENT, 0.0)
    assert isinstance(value, float)
    return value


def cancelled_requests() -> float:
    outcome = f'{DEPLOYMENT},model="gpt-4o-mini",outcome="cancelled"'
    value = metrics_snapshot().get("rakka_requests_total", {}).get(outcome, 0.0)
    assert isinstance(value, float)
    return value


def emulator_connections() -> int:
    """Connections the in-process emulators are serving (a thread each)."""
    return sum(t.name == "rakka-emulator-conn" for t in threading.enumerate())


@dataclass
class Event:
    event: str
    data: Any


def read_event(response: http.client.HTTPResponse) -> Event | None:
    """One SSE event (``event:`` and one ``data:`` line, then a blank line); ``None`` at
    the end of the body. Fails on any other field or on data that is not JSON."""
    fields: dict[str, str] = {}
    while True:
        line = response.readline()
        if not line:
            assert not fields, f"the body ended inside an event: {fields}"
            return None
        text = line.decode("utf-8")
        assert text.endswith("\n"), f"unterminated line {text!r}"
        text = text.rstrip("\n")
        if not text:
            assert "data" in fields, "an event without data"
            return Event(fields.get("event", "message"), json.loads(fields["data"]))
        name, sep, value = text.partition(": ")
        assert sep and name in ("event", "data") and name not in fields, f"bad line {text!r}"
        fields[name] = value


def open_stream(
    served: Served, prompt: str, max_tokens: int
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = served.connect()
    query = f"prompt={prompt.replace(' ', '+')}&max_tokens={max_tokens}"
    conn.request("GET", f"/chat?{query}", headers={"accept": "text/event-stream"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("content-type", "").startswith("text/event-stream")
    return conn, response


def read_all(served: Served, prompt: str, max_tokens: int) -> list[Event]:
    conn, response = open_stream(served, prompt, max_tokens)
    try:
        events = []
        while (event := read_event(response)) is not None:
            events.append(event)
        return events
    finally:
        conn.close()


def app_with(
    *overrides: str, extra_headers: Mapping[str, str] | None = None, spec: str = "native"
) -> ASGIApp:
    app = create_app(list(overrides), extra_headers=extra_headers)
    return app if spec == "native" else HttpSpec(app, spec)


class HttpSpec:
    """Tells the app the server speaks ASGI HTTP spec ``version``. With 2.4, Starlette's
    own ``StreamingResponse`` stops listening for ``http.disconnect`` and relies on a
    failing send, which uvicorn (2.3: writes after a disconnect are dropped) never raises:
    the worst case for an app that left the disconnect to Starlette."""

    def __init__(self, app: ASGIApp, version: str) -> None:
        self.app = app
        self.version = version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "asgi": {**scope.get("asgi", {}), "spec_version": self.version}}
        await self.app(scope, receive, send)


def direct_chat(prompt: str, max_tokens: int, overrides: Sequence[str] = ()) -> Any:
    async def chat() -> Any:
        async with AsyncRuntime.from_overrides(overrides) as rt:
            return await rt.chat(prompt, max_tokens=max_tokens)

    return asyncio.run(chat())


def test_a_complete_stream_is_the_reply_as_events_then_the_result() -> None:
    idle = in_flight()
    with serve(app_with()) as served:
        events = read_all(served, PROMPT, 24)

    *tokens, last = events
    assert tokens and all(e.event == "message" for e in tokens)
    assert all(isinstance(e.data["text"], str) and e.data["text"] for e in tokens)
    assert last.event == "done"
    done = last.data
    assert "".join(e.data["text"] for e in tokens) == done["text"]

    direct = direct_chat(PROMPT, 24)
    assert done["text"] == direct.text
    assert done["finish_reason"] == direct.finish_reason == "length"
    assert direct.usage is not None and done["usage"] == direct.usage.as_dict()
    assert done["usage"]["output_tokens"] == 24 == len(tokens)
    assert done["cost_usd"] == pytest.approx(direct.cost_usd) and done["cost_usd"] > 0
    assert done["cost_estimated"] is False and done["attempts"] == 1
    assert done["latency_ms"] >= done["ttft_ms"] >= 0
    assert done["request_id"]
    assert in_flight() == idle


def test_a_failed_request_ends_the_stream_with_a_failed_event() -> None:
    fault = {"x-emulator-fault": "http_error;status=400"}
    with serve(app_with(extra_headers=fault)) as served:
        events = read_all(served, PROMPT, 8)
    assert [e.event for e in events] == ["failed"]
    assert events[0].data["kind"] == "bad_request"
    assert events[0].data["status"] == 400
    assert events[0].data["retryable"] is False


def test_bad_query_parameters_are_refused_before_anything_is_sent() -> None:
    with serve(app_with()) as served:
        for query in ("max_tokens=8", "prompt=hi&max_tokens=0", "prompt=hi&max_tokens=x"):
            conn = served.connect()
            conn.request("GET", f"/chat?{query}")
            response = conn.getresponse()
            assert response.status == 400, query
            assert "error" in json.loads(response.read())
            conn.close()
        conn = served.connect()
        conn.request("GET", "/")
        page = conn.getresponse()
        assert page.status == 200 and b"EventSource" in page.read()
        conn.close()


def disconnect_after(served: Served, events: int, idle: float) -> float:
    """Read ``events`` token events of a long answer, drop the connection; returns the
    monotonic time of the drop."""
    conn, response = open_stream(served, PROMPT, 4096)  # 4096 x 50 ms: minutes
    for _ in range(events):
        event = read_event(response)
        assert event is not None and event.event == "message"
    assert in_flight() == idle + 1
    dropped = time.monotonic()
    conn.close()
    return dropped


def test_a_client_disconnect_ends_the_upstream_request_and_frees_its_slot() -> None:
    idle, cancelled = in_flight(), cancelled_requests()
    with serve(app_with(*ONE_SLOT, extra_headers=DRIP)) as served:
        before = emulator_connections()
        dropped = disconnect_after(served, 3, idle)

        wait_for(lambda: in_flight() == idle, 1.0, "the upstream request to end")
        ended = time.monotonic() - dropped
        # The upstream connection was closed (not left in the pool): the emulator's next
        # write to it failed and its connection thread ended.
        wait_for(lambda: emulator_connections() <= before, 1.0, "the emulator to see it")
        closed = time.monotonic() - dropped
        print(
            f"\ndisconnect -> upstream request ended: {ended * 1000:.1f} ms;"
            f" -> emulator connection closed: {closed * 1000:.1f} ms"
        )

        # The one slot is free: the next request is admitted at once (`reject` would
        # answer `backpressure` otherwise) and completes.
        start = time.monotonic()
        events = read_all(served, PROMPT, 3)
        assert events[-1].event == "done", events[-1]
        assert time.monotonic() - start < 1.0  # 3 events x 50 ms, and no queueing

    assert cancelled_requests() == cancelled + 1  # the dropped one; the second was `ok`
    assert in_flight() == idle


@pytest.mark.parametrize("spec", ["native", "2.4"])
def test_a_disconnect_while_upstream_is_silent_ends_it_too(spec: str) -> None:
    # The emulator holds the answer back for 30 s: the request is waiting for response
    # headers when the client leaves, and no send() to the client would fail meanwhile.
    stall = {"x-emulator-fault": "stall;seconds=30"}
    idle, cancelled = in_flight(), cancelled_requests()
    with serve(app_with(*ONE_SLOT, extra_headers=stall, spec=spec)) as served:
        conn, _ = open_stream(served, PROMPT, 16)
        wait_for(lambda: in_flight() == idle + 1, 5.0, "the upstream request to start")
        dropped = time.monotonic()
        conn.close()
        wait_for(lambda: in_flight() == idle, 1.0, "the upstream request to end")
        assert cancelled_requests() == cancelled + 1
        print(
            f"\nsilent upstream: disconnect -> upstream request ended: "
            f"{(time.monotonic() - dropped) * 1000:.1f} ms"
        )


def test_a_disconnect_while_queued_for_the_slot_leaves_the_queue() -> None:
    # One slot, queued (not refused): the first stream holds it, the second waits for it
    # inside the runtime, and its client leaves while it waits.
    queue = ("deployment.rate_limits.concurrent_requests=1",)
    idle, cancelled = in_flight(), cancelled_requests()
    with serve(app_with(*queue, extra_headers=DRIP)) as served:
        first, first_response = open_stream(served, PROMPT, 4096)
        assert (event := read_event(first_response)) is not None and event.event == "message"
        waiting, _ = open_stream(served, PROMPT, 4096)
        wait_for(lambda: in_flight() == idle + 2, 5.0, "the second request to queue")
        waiting.close()
        wait_for(lambda: in_flight() == idle + 1, 1.0, "the queued request to end")
        assert cancelled_requests() == cancelled + 1
        # The first stream goes on, unaffected; once it is dropped the slot is free again.
        assert (event := read_event(first_response)) is not None and event.event == "message"
        first.close()
        wait_for(lambda: in_flight() == idle, 1.0, "the first request to end")
        events = read_all(served, PROMPT, 3)
        assert events[-1].event == "done", events[-1]
    assert cancelled_requests() == cancelled + 2
