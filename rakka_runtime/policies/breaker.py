"""Built-in policy plugin ``circuit_breaker``: stop calling a deployment that keeps failing.

One :class:`~rakka_runtime.policies.circuit.CircuitBreaker` per deployment, in the
attempt stage at order 10: it runs once per attempt, outside the rate limiter, so an open
circuit fails at once without taking rate-limit capacity or touching the network.

What an attempt counts as:

- **success**: the attempt's iterator finished without an error;
- **failure**: it raised an error whose class ``counts_as_circuit_failure`` (server
  errors, timeouts, network failures, broken streams, protocol errors);
- **neutral** (neither trips nor resets the count): every other error (4xx, rate limits,
  content filter, ...), a ``timeout`` whose limit was the caller's own ``deadline`` (the
  caller's budget ran out; that says nothing about the server), any non-inference
  exception, and a stream the caller abandoned by closing the handle early.

State changes are reported through the ``rakka_breaker_state_changed`` hook.

``backend: redis`` shares the circuit with every process using the same Redis
(:mod:`rakka_runtime.policies.shared.redis_circuit`, imported only then).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from rakka_runtime.errors import InferenceError, Timeout
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.policies.circuit import Breaker, CircuitBreaker, Outcome
from rakka_runtime.policies.clock import ClockedPlugin
from rakka_runtime.types import TokenChunk

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig
    from rakka_runtime.plugins import PluginHooks
    from rakka_runtime.runner import CallNext, CallState, Middleware

__all__ = [
    "BreakerMiddleware",
    "CircuitBreakerPlugin",
    "outcome_of",
    "plugin",
]


def outcome_of(exc: BaseException) -> Outcome:
    """What a failed attempt means for the circuit (see the module docstring)."""
    if not isinstance(exc, InferenceError) or not exc.counts_as_circuit_failure:
        return "neutral"
    if isinstance(exc, Timeout) and exc.limit == "deadline":
        return "neutral"
    return "failure"


class BreakerMiddleware:
    """The breaker layer of one deployment (a :class:`rakka_runtime.runner.Middleware`)."""

    name = "circuit_breaker"
    stage: Literal["outer", "attempt"] = "attempt"
    order = 10

    def __init__(self, breaker: Breaker[Any]) -> None:
        self.breaker = breaker

    def close(self) -> None:
        """Release what the backend holds (a shared store's connections); idempotent."""
        close = getattr(self.breaker, "close", None)
        if close is not None:
            close()

    def __call__(self, state: CallState, call_next: CallNext) -> Iterator[TokenChunk]:
        breaker = self.breaker
        permit = breaker.acquire()
        # Neutral unless proven otherwise: a caller closing the handle early raises
        # GeneratorExit at the yield, and the finally below must still free the probe slot.
        outcome: Outcome = "neutral"
        try:
            yield from call_next(state)
            outcome = "success"
        except BaseException as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            breaker.settle(permit, outcome)


class CircuitBreakerPlugin(ClockedPlugin):
    """The plugin object; tests register one with a fake clock (the built-in blocked)."""

    @hookimpl
    def rakka_request_middleware(
        self, deployment: DeploymentConfig, hooks: PluginHooks
    ) -> Middleware | None:
        policy = deployment.circuit_breaker
        if not policy.enabled:
            return None
        name = deployment.name

        def notify(old_state: str, new_state: str, retry_at: float | None) -> None:
            hooks.breaker_state_changed(name, old_state, new_state, retry_at)

        breaker: Breaker[Any]
        if policy.backend == "redis":
            from rakka_runtime.policies.shared.redis_circuit import SharedCircuitBreaker

            breaker = SharedCircuitBreaker.from_policy(
                name, policy, clock=self.clock, on_change=notify
            )
        else:
            breaker = CircuitBreaker(policy, name=name, clock=self.clock, on_change=notify)
        return BreakerMiddleware(breaker)


plugin = CircuitBreakerPlugin()
