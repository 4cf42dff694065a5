"""Built-in policy plugin ``retry``: try a transient failure again, with backoff.

It sits in the outer stage, innermost there (order 100), so metrics and budgets see one
logical request around it while the breaker and rate limits run once per attempt inside it.

The decision for a failed attempt, in order:

1. After the first chunk reached the caller nothing is retried: text cannot be taken
   back. A transient failure then surfaces as ``stream_interrupted`` with the partial
   output; a final one (content filter, ...) keeps its kind.
2. ``exc.is_retryable``: the server's ``x-should-retry`` when it sent one, else the
   error class's ``retryable`` (rate limits, 5xx, 408, 409, timeouts, network failures,
   broken or malformed streams). A passed deadline is never retried.
3. At most ``max_retries`` retries.
4. The server's wait (``retry-after-ms``, else ``retry-after``, parsed by the classifier)
   is used exactly, without jitter, when ``respect_retry_after``; one longer than
   ``max_retry_after`` or past the deadline fails at once as ``rate_limited`` carrying
   ``retry_after``, so the caller can schedule it instead of a thread being parked.
5. Otherwise exponential backoff with jitter; a backoff that would cross the deadline
   fails at once with the last error.

Policy values are immutable; per-request state lives in local variables of the call, so
one middleware serves every thread of a deployment.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from rakka_runtime.errors import (
    Cancelled,
    InferenceError,
    RateLimited,
    StreamInterrupted,
    Timeout,
)
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.policies.clock import SYSTEM_CLOCK, Clock, ClockedPlugin
from rakka_runtime.types import Attempt, ChatResult, TokenChunk

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig, RetryPolicy
    from rakka_runtime.plugins import PluginHooks
    from rakka_runtime.runner import CallNext, CallState, Middleware

__all__ = ["RetryMiddleware", "RetryPlugin", "backoff", "plugin"]


def backoff(policy: RetryPolicy, retry: int, roll: float) -> float:
    """Seconds to wait before retry number ``retry`` (0 = the first retry).

    ``roll`` is a uniform draw in [0, 1): ``equal`` jitter keeps half the delay and
    randomises the rest (never a near-zero wait), ``full`` randomises all of it (spreads
    many clients furthest apart).
    """
    try:
        grown = policy.initial_backoff * policy.backoff_multiplier**retry
    except OverflowError:  # a huge retry count: the cap applies anyway
        grown = policy.max_backoff
    base = min(policy.max_backoff, grown)
    if policy.jitter == "none":
        return base
    if policy.jitter == "equal":
        return base / 2 + roll * base / 2
    return roll * base


class RetryMiddleware:
    """The retry layer of one deployment (a :class:`rakka_runtime.runner.Middleware`)."""

    name = "retry"
    stage: Literal["outer", "attempt"] = "outer"
    order = 100

    def __init__(self, policy: RetryPolicy, clock: Clock = SYSTEM_CLOCK) -> None:
        self.policy = policy
        self.clock = clock

    def __call__(self, state: CallState, call_next: CallNext) -> Iterator[TokenChunk]:
        clock = self.clock
        deadline = self._deadline(state)
        retry = 0
        while True:
            recorded = len(state.attempts)
            delivered = 0
            chunks: Iterator[TokenChunk] | None = None
            try:
                # Inside the try: a layer that refuses (breaker, rate limit) may raise here.
                chunks = call_next(state)
                for chunk in chunks:
                    delivered += 1
                    yield chunk
                return
            except InferenceError as exc:
                record = self._record(state, recorded, exc)
                if delivered:
                    interrupted = _after_delivery(exc, delivered, state)
                    if interrupted is None:
                        raise
                    raise interrupted from exc
                wait = self._wait(exc, retry, deadline)
                record.wait = wait
            finally:
                # Release the attempt's connection and permits now, not when collected.
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            if clock.wait(state.cancel_event(), wait):
                raise Cancelled("cancelled during a retry backoff")
            retry += 1

    def _deadline(self, state: CallState) -> float | None:
        """The request's time budget on this middleware's clock (``None``: unbounded)."""
        request = state.request
        now = self.clock.monotonic()
        if request.deadline is not None:
            # The request's deadline is on time.monotonic(); carry the time left over to
            # the injected clock so a fake clock and the transport agree on it.
            return now + (request.deadline - time.monotonic())
        budget = self.policy.deadline
        if budget is None:
            return None
        # The attempts see it too (transport, rate-limit queue), so no single attempt
        # outlives the budget. A copy: the caller's request object is left as it was.
        state.request = replace(request, deadline=time.monotonic() + budget)
        return now + budget

    @staticmethod
    def _record(state: CallState, recorded: int, exc: InferenceError) -> Attempt:
        """The attempt record of the failure, added when no wire exchange made one."""
        if len(state.attempts) == recorded:
            # Refused before the wire (breaker open, rate limit): still an attempt.
            record = Attempt(exc.kind, exc.status)
            state.attempts.append(record)
            return record
        record = state.attempts[-1]
        if record.kind == "ok":  # the exchange went through but a later layer failed it
            record.kind = exc.kind
        return record

    def _wait(self, exc: InferenceError, retry: int, deadline: float | None) -> float:
        """Seconds to wait before the next attempt; raises when there is none to make."""
        policy = self.policy
        if not exc.is_retryable or retry >= policy.max_retries:
            raise exc
        if isinstance(exc, Timeout) and exc.limit == "deadline":
            raise exc
        left = None if deadline is None else deadline - self.clock.monotonic()
        if left is not None and left <= 0:
            raise exc
        hint = exc.retry_after if policy.respect_retry_after else None
        if hint is not None:
            cap = policy.max_retry_after
            if cap is not None and hint > cap:
                raise _wont_wait(exc, hint, f"longer than max_retry_after ({cap:g}s)")
            if left is not None and hint >= left:
                raise _wont_wait(exc, hint, f"past the deadline ({left:.3g}s left)")
            return hint
        wait = backoff(policy, retry, self.clock.random())
        if left is not None and wait >= left:
            raise exc
        return wait


def _wont_wait(exc: InferenceError, hint: float, why: str) -> RateLimited:
    """The server asked for a wait we will not make: tell the caller how long it was."""
    error = RateLimited(
        f"the server asked to retry after {hint:g}s, {why}; not waiting "
        f"(after {exc.kind}: {exc.message})",
        status=exc.status,
        request_id=exc.request_id,
        retry_after=hint,
        code=exc.code,
    )
    error.__cause__ = exc
    return error


def _after_delivery(
    exc: InferenceError, delivered: int, state: CallState
) -> StreamInterrupted | None:
    """A failure after the caller got output, which a retry would repeat.

    Returns the ``stream_interrupted`` error to raise instead of a transient ``exc``, or
    ``None`` to raise ``exc`` itself: a final verdict (content filter, ...) keeps its kind,
    and a broken stream already is one. Either way the error carries the partial output.
    """
    partial = exc.partial if exc.partial is not None else _fallback_partial(state)
    if not exc.retryable or isinstance(exc, StreamInterrupted):
        exc.partial = partial
        return None
    what = f"{exc.limit} fired" if isinstance(exc, Timeout) else exc.kind
    plural = "s" if delivered != 1 else ""
    return StreamInterrupted(
        f"{what} after {delivered} chunk{plural}: {exc.message}",
        status=exc.status,
        request_id=exc.request_id,
        code=exc.code,
        partial=partial,
    )


def _fallback_partial(state: CallState) -> ChatResult:
    # Only when a layer other than the wire client failed mid-stream without a partial.
    result = state.result
    return result if result is not None else ChatResult(state.request.request_id)


class RetryPlugin(ClockedPlugin):
    """The plugin object; tests register one with a fake clock (the built-in blocked)."""

    @hookimpl
    def rakka_request_middleware(
        self, deployment: DeploymentConfig, hooks: PluginHooks
    ) -> Middleware | None:
        policy = deployment.retry
        if not policy.enabled:
            return None
        return RetryMiddleware(policy, clock=self.clock)


plugin = RetryPlugin()
