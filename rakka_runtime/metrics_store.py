"""The in-process metric values behind :mod:`rakka_runtime.metrics`: plain numbers.

The store is the single source of truth. ``metrics_snapshot()`` reads it as a dict, and
the optional Prometheus endpoint renders it at scrape time through a collector, so the
runtime needs no ``prometheus_client`` to count, and nothing is counted twice.

Every metric is declared once in :data:`METRICS` with its label names; label *values*
are bounded by the callers (deployment names from config, models through
:class:`BoundedLabels`, outcomes from the error kinds), never request ids or prompts.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "METRICS",
    "BoundedLabels",
    "Cell",
    "Histogram",
    "MetricSpec",
    "MetricsStore",
    "label_key",
]

Kind = Literal["counter", "gauge", "histogram"]

# Seconds. Chat completions run from tens of milliseconds (emulator, cache hits) to minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


def _spec(
    name: str, kind: Kind, labels: str, help: str, buckets: tuple[float, ...] = ()
) -> MetricSpec:
    return MetricSpec(name, kind, help, tuple(labels.split()), buckets)


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        _spec("rakka_requests_total", "counter", "deployment model outcome",
              "Logical requests by outcome: ok, an error kind, or cancelled."),
        _spec("rakka_attempts_total", "counter", "deployment model outcome",
              "Attempts (wire exchanges, and refusals before the wire) by outcome."),
        _spec("rakka_tokens_total", "counter", "deployment model kind",
              "Tokens consumed by kind: input, output, cached (part of input), "
              "reasoning (part of output). Includes failed attempts."),
        _spec("rakka_cost_usd_total", "counter", "deployment model",
              "USD spent, every attempt that consumed tokens included."),
        _spec("rakka_cost_unknown_requests_total", "counter", "deployment model",
              "Requests whose cost is unknown: they used a model without a price."),
        _spec("rakka_cost_estimated_requests_total", "counter", "deployment model",
              "Requests whose reported cost is partly estimated (usage not reported)."),
        _spec("rakka_request_duration_seconds", "histogram", "deployment model",
              "Latency of a logical request, retries included.", LATENCY_BUCKETS),
        _spec("rakka_time_to_first_token_seconds", "histogram", "deployment model",
              "Time to the first streamed chunk.", TTFT_BUCKETS),
        _spec("rakka_requests_in_flight", "gauge", "deployment",
              "Requests started and not yet finished."),
        _spec("rakka_circuit_breaker_state", "gauge", "deployment",
              "Circuit breaker state: 0 closed, 1 half-open, 2 open."),
        _spec("rakka_ratelimit_remaining_requests", "gauge", "deployment",
              "The provider's x-ratelimit-remaining-requests, as last reported."),
        _spec("rakka_ratelimit_remaining_tokens", "gauge", "deployment",
              "The provider's x-ratelimit-remaining-tokens, as last reported."),
        _spec("rakka_session_swaps_total", "counter", "deployment",
              "Session snapshot swaps (key rotations) per deployment."),
        _spec("rakka_routed_requests_total", "counter", "group deployment outcome",
              "Routed requests by the group they named, the deployment that answered "
              "(or was tried last) and outcome."),
        _spec("rakka_routed_attempts_total", "counter", "group deployment outcome",
              "Deployments tried by routed requests, by group, deployment and outcome."),
    )
}  # fmt: skip


@dataclass(slots=True)
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, plus one for +Inf
    sum: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count of observations <= le)`` pairs, ``+Inf`` last (Prometheus' form)."""
        counts = self.counts or [0] * (len(self.buckets) + 1)
        out, running = [], 0
        for bound, count in zip((*map(repr, self.buckets), "+Inf"), counts, strict=True):
            running += count
            out.append((bound, running))
        return out


class Cell:
    """One counter's or gauge's value, changed in place under the store's lock. A caller
    that updates the same series on every request keeps the cell rather than looking it
    up by name and labels each time."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


Series = dict[tuple[str, ...], Any]  # label values -> a Cell, or a Histogram


class MetricsStore:
    """Thread-safe counters, gauges and histograms keyed by label values.

    A series exists from its first update (a snapshot lists only what happened). Hot
    callers hold :attr:`lock` once per request and update the cells they keep
    (:meth:`cell_locked`, :meth:`histogram_locked`); the rest call :meth:`inc`,
    :meth:`set` and :meth:`observe`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._series: dict[str, Series] = {name: {} for name in METRICS}

    def cell_locked(self, name: str, labels: tuple[str, ...]) -> Cell:
        """The cell of a counter's or gauge's series, made on first use; call with
        :attr:`lock` held."""
        series = self._series[name]
        cell = series.get(labels)
        if cell is None:
            cell = series[labels] = Cell()
        return cell

    def histogram_locked(self, name: str, labels: tuple[str, ...]) -> Histogram:
        """A histogram's series, made on first use; call with :attr:`lock` held."""
        series = self._series[name]
        histogram = series.get(labels)
        if histogram is None:
            histogram = series[labels] = Histogram(METRICS[name].buckets)
        return histogram

    def inc(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        with self.lock:
            self.cell_locked(name, labels).value += amount

    def set(self, name: str, labels: tuple[str, ...], value: float) -> None:
        with self.lock:
            self.cell_locked(name, labels).value = float(value)

    def observe(self, name: str, labels: tuple[str, ...], value: float) -> None:
        with self.lock:
            self.histogram_locked(name, labels).observe(value)

    def series(self) -> list[tuple[MetricSpec, list[tuple[tuple[str, ...], Any]]]]:
        """Every metric with a copy of its series (histograms as cumulative buckets)."""
        with self.lock:
            return [
                (METRICS[name], [(labels, _copy(value)) for labels, value in series.items()])
                for name, series in self._series.items()
            ]

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``{metric: {label_key: value}}``; a histogram's value is ``{count, sum, buckets}``."""
        out: dict[str, dict[str, Any]] = {}
        for spec, series in self.series():
            values = {}
            for labels, value in series:
                key = label_key(**dict(zip(spec.labels, labels, strict=True)))
                values[key] = value
            out[spec.name] = values
        return out


def _copy(value: Any) -> Any:
    if isinstance(value, Histogram):
        return {"count": value.count, "sum": value.sum, "buckets": dict(value.cumulative())}
    return value.value


def label_key(**labels: str) -> str:
    """The snapshot key of a series: ``deployment="a",model="b"`` in declaration order."""
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class BoundedLabels:
    """Keeps a label's values to a fixed set: the first ``limit`` distinct values seen
    (plus ``always``) pass, later ones become ``other``. A caller passing free text (a
    model name from a request) cannot grow the number of series without bound."""

    OTHER = "other"

    def __init__(self, limit: int, always: Iterable[str] = ()) -> None:
        self._limit = limit
        self._known = set(always)
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._known or value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return self.OTHER
