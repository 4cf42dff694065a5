"""Built-in policy plugin ``retry``: try a transient failure again, with backoff.

A request-scope policy (order 100): metrics and budgets see one logical request around it,
while the breaker and rate limits are entered once per attempt.

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
from typing import TYPE_CHECKING, Literal

from rakka_runtime.core.policy import Outcome, Wait
from rakka_runtime.errors import (
    InferenceError,
    RateLimited,
    StreamInterrupted,
    Timeout,
)
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.policies.clock import SYSTEM_CLOCK, Clock, ClockedPlugin
from rakka_runtime.types import ChatResult

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig, RetryPolicy
    from rakka_runtime.core.policy import Policy
    from rakka_runtime.core.state import CallState
    from rakka_runtime.plugins import PluginHooks

__all__ = ["RetryPlugin", "RetryRule", "backoff", "plugin"]


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


class RetryRule:
    """The retry policy of one deployment (a :class:`rakka_runtime.core.policy.Policy`).

    Its ticket is the request's deadline on this policy's clock. ``retry_wait`` decides
    after each failed attempt: a :class:`Wait` before the next one, or the error to raise.
    """

    name = "retry"
    scope: Literal["request", "attempt"] = "request"
    order = 100

    def __init__(self, policy: RetryPolicy, clock: Clock = SYSTEM_CLOCK) -> None:
        self.policy = policy
        self.clock = clock

    def enter(self, state: CallState) -> float | None:
        """The request's time budget on this policy's clock (``None``: unbounded). The
        policy's own ``deadline`` shortens the request's, for every layer (transport,
        queues), without touching the caller's request."""
        budget = self.policy.deadline
        if budget is not None:
            ends = time.monotonic() + budget
            if state.deadline is None or ends < state.deadline:
                state.deadline = ends
        left = state.time_left()
        return None if left is None else self.clock.monotonic() + left

    def leave(self, state: CallState, ticket: object, outcome: Outcome) -> None:
        return None

    def retry_wait(
        self, state: CallState, exc: InferenceError, retries: int, delivered: int
    ) -> Wait:
        """The wait before retry number ``retries + 1``; raises when there is none."""
        if delivered:
            interrupted = _after_delivery(exc, delivered, state)
            if interrupted is None:
                raise exc
            raise interrupted from exc
        deadline = None
        left = state.time_left()
        if left is not None:
            deadline = self.clock.monotonic() + left
        return Wait(self._wait(exc, retries, deadline), "retry backoff", clock=self.clock)

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
    def rakka_request_policy(
        self, deployment: DeploymentConfig, hooks: PluginHooks
    ) -> Policy | None:
        policy = deployment.retry
        if not policy.enabled:
            return None
        return RetryRule(policy, clock=self.clock)


plugin = RetryPlugin()
