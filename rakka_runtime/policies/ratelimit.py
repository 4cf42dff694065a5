"""Built-in policy plugin ``rate_limits``: stay within a deployment's request, token and
concurrency limits on the client side, and follow what the provider says about them.

One :class:`~rakka_runtime.policies.admission.AdmissionQueue` per deployment, in the
attempt stage at order 20 (inside the circuit breaker): every attempt is admitted, and
later reconciled, on its own.

Per attempt:

1. **Reserve** one request and ``estimate_input_tokens(messages)`` plus the most the answer
   may use: ``max_tokens`` (times ``n``), or :data:`DEFAULT_OUTPUT_RESERVATION` when the
   request sets none.
2. **Admit**: ``on_capacity_exhausted: queue`` waits first come, first served, bounded by
   the request's deadline (else :data:`~rakka_runtime.policies.admission.MAX_QUEUE_WAIT`),
   failing at once with ``backpressure`` when it could not be admitted in time; ``reject``
   fails at once whenever the request does not fit now.
3. **Follow the provider**: ``x-ratelimit-remaining-*`` lowers the local buckets (never
   above config), ``x-ratelimit-limit-*`` teaches a dimension the config leaves unset, and
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

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from rakka_runtime.config.durations import parse_duration
from rakka_runtime.errors import InferenceError, RateLimited
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.policies.admission import DIMENSIONS, Admission, AdmissionQueue
from rakka_runtime.policies.clock import ClockedPlugin
from rakka_runtime.pricing import estimate_input_tokens
from rakka_runtime.types import ChatResult, ExecuteBatch, TokenChunk

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig, RateLimitPolicy
    from rakka_runtime.plugins import PluginHooks
    from rakka_runtime.runner import CallNext, CallState, Middleware

__all__ = [
    "DEFAULT_OUTPUT_RESERVATION",
    "PAUSE_WITHOUT_RETRY_AFTER",
    "RateLimitMiddleware",
    "RateLimitPlugin",
    "plugin",
    "ratelimit_feedback",
    "reserved_tokens",
]

DEFAULT_OUTPUT_RESERVATION = 1024
"""Output tokens reserved for a request that sets no ``max_tokens``. Reserving the model's
whole output window would serialise a tokens-per-minute budget needlessly; reconciling
with the reported usage corrects the guess either way."""

PAUSE_WITHOUT_RETRY_AFTER = 1.0
"""Seconds a 429 without ``retry-after``/``retry-after-ms`` pauses the deployment."""

_PREFIX = "x-ratelimit-"


def reserved_tokens(request: ExecuteBatch, input_tokens: int) -> int:
    """Tokens to reserve for ``request`` whose prompt is estimated at ``input_tokens``."""
    sampling = request.sampling
    output = DEFAULT_OUTPUT_RESERVATION if sampling.max_tokens is None else sampling.max_tokens
    return input_tokens + output * max(1, sampling.n or 1)


def ratelimit_feedback(
    headers: Mapping[str, str],
) -> list[tuple[str, int, int | None, float | None]]:
    """``(dimension, remaining, limit, reset seconds)`` for each dimension the headers report.

    Reset durations are Go-style text (``1s``, ``6m0s``, ``20ms``); a value that does not
    parse is ignored rather than trusted.
    """
    return _feedback({key.lower(): value for key, value in headers.items()})


# The header names, built once: the hot path looks each one up directly.
_HEADER_NAMES = tuple(
    (
        dimension,
        f"{_PREFIX}remaining-{dimension}",
        f"{_PREFIX}limit-{dimension}",
        f"{_PREFIX}reset-{dimension}",
    )
    for dimension in DIMENSIONS
)


def _feedback(lowered: Mapping[str, str]) -> list[tuple[str, int, int | None, float | None]]:
    """:func:`ratelimit_feedback` on headers whose keys are already lower-case
    (``CallState.response_headers``): no copy, no scan."""
    out = []
    for dimension, remaining_name, limit_name, reset_name in _HEADER_NAMES:
        remaining = _count(lowered.get(remaining_name))
        if remaining is None:
            continue
        out.append(
            (
                dimension,
                remaining,
                _count(lowered.get(limit_name)),
                _seconds(lowered.get(reset_name)),
            )
        )
    return out


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


@lru_cache(maxsize=256)  # providers repeat a handful of reset values ("1s", "6ms", ...)
def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError:
        return None


class RateLimitMiddleware:
    """The rate-limit layer of one deployment (a :class:`rakka_runtime.runner.Middleware`)."""

    name = "rate_limits"
    stage: Literal["outer", "attempt"] = "attempt"
    order = 20

    def __init__(self, policy: RateLimitPolicy, admission: Admission[Any]) -> None:
        self.policy = policy
        self.admission = admission
        self._wait = policy.on_capacity_exhausted == "queue"

    def close(self) -> None:
        """Release what the backend holds (a shared store's connections); idempotent."""
        close = getattr(self.admission, "close", None)
        if close is not None:
            close()

    def __call__(self, state: CallState, call_next: CallNext) -> Iterator[TokenChunk]:
        request = state.request
        input_tokens = state.estimated_input_tokens
        if input_tokens <= 0:  # estimated once per logical request, reused by retries
            input_tokens = state.estimated_input_tokens = estimate_input_tokens(request.messages)
        admission = self.admission
        grant = admission.admit(
            reserved_tokens(request, input_tokens),
            deadline=request.deadline,
            wait=self._wait,
            cancelled=lambda: state.cancelled,
        )
        # What earlier attempts left on the state, so this attempt's own are told apart.
        result_before, headers_before = state.result, state.response_headers
        requests_used, tokens_used = 1, -1
        delivered = 0
        observed = False
        chunks = call_next(state)
        try:
            for chunk in chunks:
                if not delivered:  # headers are in: apply them before a long stream ends
                    observed = self._observe(state.response_headers, headers_before)
                delivered += 1
                yield chunk
        except RateLimited as exc:
            requests_used = tokens_used = 0
            pause = exc.retry_after
            admission.pause(PAUSE_WITHOUT_RETRY_AFTER if pause is None else pause)
            raise
        except InferenceError as exc:
            partial = exc.partial
            if partial is not None and partial.usage is not None:
                tokens_used = partial.usage.input_tokens + partial.usage.output_tokens
            raise
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # the connection goes before the slot does
            if not observed:
                self._observe(state.response_headers, headers_before)
            if tokens_used < 0:
                tokens_used = _usage_or_guess(state.result, result_before, input_tokens, delivered)
            admission.release(grant, requests_used=requests_used, tokens_used=tokens_used)

    def _observe(self, headers: Mapping[str, str], before: Mapping[str, str]) -> bool:
        if headers is before:
            return False  # this attempt got no response (yet)
        feedback = _feedback(headers)
        if feedback:
            self.admission.observe_all(feedback)
        return True


def _usage_or_guess(
    result: ChatResult | None, before: ChatResult | None, input_tokens: int, delivered: int
) -> int:
    if result is not None and result is not before and result.usage is not None:
        return result.usage.input_tokens + result.usage.output_tokens
    return input_tokens + delivered


class RateLimitPlugin(ClockedPlugin):
    """The plugin object; tests register one with a fake clock (the built-in blocked)."""

    @hookimpl
    def rakka_request_middleware(
        self, deployment: DeploymentConfig, hooks: PluginHooks
    ) -> Middleware | None:
        policy = deployment.rate_limits
        if not policy.enabled:
            return None
        admission: Admission[Any]
        if policy.backend == "redis":
            from rakka_runtime.policies.shared.redis_admission import SharedAdmission

            admission = SharedAdmission.from_policy(deployment.name, policy, clock=self.clock)
        else:
            admission = AdmissionQueue(
                name=deployment.name,
                requests_per_minute=policy.requests_per_minute,
                tokens_per_minute=policy.tokens_per_minute,
                concurrent_requests=policy.concurrent_requests,
                clock=self.clock,
                max_pause=policy.max_pause,
            )
        return RateLimitMiddleware(policy, admission)


plugin = RateLimitPlugin()
