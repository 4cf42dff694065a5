"""Stream a chat reply to a browser as Server-Sent Events from an asyncio web app.

Run it (the bundled emulator answers; no key, no network)::

    .venv/bin/pip install starlette uvicorn
    .venv/bin/uvicorn examples.serve_sse:app
    # open http://127.0.0.1:8000/ or:
    curl -N 'http://127.0.0.1:8000/chat?prompt=hello&max_tokens=64'

A real deployment takes the same Hydra overrides as ``rakka chat``, from an environment
variable (``RAKKA_COMPILED=rakka.json`` starts from a compiled config instead)::

    RAKKA_OVERRIDES='deployment=openai env=prod' .venv/bin/uvicorn examples.serve_sse:app

Starlette rather than FastAPI: this app is one streaming route with two query parameters,
and FastAPI's ``StreamingResponse`` *is* Starlette's, so the code below works unchanged in
a FastAPI route (``@app.get("/chat")`` returning the same response) without bringing in
FastAPI's request-validation layer for an example that needs none.

The events: one ``message`` event per text delta (``data: {"text": "..."}``), then either
``event: done`` with the result (text, usage, cost, attempts, timings) or ``event: failed``
with the error (``{kind, message, status, retryable}``). The HTTP status is already 200
when a stream fails, so the failure travels as an event.

When the client goes away (tab closed, ``curl`` stopped), the upstream request ends too:
see :class:`EventStream`. On shutdown uvicorn waits for open streams to finish unless
``--timeout-graceful-shutdown N`` is given; after N seconds they are cut the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from rakka_runtime import ChatResult, InferenceError
from rakka_runtime.aio import AsyncRunHandle, AsyncRuntime

__all__ = [
    "EventStream",
    "app",
    "create_app",
    "result_json",
    "runtime_from_env",
    "sse_event",
    "sse_events",
]

MAX_TOKENS_LIMIT = 4096
"""The largest ``max_tokens`` a client may ask for."""


def runtime_from_env(environ: Mapping[str, str] = os.environ) -> AsyncRuntime:
    """``RAKKA_COMPILED`` (a compiled config) or ``RAKKA_OVERRIDES`` (Hydra overrides,
    shell-quoted); neither set: the default ``local`` deployment, the embedded emulator."""
    compiled = environ.get("RAKKA_COMPILED")
    if compiled:
        return AsyncRuntime.from_compiled(compiled)
    return AsyncRuntime.from_overrides(shlex.split(environ.get("RAKKA_OVERRIDES", "")))


def result_json(result: ChatResult) -> dict[str, Any]:
    """The ``done`` event's payload: what ``rakka chat --json`` reports on success."""
    return {
        "text": result.text,
        "finish_reason": result.finish_reason,
        "usage": None if result.usage is None else result.usage.as_dict(),
        "cost_usd": result.cost_usd,
        "cost_estimated": result.cost_estimated,
        "model": result.model,
        "attempts": result.attempts,
        "latency_ms": result.latency_ms,
        "ttft_ms": result.ttft_ms,
        "request_id": result.provider_request_id or result.request_id,
    }


def sse_event(data: Mapping[str, Any], event: str | None = None) -> bytes:
    # JSON never contains a raw newline, so one `data:` line carries the whole payload.
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def sse_events(handle: AsyncRunHandle) -> AsyncIterator[bytes]:
    """The SSE body for one request. ``async with handle``: however this generator ends
    (the last event, an error, cancellation, ``aclose()``), the upstream request is
    closed and its rate-limit slot freed before the generator is done."""
    async with handle:
        try:
            async for chunk in handle:
                if chunk.text_delta:
                    yield sse_event({"text": chunk.text_delta})
            result = await handle.result()
        except InferenceError as exc:
            yield sse_event(exc.to_dict(), "failed")
            return
        yield sse_event(result_json(result), "done")


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response that ends its body as soon as the client leaves.

    Starlette's ``StreamingResponse`` watches for the client's disconnect only on servers
    that speak ASGI HTTP spec < 2.4 (uvicorn's HTTP today, 2.3: it cancels the streaming
    task at once). On a 2.4 server it notices only when a later ``send`` fails (so the
    upstream request would run on while the model is silent: before the first token, in
    a retry backoff), and in neither case does it close the body iterator: an iterator
    stopped at a ``yield`` is closed only when it is garbage-collected.

    Here, on any server: the body runs in a task of its own, a disconnect cancels it at
    once (``CancelledError`` reaches the request wherever it waits: headers, a chunk, a
    backoff, the rate-limit queue), and the body iterator is always ``aclose()``d before
    the response returns, so the upstream connection and slot are released by then.
    """

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        # No proxy buffering (nginx) and no caching: each event should reach the client now.
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        super().__init__(body, headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.create_task(self.stream_response(send))
        watching = asyncio.create_task(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait((streaming, watching), return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also when this task itself is cancelled (server shutdown).
            watching.cancel()
            streaming.cancel()
            await asyncio.gather(streaming, watching, return_exceptions=True)
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        if not streaming.cancelled():
            error = streaming.exception()
            if error is not None and not isinstance(error, OSError):
                raise error  # a bug in the body, not the client leaving mid-send
        if self.background is not None:
            await self.background()


async def chat(request: Request) -> Response:
    prompt = request.query_params.get("prompt", "").strip()
    if not prompt:
        return JSONResponse({"error": "the query parameter prompt is required"}, 400)
    try:
        max_tokens = int(request.query_params.get("max_tokens", "256"))
    except ValueError:
        max_tokens = 0
    if not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        return JSONResponse({"error": f"max_tokens must be 1..{MAX_TOKENS_LIMIT}"}, 400)
    rt: AsyncRuntime = request.state.rt
    extra_headers: Mapping[str, str] | None = request.state.extra_headers
    try:
        handle = rt.stream(prompt, max_tokens=max_tokens, extra_headers=extra_headers)
    except InferenceError as exc:  # bad input: nothing was sent
        return JSONResponse({"error": exc.to_dict()}, 400)
    # Nothing is sent upstream until the response starts iterating the handle.
    return EventStream(sse_events(handle))


async def page(request: Request) -> Response:
    return HTMLResponse(_PAGE)


def create_app(
    overrides: Sequence[str] | None = None, *, extra_headers: Mapping[str, str] | None = None
) -> Starlette:
    """The app. ``overrides``: Hydra overrides (``None``: from the environment, see
    :func:`runtime_from_env`). ``extra_headers`` go on every upstream request (tracing,
    or an emulator fault in tests)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # One runtime for the app's lifetime: one connection pool, one set of limits,
        # breaker, budgets and metrics for every request; closed at shutdown.
        rt = runtime_from_env() if overrides is None else AsyncRuntime.from_overrides(overrides)
        async with rt:
            yield {"rt": rt, "extra_headers": dict(extra_headers or {}) or None}

    return Starlette(
        routes=[Route("/", page), Route("/chat", chat)],
        lifespan=lifespan,
    )


app = create_app()

_PAGE = """<!doctype html>
<meta charset="utf-8"><title>rakka SSE</title>
<form id="f"><input name="prompt" value="Write a haiku about queues" size="40">
<input name="max_tokens" value="256" size="5"><button>Send</button></form>
<pre id="out" style="white-space: pre-wrap"></pre><pre id="meta"></pre>
<script>
const out = document.getElementById("out"), meta = document.getElementById("meta");
let source = null;
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault();
  if (source) source.close();  // closing the EventSource cancels the upstream request
  out.textContent = meta.textContent = "";
  source = new EventSource("/chat?" + new URLSearchParams(new FormData(e.target)));
  source.onmessage = (m) => { out.textContent += JSON.parse(m.data).text; };
  // Close on the last event, or the browser reconnects and asks again.
  source.addEventListener("done", (m) => { meta.textContent = m.data; source.close(); });
  source.addEventListener("failed", (m) => { meta.textContent = m.data; source.close(); });
  source.onerror = () => source.close();
};
</script>
"""
