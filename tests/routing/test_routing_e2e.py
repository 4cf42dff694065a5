"""Routed requests end to end, on both drivers, over real emulators on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from driver_clients import AsyncClient, Client

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.errors import InferenceError
from rakka_runtime.types import ChatResult
from rakka_testing import EMULATOR_KEY

Routed = Callable[..., Client]


def _emulator(*rules: dict[str, object], **kw: object) -> Emulator:
    return Emulator(keys=[EMULATOR_KEY], scenario=list(rules) or None, **kw)  # type: ignore[arg-type]


@pytest.fixture
def pair() -> Iterator[tuple[Emulator, Emulator]]:
    with _emulator() as a, _emulator() as b:
        yield a, b


def _ok(outcome: ChatResult | InferenceError) -> ChatResult:
    assert isinstance(outcome, ChatResult), outcome
    return outcome


def test_group_and_deployment_addressing(
    routed_at: Routed, pair: tuple[Emulator, Emulator]
) -> None:
    a, b = pair
    client = routed_at({"a": a.url, "b": b.url}, {"gpt-4o": {"deployments": ["a", "b"]}})
    result, deltas = client.run(model="gpt-4o")
    assert result.deployment == "a"
    assert "".join(deltas) == result.text
    assert [x.deployment for x in result.deployment_attempts] == ["a"]
    result, _ = client.run(model="b", stream=False)
    assert result.deployment == "b"
    # No model: the first group.
    result, _ = client.run()
    assert result.deployment == "a"
    assert client.failure(model="nope").kind == "invalid_request"
    assert (a.stats.requests, b.stats.requests) == (2, 1)


def test_weighted_split_end_to_end(routed_at: Routed, pair: tuple[Emulator, Emulator]) -> None:
    a, b = pair
    client = routed_at(
        {"a": a.url, "b": b.url},
        {"g": {"deployments": ["a", "b"], "strategy": "weighted", "weights": {"a": 3, "b": 1}}},
    )
    outcomes = [o for _ in range(10) for o in client.run_many(20, model="g", stream=False)]
    served = [_ok(o).deployment for o in outcomes]
    share = served.count("a") / len(served)
    assert abs(share - 0.75) <= 0.03, share
    assert a.stats.requests + b.stats.requests == 200


def test_server_error_falls_over_and_costs_add_up(routed_at: Routed) -> None:
    with _emulator({"fault": "server_error"}) as a, _emulator() as b:
        client = routed_at(
            {"a": a.url, "b": b.url},
            {"g": {"deployments": ["a", "b"]}},
            settings={"a": {"retry": {"max_retries": 1, "initial_backoff": "10ms"}}},
        )
        result, _ = client.run(model="g")
        assert result.deployment == "b"
        tried = [(x.deployment, x.kind, x.status) for x in result.deployment_attempts]
        assert tried == [("a", "server_error", 500), ("b", "ok", 200)]
        # Retries stay inside a deployment: a's two attempts, then b's one.
        assert [x.kind for x in result.attempt_history] == ["server_error", "server_error", "ok"]
        assert a.stats.requests == 2 and b.stats.requests == 1
        costs = [x.cost_usd for x in result.deployment_attempts if x.cost_usd is not None]
        assert result.cost_usd == pytest.approx(sum(costs))
        assert result.deployment_attempts[1].usage == result.usage


def test_bad_request_stops(routed_at: Routed) -> None:
    with _emulator({"fault": "http_error;status=400"}) as a, _emulator() as b:
        client = routed_at({"a": a.url, "b": b.url}, {"g": {"deployments": ["a", "b"]}})
        error = client.failure(model="g")
        assert error.kind == "bad_request"
        assert [x.deployment for x in error.deployment_attempts] == ["a"]
        assert b.stats.requests == 0


def test_context_length_goes_to_the_larger_group(routed_at: Routed) -> None:
    with _emulator({"fault": "context_length"}) as small, _emulator() as large:
        client = routed_at(
            {"small": small.url, "large": large.url},
            {
                "gpt-4o": {"deployments": ["small"], "context_fallback": "gpt-4o-long"},
                "gpt-4o-long": {"deployments": ["large"]},
            },
        )
        result, _ = client.run(model="gpt-4o")
        assert result.deployment == "large"
        assert [(x.group, x.kind) for x in result.deployment_attempts] == [
            ("gpt-4o", "context_length_exceeded"),
            ("gpt-4o-long", "ok"),
        ]
        # Without the fallback group configured, it stops.
        plain = routed_at({"small": small.url}, {"gpt-4o": {"deployments": ["small"]}})
        assert plain.failure(model="gpt-4o").kind == "context_length_exceeded"


def test_open_breaker_is_skipped(routed_at: Routed) -> None:
    with _emulator({"fault": "server_error"}) as a, _emulator() as b:
        client = routed_at(
            {"a": a.url, "b": b.url},
            {"g": {"deployments": ["a", "b"]}},
            settings={"a": {"circuit_breaker": {"failure_threshold": 1, "open_duration": "60s"}}},
        )
        first, _ = client.run(model="g")
        assert [x.deployment for x in first.deployment_attempts] == ["a", "b"]
        for _ in range(5):
            result, _ = client.run(model="g")
            assert [x.deployment for x in result.deployment_attempts] == ["b"]
        assert a.stats.requests == 1
        health = {c.name: c for c in client.runtime.router.health()}
        assert health["a"].breaker == "open" and not health["a"].healthy


def test_a_429_pauses_the_deployment_for_its_retry_after(routed_at: Routed) -> None:
    with _emulator({"fault": "rate_limit;retry_after=2", "requests": [1]}) as a, _emulator() as b:
        client = routed_at(
            {"a": a.url, "b": b.url},
            {"g": {"deployments": ["a", "b"]}},
            settings={"a": {"retry": {"max_retries": 3}}},
        )
        started = time.monotonic()
        first, _ = client.run(model="g", stream=False)
        # Handed to b at once rather than waiting out a's retry-after.
        assert [(x.deployment, x.kind) for x in first.deployment_attempts] == [
            ("a", "rate_limited"),
            ("b", "ok"),
        ]
        assert time.monotonic() - started < 1.5
        during = 0
        while time.monotonic() - started < 1.8:  # bounded by the clock
            result, _ = client.run(model="g", stream=False)
            assert result.deployment == "b"
            during += 1
        assert a.stats.requests == 1 and during > 0
        deadline = time.monotonic() + 5
        while client.runtime.router.health()[0].unavailable_for > 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert time.monotonic() - started >= 1.9
        result, _ = client.run(model="g", stream=False)
        assert result.deployment == "a" and a.stats.requests == 2


def test_failure_before_the_first_chunk_is_transparent(routed_at: Routed) -> None:
    with _emulator({"fault": "reset"}) as a, _emulator() as b:
        client = routed_at({"a": a.url, "b": b.url}, {"g": {"deployments": ["a", "b"]}})
        result, deltas = client.run(model="g")
        assert result.deployment == "b" and "".join(deltas) == result.text
        assert [x.kind for x in result.deployment_attempts] == ["network", "ok"]


def test_one_deadline_spans_the_routed_request(routed_at: Routed) -> None:
    with _emulator({"fault": "stall;seconds=3"}) as a, _emulator({"fault": "stall;seconds=3"}) as b:
        client = routed_at(
            {"a": a.url, "b": b.url},
            {"g": {"deployments": ["a", "b"]}},
            settings={n: {"timeouts": {"request_timeout": "2s"}} for n in "ab"},
        )
        started = time.monotonic()
        error = client.failure(model="g", deadline=1.0)
        assert error.kind == "timeout"
        assert time.monotonic() - started < 1.8
        assert b.stats.requests == 0  # the deadline had passed when a failed


def test_a_deployment_is_tried_once_per_request(routed_at: Routed) -> None:
    with _emulator({"fault": "server_error"}) as a, _emulator({"fault": "server_error"}) as b:
        client = routed_at({"a": a.url, "b": b.url}, {"g": {"deployments": ["a", "b"]}})
        error = client.failure(model="g")
        assert error.kind == "server_error"
        assert [x.deployment for x in error.deployment_attempts] == ["a", "b"]
        assert (a.stats.requests, b.stats.requests) == (1, 1)


def test_metrics_carry_group_and_deployment_labels(routed_at: Routed) -> None:
    from rakka_runtime.metrics import metrics_snapshot

    with _emulator({"fault": "server_error"}) as a, _emulator() as b:
        client = routed_at({"ma": a.url, "mb": b.url}, {"mg": {"deployments": ["ma", "mb"]}})
        before = metrics_snapshot()
        client.run(model="mg")
        after = metrics_snapshot()

    def delta(metric: str, key: str) -> float:
        return float(after[metric].get(key, 0)) - float(before.get(metric, {}).get(key, 0))

    attempts = "rakka_routed_attempts_total"
    assert delta(attempts, 'group="mg",deployment="ma",outcome="server_error"') == 1
    assert delta(attempts, 'group="mg",deployment="mb",outcome="ok"') == 1
    assert delta("rakka_routed_requests_total", 'group="mg",deployment="mb",outcome="ok"') == 1
    assert (
        delta("rakka_requests_total", 'deployment="ma",model="gpt-4o-mini",outcome="server_error"')
        == 1
    )


def test_max_tries_per_deployment_goes_round_the_group(routed_at: Routed) -> None:
    once: dict[str, object] = {"fault": "server_error", "requests": [1]}
    with _emulator(once) as a, _emulator({"fault": "server_error"}) as b:
        client = routed_at(
            {"a": a.url, "b": b.url},
            {"g": {"deployments": ["a", "b"], "max_tries_per_deployment": 2}},
        )
        result, _ = client.run(model="g")
        tried = [(x.deployment, x.kind) for x in result.deployment_attempts]
        assert tried == [("a", "server_error"), ("b", "server_error"), ("a", "ok")]


def test_an_exhausted_quota_is_skipped(routed_at: Routed, pair: tuple[Emulator, Emulator]) -> None:
    a, b = pair
    client = routed_at(
        {"a": a.url, "b": b.url},
        {"g": {"deployments": ["a", "b"]}},
        settings={"a": {"rate_limits": {"requests_per_minute": 2}}},
    )
    served = [client.run(model="g", stream=False)[0].deployment for _ in range(4)]
    assert served == ["a", "a", "b", "b"]
    health = {c.name: c for c in client.runtime.router.health()}
    assert health["a"].why == "requests quota exhausted" and health["a"].headroom < 0.5


def test_cancel_ends_a_routed_request_without_falling_over(routed_at: Routed) -> None:
    with _emulator({"fault": "stall;seconds=5"}) as a, _emulator() as b:
        client = routed_at({"a": a.url, "b": b.url}, {"g": {"deployments": ["a", "b"]}})
        started = client.start(model="g")
        deadline = time.monotonic() + 5
        while a.stats.requests == 0:  # wait until the request is on the wire at a
            assert time.monotonic() < deadline
            time.sleep(0.01)
        began = time.monotonic()
        started.cancel()
        outcome = started.outcome()
        assert isinstance(outcome, InferenceError) and outcome.kind == "cancelled"
        assert time.monotonic() - began < 1.0
        assert b.stats.requests == 0
        assert client.runtime.router.trackers["a"].in_flight == 0


def test_closing_a_routed_stream_early_releases_it(
    routed_at: Routed, pair: tuple[Emulator, Emulator]
) -> None:
    a, b = pair
    client = routed_at({"a": a.url, "b": b.url}, {"g": {"deployments": ["a", "b"]}})
    request = client.runtime.request("hi", model="g", max_tokens=50)
    if isinstance(client, AsyncClient):
        aio = client.aio

        async def first_then_close() -> str:
            handle = aio.execute(request)
            chunk = await handle.__anext__()
            await handle.aclose()
            return chunk.text_delta

        client.call(first_then_close())
    else:
        handle = client.runtime.execute(request)
        next(iter(handle))
        handle.close()
    assert client.runtime.router.trackers["a"].in_flight == 0
    assert (a.stats.requests, b.stats.requests) == (1, 0)
