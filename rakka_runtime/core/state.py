"""Per-request state: what the core and the policies learn about one logical request.

The caller's :class:`~rakka_runtime.types.ChatRequest` is frozen and never changed; what
a request learns while it runs (its deadline, its attempts, the latest response's
headers, what it spent) lives here, one :class:`CallState` per run, with one
:class:`~rakka_runtime.types.Attempt` record per attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rakka_runtime.pricing import Spend
from rakka_runtime.types import Attempt, ChatRequest, ChatResult

if TYPE_CHECKING:
    from rakka_runtime.errors import InferenceError
    from rakka_runtime.pricing import CostEstimate
    from rakka_runtime.provider import Feedback

__all__ = ["CallState"]


@dataclass(slots=True)
class CallState:
    """What the layers share about one logical request (kept across its attempts)."""

    request: ChatRequest
    deployment: str
    model: str
    # Absolute time.monotonic() after which nothing more is started or waited for.
    deadline: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    first_chunk_at: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    # This request's latest complete result (an attempt's), or None.
    result: ChatResult | None = None
    # The prompt's estimated tokens (the provider's codec), for limits, budgets and cost.
    estimated_input_tokens: int = 0
    # The latest attempt's response headers (keys lower-cased) and status.
    response_headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    # What the latest response's headers say about rate limits (the provider's reading).
    rate_limit_feedback: Sequence[Feedback] = ()
    # What every attempt so far consumed (a failed attempt's tokens are billed too).
    spend: Spend = field(default_factory=Spend)
    # The pre-call cost estimate of the request (budgets call it when they need it).
    estimator: Callable[[ChatRequest], CostEstimate] | None = None
    # A routed request: asked before a retry wait whether to hand the request to another
    # deployment instead (a 429 whose retry-after another deployment need not wait out).
    hand_over: Callable[[InferenceError], bool] | None = None
    # Set by RunHandle.cancel (any thread): no further attempt or wait starts.
    cancelled: bool = False
    # How to cut the I/O in progress, registered by the driver while there is some.
    _abort: Callable[[], None] | None = None
    # Set on cancel; made only when a thread waits on it (a backoff, a budget wait).
    _cancel_event: threading.Event | None = None

    def time_left(self) -> float | None:
        """Seconds until the deadline (negative once passed), or None without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def cancel_event(self) -> threading.Event:
        """An event set when the request is cancelled, for waits that should end early."""
        event = self._cancel_event
        if event is None:
            event = self._cancel_event = threading.Event()
            if self.cancelled:  # a cancel that ran before the event existed
                event.set()
        return event

    def on_cancel(self, abort: Callable[[], None] | None) -> None:
        """Register (or, with None, clear) how to cut the I/O in progress on cancel."""
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
