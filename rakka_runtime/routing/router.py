"""The router's decisions, once for both drivers (sans-IO, like :mod:`rakka_runtime.core.flow`).

A :class:`Router` holds the deployments (one :class:`~rakka_runtime.core.flow.DeploymentCore`
each) and the model groups. A routed request is a :class:`RouteState`: the driver loops
(:func:`rakka_runtime.drivers.sync.run_routed`, :func:`rakka_runtime.drivers.aio.run_routed`)
ask it for the next deployment and its per-deployment state, run that deployment's own
request (retries stay inside it), pass chunks through it, and tell it how the deployment
ended; it decides whether to stop, try the next deployment or move to another group, and
builds the result with every deployment's attempt and cost.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rakka_runtime.config.schema import FALLBACK_NEXT, FALLBACK_STOP, ModelGroup
from rakka_runtime.errors import Cancelled, InferenceError, InvalidRequest, StreamInterrupted
from rakka_runtime.routing.fallbacks import FallbackTable
from rakka_runtime.routing.health import Candidate, Probe, Tracker
from rakka_runtime.routing.strategies import BUILTIN_STRATEGIES, Strategy, StrategyFactory
from rakka_runtime.types import (
    Attempt,
    ChatRequest,
    ChatResult,
    DeploymentAttempt,
    TokenChunk,
)

if TYPE_CHECKING:
    from rakka_runtime.core.flow import DeploymentCore
    from rakka_runtime.core.state import CallState
    from rakka_runtime.plugins import PluginHooks

__all__ = ["Route", "RouteState", "Router"]


@dataclass(slots=True)
class Route:
    """One model group as the router uses it (a deployment addressed by name is a group
    of one that never falls back)."""

    name: str
    members: tuple[str, ...]
    strategy: Strategy
    weights: Mapping[str, float]
    table: FallbackTable
    stream_failover: str = "fail"
    max_tries: int = 1


class Router:
    """Every deployment and model group of a runtime; shared by its sync and async sides."""

    def __init__(
        self,
        cores: Mapping[str, DeploymentCore],
        groups: Mapping[str, ModelGroup],
        *,
        default: str | None = None,
        strategies: Mapping[str, StrategyFactory] | None = None,
        hooks: PluginHooks | None = None,
    ) -> None:
        self.cores = dict(cores)
        self.hooks = hooks
        self.trackers = {name: Tracker() for name in self.cores}
        self.probes = {name: Probe(core) for name, core in self.cores.items()}
        known = {**BUILTIN_STRATEGIES, **(strategies or {})}
        self.routes: dict[str, Route] = {}
        for name, group in groups.items():
            factory = known.get(group.strategy)
            if factory is None:
                from rakka_runtime.errors import ConfigError

                raise ConfigError(
                    f"model_groups.{name}.strategy",
                    f"unknown strategy {group.strategy!r} ({', '.join(sorted(known))})",
                )
            self.routes[name] = Route(
                name=name,
                members=tuple(group.deployments),
                strategy=factory(),
                weights={m: group.weights.get(m, 1.0) for m in group.deployments},
                table=FallbackTable.for_group(group),
                stream_failover=group.stream_failover,
                max_tries=group.max_tries_per_deployment,
            )
        stop = FallbackTable({})
        for name in self.cores:
            if name not in self.routes:
                self.routes[name] = Route(
                    name, (name,), BUILTIN_STRATEGIES["ordered"](), {name: 1.0}, stop
                )
        first_group = next(iter(groups), None)
        self.default = default or first_group or next(iter(self.cores))

    def route(self, model: str | None) -> Route:
        """The group (or single deployment) ``model`` names; the default one for None."""
        found = self.routes.get(self.default if model is None else model)
        if found is None:
            known = ", ".join(sorted(self.routes))
            raise InvalidRequest(
                f"unknown model {model!r}: name a model group or deployment ({known})"
            )
        return found

    def start(self, request: ChatRequest, deadline: float | None = None) -> RouteState:
        """The state of one routed run of ``request`` (``deadline`` absolute, optional)."""
        return RouteState(self, self.route(request.model), request, deadline)

    def candidates(self, route: Route, exclude: Mapping[str, int] | None = None) -> list[Candidate]:
        """The group's deployments (those tried fewer than ``max_tries`` times), in order."""
        tried = exclude or {}
        probes, trackers, weights = self.probes, self.trackers, route.weights
        return [
            probes[name].read(name, trackers[name], weights[name])
            for name in route.members
            if tried.get(name, 0) < route.max_tries
        ]

    def health(self) -> list[Candidate]:
        """Every deployment's health now (``rakka health``)."""
        return [self.probes[name].read(name, self.trackers[name], 1.0) for name in self.cores]

    def close(self) -> None:
        problem: BaseException | None = None
        for core in self.cores.values():
            try:
                core.close()
            except BaseException as exc:  # close every one, report the first failure
                problem = problem or exc
        if problem is not None:
            raise problem


class RouteState:
    """One routed request: which deployments were tried, what the caller has seen, the
    one deadline spanning them all. Handles treat it as they treat a ``CallState``
    (``request``, ``result``, ``status``, ``deadline``, ``cancel``)."""

    def __init__(
        self, router: Router, route: Route, request: ChatRequest, deadline: float | None
    ) -> None:
        self.router = router
        self.route = route
        self.request = request
        self.started_at = now = time.monotonic()
        limits = [d for d in (request.deadline, deadline) if d is not None]
        if request.timeout is not None:
            limits.append(now + request.timeout)
        primary = router.cores[route.members[0]].deployment.timeouts.deadline
        if primary is not None:
            limits.append(now + primary)
        self._deadline = min(limits) if limits else None
        self.tries: dict[str, int] = {}
        self.visited = [route.name]
        self.deployment_attempts: list[DeploymentAttempt] = []
        self.current: CallState | None = None
        self.core: DeploymentCore | None = None
        self.result: ChatResult | None = None
        self.cancelled = False
        self._abort: Callable[[], None] | None = None
        self.last_error: InferenceError | None = None
        # What reached the caller: chunks, text, when the first one did.
        self.delivered = 0
        self.text: list[str] = []
        self.first_chunk_at: float | None = None
        # stream_failover=continue: the partial answer the current deployment continues.
        self.prefix = ""
        self._attempt_started = now
        self._histories: list[list[Attempt]] = []
        self._running: str | None = None

    # -- what a handle reads ----------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        return self._deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self._deadline = value
        if self.current is not None:
            self.current.deadline = value

    @property
    def status(self) -> int | None:
        return None if self.current is None else self.current.status

    def cancel(self) -> None:
        self.cancelled = True
        if self.current is not None:
            self.current.cancel()
        elif self._abort is not None:
            self._abort()

    def on_cancel(self, abort: Callable[[], None] | None) -> None:
        """The asyncio handle's canceller: handed on to every deployment's state."""
        self._abort = abort
        if self.current is not None:
            self.current.on_cancel(abort)

    # -- the loop's steps ---------------------------------------------------------------------

    def next(self) -> tuple[DeploymentCore, CallState]:
        """The next deployment to try and its state; raises when there is none left."""
        if self.cancelled:
            raise self._final(Cancelled("cancelled before sending"))
        left = None if self._deadline is None else self._deadline - time.monotonic()
        if left is not None and left <= 0 and self.last_error is not None:
            raise self._final(self.last_error)
        name = self._choose()
        if name is None:
            error = self.last_error or InferenceError(f"no deployment of {self.route.name!r} left")
            if self.delivered:  # a continuation found no deployment: the stream is cut
                error = _interrupted(error, self._partial(error.partial))
            raise self._final(error)
        self.tries[name] = self.tries.get(name, 0) + 1
        core = self.router.cores[name]
        request = self._request_for()
        state = core.new_state(request, self._deadline)
        state.hand_over = self._hand_over
        if self._abort is not None:
            state.on_cancel(self._abort)
        self.current, self.core = state, core
        self._attempt_started = time.monotonic()
        self.router.trackers[name].started()
        self._running = name
        return core, state

    def chunk(self, chunk: TokenChunk) -> TokenChunk:
        """A chunk on its way to the caller."""
        if self.first_chunk_at is None:
            self.first_chunk_at = time.monotonic()
        self.delivered += 1
        if chunk.text_delta:
            self.text.append(chunk.text_delta)
        return chunk

    def succeeded(self) -> ChatResult:
        """The current deployment answered: the routed result."""
        state, core = self._current()
        result = state.result
        if result is None:
            raise InferenceError("the request ended without a result")
        self._record(state, core, "ok", result)
        name = core.deployment.name
        self.router.trackers[name].observe(result.ttft_ms, result.latency_ms)
        if self.prefix:
            result.text = self.prefix + result.text
        finished = time.monotonic()
        result.latency_ms = (finished - self.started_at) * 1000
        first = self.first_chunk_at if self.request.stream else finished
        result.ttft_ms = None if first is None else (first - self.started_at) * 1000
        history = [a for item in self._histories for a in item]
        result.attempt_history = history
        result.attempts = max(1, len(history))
        result.deployment = name
        result.deployment_attempts = list(self.deployment_attempts)
        self._total(result)
        self.result = result
        self._finished(result, None)
        return result

    def failed(self, error: InferenceError) -> None:
        """The current deployment failed with ``error``: returns when another deployment
        should be tried, raises what the caller gets otherwise."""
        state, core = self._current()
        partial = error.partial
        self._record(state, core, error.kind, partial, status=error.status)
        self.last_error = error
        if self.cancelled or isinstance(error, Cancelled):
            raise self._final(error)
        action = self.route.table.action(error.kind)
        if action == FALLBACK_STOP:
            raise self._final(error)  # a content filter mid-stream stays content_filtered
        if self.delivered:
            # The caller has output already: only a continuation can go on.
            if self.route.stream_failover != "continue":
                raise self._final(_interrupted(error, self._partial(partial)))
            self.prefix = "".join(self.text)
        if action != FALLBACK_NEXT:
            if action in self.visited or action not in self.router.routes:
                raise self._final(error)
            self.visited.append(action)
            self.route = self.router.routes[action]

    def ended(self) -> None:
        """The current deployment's run is over, however it ended."""
        running, self._running = self._running, None
        if running is not None:
            self.router.trackers[running].ended()

    # -- helpers -------------------------------------------------------------------------------

    def _current(self) -> tuple[CallState, DeploymentCore]:
        state, core = self.current, self.core
        assert state is not None and core is not None
        return state, core

    def _choose(self) -> str | None:
        candidates = self.router.candidates(self.route, self.tries)
        if not candidates:
            return None
        healthy = [c for c in candidates if c.healthy]
        if healthy:
            # With max_tries_per_deployment > 1: every deployment once before any twice.
            fewest = min(self.tries.get(c.name, 0) for c in healthy)
            healthy = [c for c in healthy if self.tries.get(c.name, 0) == fewest]
            return healthy[self.route.strategy.choose(healthy)].name
        if self.deployment_attempts:
            return None  # every one left is down: the last failure stands
        # Nothing tried and none healthy: the one back soonest (its own policies then wait
        # for it within the deadline, or refuse).
        return min(candidates, key=lambda c: c.unavailable_for).name

    def _request_for(self) -> ChatRequest:
        """The request as a deployment gets it: no group name as its model (the deployment's
        own applies) and, when continuing, the partial answer as the assistant's turn."""
        request = self.request
        if self.prefix:
            messages = [*request.messages, {"role": "assistant", "content": self.prefix}]
            return dataclasses.replace(request, model=None, messages=messages)
        if request.model is None:
            return request
        return dataclasses.replace(request, model=None)

    def _hand_over(self, error: InferenceError) -> bool:
        """Asked by the deployment's core before a retry wait: a 429 hands the request to
        another healthy deployment of the group instead of waiting out its retry-after."""
        if error.kind != "rate_limited" or self.route.table.action(error.kind) != FALLBACK_NEXT:
            return False
        current = None if self.core is None else self.core.deployment.name
        tries = dict(self.tries)
        return any(
            c.healthy and c.name != current for c in self.router.candidates(self.route, tries)
        )

    def _record(
        self,
        state: CallState,
        core: DeploymentCore,
        kind: str,
        result: ChatResult | None,
        *,
        status: int | None = None,
    ) -> None:
        spend = state.spend
        cost = spend.total if spend.charged else None
        usage = None if result is None else result.usage
        self.deployment_attempts.append(
            DeploymentAttempt(
                deployment=core.deployment.name,
                group=self.route.name,
                model=(result.model if result is not None and result.model else state.model),
                status=state.status if status is None else status,
                kind=kind,
                latency_ms=(time.monotonic() - self._attempt_started) * 1000,
                usage=usage,
                cost_usd=cost,
                cost_estimated=spend.estimated,
                continued=bool(self.prefix),
            )
        )
        self._histories.append(list(state.attempts))

    def _total(self, result: ChatResult) -> None:
        costs = [a.cost_usd for a in self.deployment_attempts if a.cost_usd is not None]
        if costs:
            result.cost_usd = sum(costs)
            result.cost_estimated = any(a.cost_estimated for a in self.deployment_attempts)

    def _partial(self, partial: ChatResult | None) -> ChatResult:
        text = "".join(self.text)
        if partial is None:
            partial = ChatResult(self.request.request_id)
        if self.prefix or partial.text != text:
            partial.text = text
        return partial

    def _final(self, error: InferenceError) -> InferenceError:
        """``error`` as the caller gets it: every deployment's part attached."""
        error.deployment_attempts = list(self.deployment_attempts)
        error.attempts = [a for item in self._histories for a in item] or error.attempts
        if self.delivered and (error.partial is None or self.prefix):
            error.partial = self._partial(error.partial)
        if error.partial is not None:
            costs = [a.cost_usd for a in self.deployment_attempts if a.cost_usd is not None]
            if costs:
                error.partial.cost_usd = sum(costs)
        self._finished(None, error)
        return error

    def _finished(self, result: ChatResult | None, error: InferenceError | None) -> None:
        hooks = self.router.hooks
        if hooks is not None:
            group = self.visited[0]
            hooks.route_finished(group, list(self.deployment_attempts), result, error)


def _interrupted(error: InferenceError, partial: ChatResult) -> InferenceError:
    if isinstance(error, StreamInterrupted):
        error.partial = partial
        return error
    interrupted = StreamInterrupted(
        f"the stream broke after output reached the caller ({error.kind}: {error.message})",
        status=error.status,
        request_id=error.request_id,
        partial=partial,
    )
    interrupted.__cause__ = error
    return interrupted


def strategies_of(found: Sequence[Mapping[str, StrategyFactory]]) -> dict[str, StrategyFactory]:
    """Merge what the ``rakka_routing_strategy`` hook returned; a name twice is an error."""
    merged: dict[str, StrategyFactory] = {}
    for item in found:
        for name, factory in item.items():
            if name in merged or name in BUILTIN_STRATEGIES:
                from rakka_runtime.errors import ConfigError

                raise ConfigError("strategy", f"strategy {name!r} is registered twice")
            merged[name] = factory
    return merged
