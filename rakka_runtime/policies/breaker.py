"""Built-in policy plugin ``circuit_breaker``: stop calling a deployment that keeps failing.

One :class:`~rakka_runtime.policies.circuit.CircuitBreaker` per deployment, an
attempt-scope policy at order 10: it runs once per attempt, outside the rate limiter, so an open
circuit fails at once without taking rate-limit capacity or touching the network.

What an attempt counts as:

- **success**: the attempt's iterator finished without an error;
- **failure**: it raised an error whose class ``counts_as_circuit_failure`` (server
  errors, timeouts, network failures, broken streams, protocol errors);
- **neutral** (neither trips nor resets the count): every other error (4xx, rate limits,
  content filter, ...), a ``timeout`` whose limit was the caller's own ``deadline`` (the
  caller's budget ran out; that says nothing about the server), a ``timeout`` noticed late
  because this process was too busy to watch the connection
  (:attr:`~rakka_runtime.errors.Timeout.noticed_late`: a client overloading its own event
  loop must not open the circuit on a healthy provider), any non-inference exception, and
  a stream the caller abandoned by closing the handle early.

State changes are reported through the ``rakka_breaker_state_changed`` hook.

``backend: redis`` shares the circuit with every process using the same Redis
(:mod:`rakka_runtime.policies.shared.redis_circuit`, imported only then).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from rakka_runtime.errors import InferenceError, Timeout
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.policies.circuit import Breaker, CircuitBreaker
from rakka_runtime.policies.circuit import Outcome as Outcome_
from rakka_runtime.policies.clock import ClockedPlugin

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig
    from rakka_runtime.core.policy import Outcome, Policy
    from rakka_runtime.core.state import CallState
    from rakka_runtime.plugins import PluginHooks
    from rakka_runtime.policies.shared.redis_circuit import SharedCircuitBreaker

__all__ = [
    "BreakerGate",
    "CircuitBreakerPlugin",
    "SharedBreakerGate",
    "outcome_of",
    "plugin",
]


def outcome_of(exc: BaseException) -> Outcome_:
    """What a failed attempt means for the circuit (see the module docstring)."""
    if not isinstance(exc, InferenceError) or not exc.counts_as_circuit_failure:
        return "neutral"
    if isinstance(exc, Timeout) and (exc.limit == "deadline" or exc.noticed_late):
        return "neutral"
    return "failure"


class BreakerGate:
    """The circuit-breaker policy of one deployment (a core ``Policy``)."""

    name = "circuit_breaker"
    scope: Literal["request", "attempt"] = "attempt"
    order = 10

    def __init__(self, breaker: Breaker[Any]) -> None:
        self.breaker = breaker

    def close(self) -> None:
        """Release what the backend holds (a shared store's connections); idempotent."""
        close = getattr(self.breaker, "close", None)
        if close is not None:
            close()

    def enter(self, state: CallState) -> Any:
        return self.breaker.acquire()  # raises CircuitOpen

    def leave(self, state: CallState, ticket: Any, outcome: Outcome) -> None:
        self.breaker.settle(ticket, _meaning(outcome))


class SharedBreakerGate(BreakerGate):
    """The circuit-breaker policy over the Redis-shared circuit (``backend: redis``): the
    same decisions, plus the awaitable twins the asyncio driver uses to ask Redis with
    redis-py's asyncio client on the event loop."""

    breaker: SharedCircuitBreaker

    async def enter_async(self, state: CallState) -> Any:
        return await self.breaker.aacquire()  # raises CircuitOpen

    async def leave_async(self, state: CallState, ticket: Any, outcome: Outcome) -> None:
        await self.breaker.asettle(ticket, _meaning(outcome))

    async def aclose(self) -> None:
        """Close the asyncio client's connections (on the loop that made them)."""
        await self.breaker.aclose()


def _meaning(outcome: Outcome) -> Outcome_:
    """What an attempt's end means for the circuit. A caller closing the stream early is
    neutral: it says nothing about the server."""
    if outcome.error is not None:
        return outcome_of(outcome.error)
    return "neutral" if outcome.abandoned else "success"


class CircuitBreakerPlugin(ClockedPlugin):
    """The plugin object; tests register one with a fake clock (the built-in blocked)."""

    @hookimpl
    def rakka_request_policy(
        self, deployment: DeploymentConfig, hooks: PluginHooks
    ) -> Policy | None:
        policy = deployment.circuit_breaker
        if not policy.enabled:
            return None
        name = deployment.name

        def notify(old_state: str, new_state: str, retry_at: float | None) -> None:
            hooks.breaker_state_changed(name, old_state, new_state, retry_at)

        if policy.backend == "redis":
            from rakka_runtime.policies.shared.redis_circuit import SharedCircuitBreaker

            shared = SharedCircuitBreaker.from_policy(
                name, policy, clock=self.clock, on_change=notify
            )
            return SharedBreakerGate(shared)
        return BreakerGate(CircuitBreaker(policy, name=name, clock=self.clock, on_change=notify))


plugin = CircuitBreakerPlugin()
