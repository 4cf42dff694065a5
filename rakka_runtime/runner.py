"""The call chain of one deployment: middlewares around a provider's wire client.

A request's journey through a deployment::

    outer middlewares (metrics, budget, retry)          once per logical request
      → attempt middlewares (breaker, rate limit)       once per attempt
        → WireClient.send                               one HTTP exchange

Every layer is a function ``(state, call_next) -> Iterator[TokenChunk]``. Iterators keep
streams lazy (a stream is read as the caller consumes it) and let a layer observe each
chunk, the end of the stream and any failure with plain ``for``/``try``, while the shared
:class:`CallState` carries what the layers learn about the request (attempts, timings,
the aggregate result). The chain is composed once per deployment, not per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from rakka_runtime.errors import Cancelled, InferenceError
from rakka_runtime.pricing import Spend
from rakka_runtime.types import Attempt, ChatResult, ExecuteBatch, TokenChunk

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig, RateLimitPolicy
    from rakka_runtime.pricing import CostEstimate


@dataclass(slots=True)
class CallState:
    """What the layers share about one logical request (kept across its attempts)."""

    request: ExecuteBatch
    deployment: str
    model: str
    started_at: float = field(default_factory=time.monotonic)
    first_chunk_at: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    # Set by the wire client when an attempt completes; the latest attempt wins.
    result: ChatResult | None = None
    # Tokens reserved before sending (rate limits, budgets), reconciled afterwards.
    estimated_input_tokens: int = 0
    # The latest attempt's response headers, keys lower-cased.
    response_headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None  # HTTP status of the latest attempt
    # What every attempt so far consumed (a failed attempt's tokens are billed too).
    spend: Spend = field(default_factory=Spend)
    # The runner's pre-call cost estimate for a request (budgets call it when they need it).
    estimator: Callable[[ExecuteBatch], CostEstimate] | None = None
    # Set by RunHandle.cancel (any thread); the runtime turns the next failure into
    # Cancelled and starts no further attempt.
    cancelled: bool = False
    # How to cut the response being read, registered by the wire client while one is open.
    _abort: Callable[[], None] | None = None
    # Set on cancel; made only when a layer waits on it (a retry backoff, a budget wait).
    _cancel_event: threading.Event | None = None

    def cancel_event(self) -> threading.Event:
        """An event set when the request is cancelled, for waits that should end early."""
        event = self._cancel_event
        if event is None:
            event = self._cancel_event = threading.Event()
            if self.cancelled:  # a cancel that ran before the event existed
                event.set()
        return event

    def on_cancel(self, abort: Callable[[], None] | None) -> None:
        """Register (or, with None, clear) how to cut the open response on cancel."""
        self._abort = abort
        if abort is not None and self.cancelled:
            abort()  # cancelled while the request was being sent

    def cancel(self) -> None:
        self.cancelled = True
        event = self._cancel_event
        if event is not None:
            event.set()
        abort = self._abort
        if abort is not None:
            abort()


CallNext = Callable[[CallState], Iterator[TokenChunk]]


@runtime_checkable
class Middleware(Protocol):
    """A layer of the call chain, contributed by a plugin's ``rakka_request_middleware``."""

    name: str
    stage: Literal["outer", "attempt"]
    order: int  # lower sits further out within its stage

    def __call__(self, state: CallState, call_next: CallNext) -> Iterator[TokenChunk]: ...

    # Optional: ``close()`` is called when the runtime closes (connections, threads).


class WireClient(Protocol):
    """One provider's HTTP exchange for one attempt (built by the provider's factory)."""

    def send(self, state: CallState) -> Iterator[TokenChunk]:
        """Send ``state.request`` once; yield chunks; set ``state.result`` when done.

        Sets ``state.status`` and ``state.response_headers`` (keys lower-cased: policies
        and metrics look them up directly) as soon as the response headers arrive.

        Raises a classified :class:`InferenceError` on failure.
        """
        ...

    def estimate_input_tokens(self, request: ExecuteBatch) -> int: ...

    def close(self) -> None: ...


def compose(middlewares: list[Middleware], innermost: CallNext) -> CallNext:
    """Fold middlewares around ``innermost``: outer stage first, then by ``order``."""
    ranked = sorted(middlewares, key=lambda m: (m.stage != "outer", m.order))
    call: CallNext = innermost
    for middleware in reversed(ranked):
        call = _bind(middleware, call)
    return call


def _bind(middleware: Middleware, call_next: CallNext) -> CallNext:
    def call(state: CallState) -> Iterator[TokenChunk]:
        return middleware(state, call_next)

    return call


class RunHandle:
    """A request in flight: iterate for chunks, or call :meth:`result` for the aggregate.

    Nothing is sent until the handle is iterated (or :meth:`result` is called). Closing
    the handle early releases the connection and every permit the layers hold.
    """

    __slots__ = ("_chunks", "_done", "state")

    def __init__(self, state: CallState, chunks: Iterator[TokenChunk]) -> None:
        self.state = state
        self._chunks = chunks
        self._done = False

    @property
    def request_id(self) -> str:
        return self.state.request.request_id

    def __iter__(self) -> RunHandle:
        # The handle is its own iterator: breaking out of a ``for`` loop leaves the stream
        # open, so ``result()`` can still drain it (a wrapper generator would close it).
        return self

    def __next__(self) -> TokenChunk:
        try:
            return next(self._chunks)
        except BaseException:
            self._done = True
            raise

    def result(self) -> ChatResult:
        """Drain the rest of the stream and return the aggregate (raises on failure)."""
        if not self._done:
            for _ in self:
                pass
        if self.state.result is None:
            if self.state.cancelled:  # the reader already got Cancelled; so does this call
                raise Cancelled("cancelled by the caller")
            raise InferenceError("the request ended without a result")  # a layer swallowed it
        return self.state.result

    def cancel(self) -> None:
        """Stop the request from any thread, also while another thread reads it: the open
        response's connection is cut (the reader gets :class:`Cancelled` at once, with the
        partial output), a retry backoff or budget wait ends at once, a request queued
        for rate-limit capacity leaves the line within 100 ms, and no further attempt
        starts. A request still waiting for its response headers is cut when they arrive
        or its ``request_timeout`` fires."""
        self.state.cancel()

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        self._done = True

    def __enter__(self) -> RunHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ModelRunner(Protocol):
    """What the runtime offers per deployment (the seed crate's ModelRunner)."""

    deployment: DeploymentConfig

    def execute(self, request: ExecuteBatch) -> RunHandle: ...

    def estimate_cost(self, request: ExecuteBatch) -> CostEstimate: ...

    @property
    def rate_limits(self) -> RateLimitPolicy:
        """The deployment's configured limits (the rate-limit plugin enforces them)."""
        ...

    def close(self) -> None: ...
