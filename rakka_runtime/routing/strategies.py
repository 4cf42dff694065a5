"""Strategies: which of the healthy deployments not yet tried gets the request.

A strategy is a decision over :class:`~rakka_runtime.routing.health.Candidate` values
(never I/O): ``choose(candidates)`` returns an index into them, in the group's order. A
plugin adds one through the ``rakka_routing_strategy`` hook.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from rakka_runtime.routing.health import Candidate

__all__ = [
    "BUILTIN_STRATEGIES",
    "LeastInFlight",
    "LowestLatency",
    "MostHeadroom",
    "Ordered",
    "Strategy",
    "StrategyFactory",
    "Weighted",
]


class Strategy(Protocol):
    def choose(self, candidates: Sequence[Candidate]) -> int:
        """The index of the candidate to try (``candidates`` is never empty)."""
        ...


StrategyFactory = Callable[[], Strategy]
"""Makes one strategy object per model group (a strategy may keep state, as weighted)."""


class Ordered:
    """Priority order: the first healthy one; the next only on failure."""

    def choose(self, candidates: Sequence[Candidate]) -> int:
        return 0


class Weighted:
    """Smooth weighted round robin (nginx's): over any run of requests the split follows
    the weights exactly, interleaved, and deterministically; an unhealthy deployment is
    left out of the round while it is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[str, float] = {}

    def choose(self, candidates: Sequence[Candidate]) -> int:
        with self._lock:
            total = 0.0
            best, best_score = 0, float("-inf")
            for index, item in enumerate(candidates):
                score = self._current.get(item.name, 0.0) + item.weight
                self._current[item.name] = score
                total += item.weight
                if score > best_score:
                    best, best_score = index, score
            self._current[candidates[best].name] = best_score - total
            return best


class LeastInFlight:
    """The one with the fewest routed requests in flight (first in order on a tie)."""

    def choose(self, candidates: Sequence[Candidate]) -> int:
        return min(range(len(candidates)), key=lambda i: candidates[i].in_flight)


class LowestLatency:
    """The lowest moving average of time to first token (latency where there is none);
    a deployment never measured goes first, so every one gets measured."""

    def choose(self, candidates: Sequence[Candidate]) -> int:
        def score(index: int) -> float:
            item = candidates[index]
            value = item.ttft_ms if item.ttft_ms is not None else item.latency_ms
            return -1.0 if value is None else value

        return min(range(len(candidates)), key=score)


class MostHeadroom:
    """The most rate-limit headroom left (configured limits, or those the provider's
    ``x-ratelimit-*`` headers taught); fewer in flight on a tie."""

    def choose(self, candidates: Sequence[Candidate]) -> int:
        return max(
            range(len(candidates)),
            key=lambda i: (candidates[i].headroom, -candidates[i].in_flight),
        )


BUILTIN_STRATEGIES: dict[str, StrategyFactory] = {
    "ordered": Ordered,
    "weighted": Weighted,
    "least_in_flight": LeastInFlight,
    "lowest_latency": LowestLatency,
    "most_headroom": MostHeadroom,
}
