"""What the router knows about each deployment: read from the deployment's own policy
objects (the breaker, the rate limiter's admission with its 429 pause and the provider's
header feedback), never a second mechanism; plus its load and moving-average latency.

With the Redis backends the breaker state and the pause are the fleet's.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rakka_runtime.core.flow import DeploymentCore

__all__ = ["EWMA_ALPHA", "Candidate", "Probe", "Tracker", "candidate"]

EWMA_ALPHA = 0.2
"""Weight of the newest sample in the moving averages of time to first token and latency."""


class Tracker:
    """One deployment's load and latency as routed requests see them (both drivers)."""

    __slots__ = ("_lock", "in_flight", "latency_ms", "ttft_ms")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.ttft_ms: float | None = None
        self.latency_ms: float | None = None

    def started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def ended(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def observe(self, ttft_ms: float | None, latency_ms: float | None) -> None:
        with self._lock:
            if ttft_ms is not None:
                self.ttft_ms = _ewma(self.ttft_ms, ttft_ms)
            if latency_ms is not None:
                self.latency_ms = _ewma(self.latency_ms, latency_ms)


def _ewma(old: float | None, sample: float) -> float:
    return sample if old is None else old + EWMA_ALPHA * (sample - old)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment as a strategy sees it at decision time."""

    name: str
    weight: float = 1.0
    in_flight: int = 0
    ttft_ms: float | None = None
    latency_ms: float | None = None
    # Lowest fraction of any rate-limit bucket still available (1.0: unlimited or full).
    headroom: float = 1.0
    breaker: str = "closed"
    # Seconds until it may take a request again (an open breaker, a 429 pause); 0: now.
    unavailable_for: float = 0.0
    why: str = ""

    @property
    def healthy(self) -> bool:
        return self.unavailable_for <= 0.0


class Probe:
    """Where one deployment's health is read: its breaker and its rate limiter's
    admission, found once among the deployment's policies."""

    __slots__ = ("admission", "breaker")

    def __init__(self, core: DeploymentCore) -> None:
        self.breaker: Any = None
        self.admission: Any = None
        for policy in core.attempt_policies:
            if policy.name == "circuit_breaker":
                self.breaker = getattr(policy, "breaker", None)
            elif policy.name == "rate_limits":
                admission = getattr(policy, "admission", None)
                if admission is not None and hasattr(admission, "paused_for"):
                    self.admission = admission

    def read(self, name: str, tracker: Tracker, weight: float) -> Candidate:
        """The deployment's health now."""
        breaker_state = "closed"
        unavailable, why = 0.0, ""
        headroom = 1.0
        breaker = self.breaker
        if breaker is not None:
            breaker_state = breaker.state
            if breaker_state == "open":
                retry_at = breaker.retry_at
                left = 0.0 if retry_at is None else retry_at - _now(breaker)
                if left > 0:
                    unavailable, why = left, "circuit open"
        admission = self.admission
        if admission is not None:
            paused = admission.paused_for()
            if paused > unavailable:
                unavailable, why = paused, "paused by a 429"
            headroom, empty_for, dimension = _headroom(admission)
            if empty_for > unavailable:
                unavailable, why = empty_for, f"{dimension} quota exhausted"
        return Candidate(
            name,
            weight,
            tracker.in_flight,
            tracker.ttft_ms,
            tracker.latency_ms,
            headroom,
            breaker_state,
            unavailable,
            why,
        )


def candidate(name: str, core: DeploymentCore, tracker: Tracker, weight: float) -> Candidate:
    """The deployment's health now, from its policies (a :class:`Probe` made for once)."""
    return Probe(core).read(name, tracker, weight)


def _headroom(admission: Any) -> tuple[float, float, str]:
    """The lowest fraction left of any bucket, and (when a bucket cannot admit even one
    unit) how long until it can and which one."""
    capacities: dict[str, float] = _call(admission, "capacities", {})
    if not capacities:
        return 1.0, 0.0, ""
    levels: dict[str, float] = _call(admission, "levels", {})
    lowest, empty_for, dimension = 1.0, 0.0, ""
    for dim, capacity in capacities.items():
        if capacity <= 0:
            continue
        level = levels.get(dim, capacity)
        lowest = min(lowest, max(0.0, min(1.0, level / capacity)))
        if level < 1.0:
            wait = (1.0 - level) / (capacity / 60.0)
            if wait > empty_for:
                empty_for, dimension = wait, dim
    return lowest, empty_for, dimension


def _call(target: Any, method: str, default: Any) -> Any:
    function = getattr(target, method, None)
    return default if function is None else function()


def _now(breaker: Any) -> float:
    clock = getattr(breaker, "_clock", None)
    return time.monotonic() if clock is None else float(clock.monotonic())
