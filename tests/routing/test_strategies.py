"""Routing decisions tested directly (no I/O): strategies, health, the fallback table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from driver_clients import Client

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.config.schema import ModelGroup
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.routing.fallbacks import FallbackTable
from rakka_runtime.routing.health import Candidate, Tracker
from rakka_runtime.routing.strategies import (
    LeastInFlight,
    LowestLatency,
    MostHeadroom,
    Ordered,
    Weighted,
)
from rakka_testing import EMULATOR_KEY


def _split(strategy: Weighted, candidates: Sequence[Candidate], count: int) -> Counter[str]:
    return Counter(candidates[strategy.choose(candidates)].name for _ in range(count))


def test_weighted_three_to_one_over_4000_requests() -> None:
    candidates = [Candidate("a", weight=3), Candidate("b", weight=1)]
    split = _split(Weighted(), candidates, 4000)
    share = split["a"] / 4000
    assert abs(share - 0.75) <= 0.03, split
    assert split == {"a": 3000, "b": 1000}  # smooth weighted round robin is exact


def test_weighted_interleaves_and_skips_the_unhealthy() -> None:
    strategy = Weighted()
    both = [Candidate("a", weight=3), Candidate("b", weight=1)]
    assert [both[strategy.choose(both)].name for _ in range(4)].count("b") == 1
    only_b = [Candidate("b", weight=1)]
    assert _split(strategy, only_b, 10) == {"b": 10}
    assert _split(strategy, both, 400) == {"a": 300, "b": 100}


def test_the_other_strategies() -> None:
    items = [
        Candidate("a", in_flight=3, latency_ms=50, ttft_ms=40, headroom=0.2),
        Candidate("b", in_flight=1, latency_ms=90, ttft_ms=10, headroom=0.9),
        Candidate("c", in_flight=1, latency_ms=None, ttft_ms=None, headroom=0.9),
    ]
    assert Ordered().choose(items) == 0
    assert LeastInFlight().choose(items) == 1  # first of the tie
    assert LowestLatency().choose(items) == 2  # never measured: measured first
    assert LowestLatency().choose(items[:2]) == 1  # ttft wins over latency
    assert MostHeadroom().choose(items) == 1


def test_moving_averages() -> None:
    tracker = Tracker()
    tracker.observe(100.0, 200.0)
    tracker.observe(200.0, None)
    assert tracker.ttft_ms == 120.0 and tracker.latency_ms == 200.0
    tracker.started()
    tracker.started()
    tracker.ended()
    assert tracker.in_flight == 1


def test_fallback_table_defaults_and_overrides() -> None:
    table = FallbackTable.for_group(ModelGroup(deployments=["a"]))
    for kind in (
        "rate_limited",
        "server_error",
        "timeout",
        "network",
        "circuit_open",
        "backpressure",
        "quota_exceeded",
    ):
        assert table.action(kind) == "next"
    for kind in ("bad_request", "unauthorized", "forbidden", "not_found"):
        assert table.action(kind) == "stop"
    assert table.action("context_length_exceeded") == "stop"
    assert table.action("content_filtered") == "stop"
    group = ModelGroup(
        deployments=["a"],
        context_fallback="long",
        content_filter_fallback="lenient",
        fallbacks={"timeout": "stop", "cancelled": "next"},
    )
    table = FallbackTable.for_group(group)
    assert table.action("context_length_exceeded") == "long"
    assert table.action("content_filtered") == "lenient"
    assert table.action("timeout") == "stop"
    assert table.action("cancelled") == "stop"  # never routed on


class _Last:
    """A plugin strategy: always the last candidate."""

    def choose(self, candidates: Sequence[Candidate]) -> int:
        return len(candidates) - 1


class _Plugin:
    @hookimpl
    def rakka_routing_strategy(self) -> dict[str, Callable[[], _Last]]:
        return {"last": _Last}


def test_a_plugin_registers_a_strategy(routed_at: Callable[..., Client]) -> None:
    hooks = PluginHooks(make_plugin_manager(extra_plugins=[("last-strategy", _Plugin())]))
    with Emulator(keys=[EMULATOR_KEY]) as a, Emulator(keys=[EMULATOR_KEY]) as b:
        client = routed_at(
            {"a": a.url, "b": b.url},
            {"g": {"deployments": ["a", "b"], "strategy": "last"}},
            hooks=hooks,
        )
        result, _ = client.run(model="g")
        assert result.deployment == "b"
