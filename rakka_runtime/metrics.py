"""Built-in plugin ``metrics``: live request, token, cost and health metrics.

A middleware at the very outside of the chain (outer stage, order 0) sees each logical
request once, whatever happens inside: a budget refusal, retries, a stream the caller
abandons. When the request ends it records the outcome, attempts, tokens and cost (from
``state.spend``: failed attempts that consumed tokens count too), latency, time to first
token and the rate-limit remaining counts the provider's codec read. Event hooks add what
happens outside a request: breaker transitions and session swaps.

Values live in an in-process :class:`~rakka_runtime.metrics_store.MetricsStore`
(:func:`metrics_snapshot`); :func:`serve_metrics` exposes the same values to Prometheus
on their own ``CollectorRegistry``. ``prometheus_client`` is optional (the ``metrics``
extra) and imported only by :func:`serve_metrics`.

Labels are bounded: ``deployment`` (names from config), ``model`` (the configured or
requested model, at most :data:`MAX_MODELS_PER_DEPLOYMENT` distinct values per
deployment, then ``other``), ``outcome`` (``ok``, an error kind, ``cancelled``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from rakka_runtime.errors import ERROR_KINDS, InferenceError
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.metrics_store import BoundedLabels, Cell, Histogram, MetricsStore

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig
    from rakka_runtime.core.policy import Outcome, Policy
    from rakka_runtime.core.state import CallState
    from rakka_runtime.plugins import PluginHooks
    from rakka_runtime.session import SessionSnapshot
    from rakka_runtime.types import ChatResult, DeploymentAttempt

__all__ = [
    "MAX_MODELS_PER_DEPLOYMENT",
    "MetricsPlugin",
    "MetricsRecorder",
    "MetricsServer",
    "MetricsUnavailable",
    "metrics_snapshot",
    "plugin",
    "serve_metrics",
]

MAX_MODELS_PER_DEPLOYMENT = 16
BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_OUTCOMES = frozenset(ERROR_KINDS) | {"ok", "cancelled", InferenceError.kind}
_REMAINING = {
    "requests": "rakka_ratelimit_remaining_requests",
    "tokens": "rakka_ratelimit_remaining_tokens",
}


_OTHER = BoundedLabels.OTHER


def outcome_label(kind: str) -> str:
    """An error kind as a label value; a kind no built-in class declares becomes ``other``."""
    return kind if kind in _OUTCOMES else BoundedLabels.OTHER


class _DeploymentLabels:
    """The label values of one deployment's series, and their cells in the store."""

    def __init__(self, deployment: DeploymentConfig, store: MetricsStore) -> None:
        self.name = deployment.name
        self.base_model = deployment.base_model
        self.model = deployment.model
        self.store = store
        self.models = BoundedLabels(MAX_MODELS_PER_DEPLOYMENT, {deployment.priced_model})
        self._series: dict[str, _ModelSeries] = {}
        self.in_flight: Cell | None = None  # rakka_requests_in_flight, once a request started
        self.remaining: dict[str, Cell] = {}  # rate-limit dimension -> its gauge's cell

    def model_of(self, requested: str | None) -> str:
        # The priced model: Azure's base_model, else the model the caller asked for (never
        # the server's answer, whose spelling the runtime does not control).
        return self.models(self.base_model or requested or self.model)

    def series(self, requested: str | None) -> _ModelSeries:
        """``requested``'s series, made once per (bounded) model."""
        model = self.model_of(requested)
        series = self._series.get(model)
        if series is None:
            series = self._series[model] = _ModelSeries(self, model)
        return series


_TOKEN_KINDS = ("input", "output", "cached", "reasoning")


class _ModelSeries:
    """One (deployment, model)'s cells, found once and kept: a request's metrics then
    look nothing up by name and allocate nothing (at thousands of requests a second the
    allocations are a cost of their own, through the garbage collector). A cell is made
    on its series' first update, so a snapshot lists only what happened; the cells are
    found and changed with the store's lock held."""

    __slots__ = (
        "_attempts",
        "_cost",
        "_cost_estimated",
        "_cost_unknown",
        "_duration",
        "_requests",
        "_tokens",
        "_ttft",
        "deployment",
        "key",
    )

    def __init__(self, deployment: _DeploymentLabels, model: str) -> None:
        self.deployment = deployment
        self.key = (deployment.name, model)
        self._requests: dict[str, Cell] = {}  # outcome label -> cell (a bounded set)
        self._attempts: dict[str, Cell] = {}
        self._tokens: tuple[Cell, ...] | None = None
        self._cost: Cell | None = None
        self._cost_unknown: Cell | None = None
        self._cost_estimated: Cell | None = None
        self._duration: Histogram | None = None
        self._ttft: Histogram | None = None

    def record_locked(self, state: CallState, outcome: str, ended: float) -> None:
        """One finished request (``outcome``: its label) into the cells; the caller holds
        the store's lock."""
        store = self.deployment.store
        key = self.key
        in_flight = self.deployment.in_flight
        if in_flight is not None:
            in_flight.value -= 1
        _count(store, self._requests, "rakka_requests_total", key, outcome)
        for attempt in state.attempts:
            kind = attempt.kind
            _count(
                store,
                self._attempts,
                "rakka_attempts_total",
                key,
                kind if kind in _OUTCOMES else _OTHER,
            )
        spend = state.spend
        if spend.charged:
            tokens = self._tokens
            if tokens is None:
                tokens = self._tokens = tuple(
                    store.cell_locked("rakka_tokens_total", (*key, kind)) for kind in _TOKEN_KINDS
                )
            usage = spend.usage
            tokens[0].value += usage.input_tokens
            tokens[1].value += usage.output_tokens
            tokens[2].value += usage.cached_tokens
            tokens[3].value += usage.reasoning_tokens
            if spend.unknown:
                if self._cost_unknown is None:
                    self._cost_unknown = store.cell_locked("rakka_cost_unknown_requests_total", key)
                self._cost_unknown.value += 1
            else:
                if self._cost is None:
                    self._cost = store.cell_locked("rakka_cost_usd_total", key)
                self._cost.value += spend.usd
            if spend.estimated:  # some attempt's tokens were estimated (usage not reported)
                if self._cost_estimated is None:
                    self._cost_estimated = store.cell_locked(
                        "rakka_cost_estimated_requests_total", key
                    )
                self._cost_estimated.value += 1
        if self._duration is None:
            self._duration = store.histogram_locked("rakka_request_duration_seconds", key)
        self._duration.observe(ended - state.started_at)
        if state.first_chunk_at is not None:
            if self._ttft is None:
                self._ttft = store.histogram_locked("rakka_time_to_first_token_seconds", key)
            self._ttft.observe(state.first_chunk_at - state.started_at)
        # What the provider's codec read from the last response's rate-limit headers
        # (already parsed once for the rate limiter; any provider's header names).
        for dimension, remaining, _limit, _reset in state.rate_limit_feedback:
            gauges = self.deployment.remaining
            cell = gauges.get(dimension)
            if cell is None:
                name = _REMAINING.get(dimension)
                if name is None:
                    continue
                cell = gauges[dimension] = store.cell_locked(name, (self.deployment.name,))
            cell.value = float(remaining)


def _count(
    store: MetricsStore, cells: dict[str, Cell], name: str, key: tuple[str, str], label: str
) -> None:
    """Add one to the ``(*key, label)`` series of ``name`` (the store's lock held)."""
    cell = cells.get(label)
    if cell is None:
        cell = cells[label] = store.cell_locked(name, (*key, label))
    cell.value += 1


class MetricsRecorder:
    """The metrics policy of one deployment (a :class:`~rakka_runtime.core.policy.Policy`)."""

    name = "metrics"
    scope: Literal["request", "attempt"] = "request"
    order = 0

    def __init__(self, store: MetricsStore, labels: _DeploymentLabels) -> None:
        self.store = store
        self.labels = labels
        # The requested model -> its series (the label a model gets never changes).
        self._series: dict[str, _ModelSeries] = {}

    def enter(self, state: CallState) -> None:
        labels = self.labels
        with self.store.lock:
            in_flight = labels.in_flight
            if in_flight is None:
                in_flight = labels.in_flight = self.store.cell_locked(
                    "rakka_requests_in_flight", (labels.name,)
                )
            in_flight.value += 1

    def leave(self, state: CallState, ticket: None, outcome: Outcome) -> None:
        error = outcome.error
        if error is None and not outcome.abandoned:
            label = "ok"
        elif isinstance(error, InferenceError):
            label = outcome_label(error.kind)
        else:
            label = "cancelled"  # the caller closed the stream before it ended
        series = self._series.get(state.model)
        if series is None:
            series = self.labels.series(state.model)
            if len(self._series) < MAX_MODELS_PER_DEPLOYMENT:
                self._series[state.model] = series
        ended = time.monotonic()
        with self.store.lock:  # one acquisition per request, however many series change
            series.record_locked(state, label, ended)  # also ends the in-flight count


class MetricsPlugin:
    """The plugin object: a middleware per deployment plus the event hooks, one store."""

    def __init__(self, store: MetricsStore | None = None) -> None:
        self.store = store if store is not None else MetricsStore()
        self._labels: dict[str, _DeploymentLabels] = {}

    @hookimpl
    def rakka_request_policy(
        self, deployment: DeploymentConfig, hooks: PluginHooks
    ) -> Policy | None:
        labels = self._labels.get(deployment.name)
        if labels is None or (labels.model, labels.base_model) != (
            deployment.model,
            deployment.base_model,
        ):
            labels = self._labels[deployment.name] = _DeploymentLabels(deployment, self.store)
        return MetricsRecorder(self.store, labels)

    @hookimpl
    def rakka_breaker_state_changed(
        self, deployment: str, old_state: str, new_state: str, retry_at: float | None
    ) -> None:
        state = BREAKER_STATES.get(new_state)
        if state is not None:
            self.store.set("rakka_circuit_breaker_state", (deployment,), state)

    @hookimpl
    def rakka_session_swapped(
        self, deployment: str, old: SessionSnapshot, new: SessionSnapshot
    ) -> None:
        self.store.inc("rakka_session_swaps_total", (deployment,))

    @hookimpl
    def rakka_route_finished(
        self,
        group: str,
        attempts: Sequence[DeploymentAttempt],
        result: ChatResult | None,
        error: InferenceError | None,
    ) -> None:
        for attempt in attempts:
            outcome = outcome_label(attempt.kind)
            key = (attempt.group or group, attempt.deployment, outcome)
            self.store.inc("rakka_routed_attempts_total", key)
        last = attempts[-1].deployment if attempts else "none"
        outcome = "ok" if error is None else outcome_label(error.kind)
        self.store.inc("rakka_routed_requests_total", (group, last, outcome))


plugin = MetricsPlugin()


# The module is the registered plugin (as the policies are): these delegate to `plugin`.
def metrics_snapshot(store: MetricsStore | None = None) -> dict[str, dict[str, Any]]:
    """Every metric of the process as plain numbers (see :meth:`MetricsStore.snapshot`).

    ``snapshot["rakka_requests_total"]['deployment="local",model="gpt-4o-mini",outcome="ok"']``
    is a float; a histogram's value is ``{"count", "sum", "buckets": {le: cumulative}}``.
    """
    return (store or plugin.store).snapshot()


# --- Prometheus exposition (optional) ---------------------------------------------------


class MetricsUnavailable(RuntimeError):
    """``serve_metrics`` needs prometheus_client, which is not installed."""


class MetricsServer:
    """A running ``/metrics`` endpoint; :meth:`stop` shuts it down and frees the port."""

    def __init__(self, server: Any, thread: Any) -> None:
        self._server = server
        self._thread = thread
        self.host: str = server.server_address[0]
        self.port: int = server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_metrics(
    port: int = 0, host: str = "127.0.0.1", *, store: MetricsStore | None = None
) -> MetricsServer:
    """Serve the metrics at ``http://host:port/metrics`` from a daemon thread.

    ``port=0`` picks a free port (read it from the returned handle). Loopback by default:
    exposing metrics beyond the host is a deliberate choice (``host="0.0.0.0"``).

    :raises MetricsUnavailable: prometheus_client is not installed.
    """
    prometheus = _prometheus()
    registry = prometheus.CollectorRegistry(auto_describe=False)
    registry.register(_Collector(store or plugin.store))
    server, thread = prometheus.start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)


def _prometheus() -> ModuleType:
    try:
        import prometheus_client
    except ImportError:
        raise MetricsUnavailable(
            "serving metrics needs prometheus_client: pip install 'rakka-runtime[metrics]' "
            "(metrics_snapshot() works without it)"
        ) from None
    return prometheus_client


class _Collector:
    """Renders the store at scrape time (a prometheus_client custom collector)."""

    def __init__(self, store: MetricsStore) -> None:
        self._store = store

    def describe(self) -> list[Any]:
        return []  # no name-clash checks needed on a registry of our own

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        for spec, series in self._store.series():
            labels = list(spec.labels)
            family: Any
            if spec.kind == "counter":
                family = CounterMetricFamily(spec.name, spec.help, labels=labels)
                for values, value in series:
                    family.add_metric(list(values), value)
            elif spec.kind == "gauge":
                family = GaugeMetricFamily(spec.name, spec.help, labels=labels)
                for values, value in series:
                    family.add_metric(list(values), value)
            else:
                family = HistogramMetricFamily(spec.name, spec.help, labels=labels)
                for values, value in series:
                    family.add_metric(
                        list(values), list(value["buckets"].items()), sum_value=value["sum"]
                    )
            yield family
