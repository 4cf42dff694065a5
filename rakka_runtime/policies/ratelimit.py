"""Built-in policy plugin ``rate_limits``: stay within a deployment's request, token and
concurrency limits on the client side, and follow what the provider says about them.

One :class:`~rakka_runtime.policies.admission.AdmissionQueue` per deployment, an
attempt-scope policy at order 20 (inside the circuit breaker): every attempt is admitted, and
later reconciled, on its own.

Per attempt:

1. **Reserve** one request and the request's one estimate of its tokens
   (:func:`rakka_runtime.core.flow.estimated_tokens`: the provider's prompt estimate plus
   ``max_tokens`` times ``n``, or the default when the request sets none).
2. **Admit**: ``on_capacity_exhausted: queue`` waits first come, first served, bounded by
   the request's deadline (else :data:`~rakka_runtime.policies.admission.MAX_QUEUE_WAIT`),
   failing at once with ``backpressure`` when it could not be admitted in time; ``reject``
   fails at once whenever the request does not fit now.
3. **Follow the provider** (what its codec reads from the response headers): a remaining
   count lowers the local buckets (never above config), a limit teaches a dimension the
   config leaves unset, and
   a 429 pauses the whole deployment for its retry-after
   (:data:`PAUSE_WITHOUT_RETRY_AFTER` when it gave none), at most ``max_pause`` (the
   admission object caps it, whichever backend).
4. **Reconcile** when the attempt ends, however it ends (finished, failed, or the caller
   closed the handle): the concurrency slot is freed and the token reservation is replaced
   by the reported usage. Without usage (a failure, an abandoned stream) the estimated
   input plus one token per chunk delivered is kept — the provider read the prompt —
   and the rest refunded. A 429 refunds everything: the provider counted nothing.

``backend: redis`` keeps the buckets, slots and pause in Redis, shared by every process
that uses it (:mod:`rakka_runtime.policies.shared.redis_admission`, imported only then).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from rakka_runtime.core.flow import estimated_tokens
from rakka_runtime.errors import InferenceError, RateLimited
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.policies.admission import Admission, AdmissionQueue
from rakka_runtime.policies.clock import SYSTEM_CLOCK, ClockedPlugin
from rakka_runtime.policies.line import Pending
from rakka_runtime.types import ChatRequest, ChatResult

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig, RateLimitPolicy
    from rakka_runtime.core.policy import Outcome, Policy
    from rakka_runtime.core.state import CallState
    from rakka_runtime.plugins import PluginHooks
    from rakka_runtime.policies.shared.redis_admission import SharedAdmission

__all__ = [
    "PAUSE_WITHOUT_RETRY_AFTER",
    "RateLimitGate",
    "RateLimitPlugin",
    "SharedRateLimitGate",
    "plugin",
    "reserved_tokens",
]

PAUSE_WITHOUT_RETRY_AFTER = 1.0
"""Seconds a 429 without ``retry-after``/``retry-after-ms`` pauses the deployment."""


def reserved_tokens(request: ChatRequest, input_tokens: int) -> int:
    """Tokens to reserve for ``request`` whose prompt is estimated at ``input_tokens``."""
    return estimated_tokens(request, input_tokens)


class RateLimitGate:
    """The rate-limit policy of one deployment (a :class:`~rakka_runtime.core.policy.Policy`).

    Its ticket is the attempt's grant. Waiting in line is a
    :class:`~rakka_runtime.core.policy.Wait` the driver carries out, whichever backend.
    """

    name = "rate_limits"
    scope: Literal["request", "attempt"] = "attempt"
    order = 20

    def __init__(self, policy: RateLimitPolicy, admission: Admission[Any]) -> None:
        self.policy = policy
        self.admission = admission
        self._wait = policy.on_capacity_exhausted == "queue"
        self._clock = getattr(admission, "_clock", None)
        # Per request: its place in line while it waits (keyed by the state object).
        self._waiters: dict[int, Any] = {}

    def close(self) -> None:
        """Release what the backend holds (a shared store's connections); idempotent."""
        close = getattr(self.admission, "close", None)
        if close is not None:
            close()

    def enter(self, state: CallState) -> Any:
        tokens, waiter, deadline = self._asking(state)
        step = self.admission.reserve(tokens, waiter=waiter, deadline=deadline, wait=self._wait)
        return self._entered(state, step)

    def _asking(self, state: CallState) -> tuple[int, Any, float | None]:
        """What to reserve for ``state``: its tokens, its place in line, its deadline on
        the admission's clock (a test's fake clock may differ from the request's)."""
        waiters = self._waiters
        deadline = state.deadline
        clock = self._clock
        if deadline is not None and clock is not None and clock is not SYSTEM_CLOCK:
            deadline += clock.monotonic() - time.monotonic()
        return (
            estimated_tokens(state.request, state.estimated_input_tokens),
            waiters.pop(id(state), None) if waiters else None,
            deadline,
        )

    def _entered(self, state: CallState, step: Any) -> Any:
        """The decision for a reservation step: wait in line, or the attempt's ticket (the
        backend's grant itself: no wrapper object per attempt)."""
        if isinstance(step, Pending):
            self._waiters[id(state)] = step.waiter
            return step.wait
        return step

    def abandon(self, state: CallState) -> None:
        waiter = self._waiters.pop(id(state), None)
        if waiter is not None:
            self.admission.leave_line(waiter)

    def on_response(self, state: CallState, ticket: Any) -> None:
        feedback = state.rate_limit_feedback
        if feedback:
            self.admission.observe_all(feedback)

    def leave(self, state: CallState, ticket: Any, outcome: Outcome) -> None:
        pause, requests_used, tokens_used = _settlement(state, outcome)
        if pause is not None:
            self.admission.pause(pause)
        self.admission.release(ticket, requests_used=requests_used, tokens_used=tokens_used)


class SharedRateLimitGate(RateLimitGate):
    """The rate-limit policy over the Redis-shared admission (``backend: redis``): the
    same decisions, plus the awaitable twins the asyncio driver uses to ask Redis with
    redis-py's asyncio client on the event loop."""

    admission: SharedAdmission

    async def enter_async(self, state: CallState) -> Any:
        tokens, waiter, deadline = self._asking(state)
        step = await self.admission.areserve(
            tokens, waiter=waiter, deadline=deadline, wait=self._wait
        )
        return self._entered(state, step)

    async def on_response_async(self, state: CallState, ticket: Any) -> None:
        feedback = state.rate_limit_feedback
        if feedback:
            await self.admission.aobserve_all(feedback)

    async def leave_async(self, state: CallState, ticket: Any, outcome: Outcome) -> None:
        pause, requests_used, tokens_used = _settlement(state, outcome)
        if pause is not None:
            await self.admission.apause(pause)
        await self.admission.arelease(ticket, requests_used=requests_used, tokens_used=tokens_used)

    async def aclose(self) -> None:
        """Close the asyncio client's connections (on the loop that made them)."""
        await self.admission.aclose()


def _settlement(state: CallState, outcome: Outcome) -> tuple[float | None, int, int]:
    """How an attempt settles: the pause a 429 asks for (``None``: none), and the requests
    and tokens it used (see the module docstring, step 4)."""
    requests_used, tokens_used = 1, -1
    pause: float | None = None
    error = outcome.error
    if isinstance(error, RateLimited):
        requests_used = tokens_used = 0
        pause = PAUSE_WITHOUT_RETRY_AFTER if error.retry_after is None else error.retry_after
    elif isinstance(error, InferenceError):
        partial = error.partial
        if partial is not None and partial.usage is not None:
            tokens_used = partial.usage.input_tokens + partial.usage.output_tokens
    if tokens_used < 0:
        tokens_used = _usage_or_guess(
            outcome.result, state.estimated_input_tokens, outcome.delivered
        )
    return pause, requests_used, tokens_used


def _usage_or_guess(result: ChatResult | None, input_tokens: int, delivered: int) -> int:
    """The attempt's reported usage (its outcome holds only its own result), else its
    estimated input plus one token per chunk delivered."""
    if result is not None and result.usage is not None:
        return result.usage.input_tokens + result.usage.output_tokens
    return input_tokens + delivered


class RateLimitPlugin(ClockedPlugin):
    """The plugin object; tests register one with a fake clock (the built-in blocked)."""

    @hookimpl
    def rakka_request_policy(
        self, deployment: DeploymentConfig, hooks: PluginHooks
    ) -> Policy | None:
        policy = deployment.rate_limits
        if not policy.enabled:
            return None
        if policy.backend == "redis":
            from rakka_runtime.policies.shared.redis_admission import SharedAdmission

            shared = SharedAdmission.from_policy(deployment.name, policy, clock=self.clock)
            return SharedRateLimitGate(policy, shared)
        return RateLimitGate(
            policy,
            AdmissionQueue(
                name=deployment.name,
                requests_per_minute=policy.requests_per_minute,
                tokens_per_minute=policy.tokens_per_minute,
                concurrent_requests=policy.concurrent_requests,
                clock=self.clock,
                max_pause=policy.max_pause,
            ),
        )


plugin = RateLimitPlugin()
