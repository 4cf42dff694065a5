"""What a request does, the same on both drivers: results, error kinds, retries, the
breaker, rate-limit waits, cost. Each test runs once per driver (``client_at``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from driver_clients import Client

from rakka_provider_openai.emulator import Emulator
from rakka_runtime import hookimpl
from rakka_runtime.errors import CircuitOpen, InferenceError
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.types import ChatResult
from rakka_testing import EMULATOR_KEY

Make = Callable[..., Client]
NO_RETRY = "deployment.retry.enabled=false"
FAST_RETRY = ("deployment.retry.initial_backoff=10ms", "deployment.retry.jitter=none")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(keys=[EMULATOR_KEY]) as emu:
        yield emu


def fault(spec: str) -> dict[str, str]:
    return {"x-emulator-fault": spec}


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
def test_a_request_gives_the_same_result_shape(
    client_at: Make, emulator: Emulator, stream: bool
) -> None:
    client = client_at(emulator.url)
    result, deltas = client.run("hello there", stream=stream, max_tokens=12)
    assert result.text and result.finish_reason in ("stop", "length")
    assert result.usage is not None and result.usage.output_tokens > 0
    assert result.cost_usd is not None and result.cost_usd > 0
    assert result.attempts == 1 and [a.kind for a in result.attempt_history] == ["ok"]
    assert result.provider_request_id and result.latency_ms is not None
    if stream:
        assert "".join(deltas) == result.text and result.ttft_ms is not None
    else:
        assert deltas == []


def test_a_request_can_run_again(client_at: Make, emulator: Emulator) -> None:
    client = client_at(emulator.url)
    request = client.runtime.request("again", stream=False, deadline=5)
    assert client.runtime.execute(request).result().text
    assert request.deadline is None and request.timeout == 5  # the caller's value is untouched
    assert client.runtime.execute(request).result().text


@pytest.mark.parametrize(
    ("spec", "kind", "status"),
    [
        ("rate_limit;retry_after=1", "rate_limited", 429),
        ("insufficient_quota", "quota_exceeded", 429),
        ("server_error;status=503", "server_error", 503),
        ("http_error;status=400", "bad_request", 400),
        ("http_error;status=404", "not_found", 404),
        ("context_length", "context_length_exceeded", 400),
        ("content_filter", "content_filtered", 400),
        ("content_filter_finish", "content_filtered", None),
    ],
)
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
def test_error_kinds(
    client_at: Make, emulator: Emulator, spec: str, kind: str, status: int | None, stream: bool
) -> None:
    client = client_at(emulator.url, NO_RETRY)
    error = client.failure(stream=stream, extra_headers=fault(spec))
    assert error.kind == kind
    if status is not None:
        assert error.status == status
    assert [a.kind for a in error.attempts] == [kind]
    if kind == "rate_limited":
        assert error.retry_after == 1.0


def test_a_wrong_key_is_unauthorized(
    client_at: Make, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_at(emulator.url, NO_RETRY)
    monkeypatch.setenv("RAKKA_TEST_KEY", "sk-wrong")
    client.runtime.session.refresh()  # type: ignore[union-attr]
    error = client.failure(stream=False)
    assert error.kind == "unauthorized" and error.status == 401
    assert "sk-wrong" not in str(error)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
def test_transient_failures_are_retried_then_succeed(
    client_at: Make, emulator: Emulator, stream: bool
) -> None:
    client = client_at(emulator.url, *FAST_RETRY)
    headers = fault(f"server_error;status=502;times=2;id=retry-{client.driver}-{stream}")
    result, _ = client.run(stream=stream, extra_headers=headers)
    assert [a.kind for a in result.attempt_history] == ["server_error", "server_error", "ok"]
    assert result.attempt_history[0].wait == pytest.approx(0.01)
    assert result.attempt_history[1].wait == pytest.approx(0.02)


def test_a_cut_stream_after_output_is_not_retried(client_at: Make, emulator: Emulator) -> None:
    client = client_at(emulator.url, *FAST_RETRY)
    error = client.failure(max_tokens=30, extra_headers=fault("cut;after=3"))
    assert error.kind == "stream_interrupted"
    assert error.partial is not None and error.partial.text
    assert len(error.attempts) == 1


def test_the_breaker_opens_after_consecutive_failures(client_at: Make, emulator: Emulator) -> None:
    client = client_at(
        emulator.url,
        NO_RETRY,
        "deployment.circuit_breaker.failure_threshold=2",
        "deployment.circuit_breaker.open_duration=30s",
    )
    for _ in range(2):
        assert client.failure(extra_headers=fault("server_error")).kind == "server_error"
    before = emulator.stats.requests
    error = client.failure()
    assert isinstance(error, CircuitOpen)
    assert emulator.stats.requests == before  # refused without touching the network


def test_a_concurrency_limit_queues_instead_of_failing(client_at: Make, emulator: Emulator) -> None:
    client = client_at(emulator.url, "deployment.rate_limits.concurrent_requests=2")
    outcomes = client.run_many(6, max_tokens=5, extra_headers=fault("drip;delay_ms=20"))
    assert len(outcomes) == 6
    assert all(isinstance(o, ChatResult) for o in outcomes), outcomes
    assert emulator.stats.requests == 6


def test_rate_limit_feedback_reaches_the_rate_limiter(client_at: Make, emulator: Emulator) -> None:
    client = client_at(emulator.url)
    client.run(stream=False)
    gate = next(p for p in client.runtime.core.policies if p.name == "rate_limits")
    levels = gate.admission.levels()  # type: ignore[attr-defined]
    # The emulator states its limits in x-ratelimit-* headers: both dimensions were learned.
    assert set(levels) == {"requests", "tokens"}


def test_usage_is_billed_at_the_deployment_price(client_at: Make, emulator: Emulator) -> None:
    client = client_at(emulator.url)
    usage = {"x-emulator-usage": json.dumps({"prompt_tokens": 1000})}
    result, _ = client.run(stream=False, max_tokens=10, extra_headers=usage)
    assert result.usage is not None and result.usage.input_tokens == 1000
    out = result.usage.output_tokens
    assert result.cost_usd == pytest.approx((1000 * 0.15 + out * 0.60) / 1e6)


def test_errors_never_carry_the_key(client_at: Make, emulator: Emulator) -> None:
    client = client_at(emulator.url, NO_RETRY)
    for spec in ("server_error", "http_error;status=400", "malformed"):
        error = client.failure(stream=False, extra_headers=fault(spec))
        assert isinstance(error, InferenceError)
        assert EMULATOR_KEY not in repr(error) and EMULATOR_KEY not in str(error.to_dict())


def test_a_codec_bug_is_a_plugin_error_keeping_its_cause(
    client_at: Make, emulator: Emulator
) -> None:
    client = client_at(emulator.url, "deployment.retry.initial_backoff=10ms")
    codec = client.runtime.core.codec

    def broken(*args: object) -> object:
        raise TypeError("a bug in the provider")

    codec.decode_body = broken  # type: ignore[method-assign]
    error = client.failure(stream=False)
    assert error.kind == "plugin_error" and not error.is_retryable
    assert isinstance(error.__cause__, TypeError)
    assert len(error.attempts) == 1  # a bug is not retried


def test_a_policy_bug_is_a_plugin_error(client_at: Make, emulator: Emulator) -> None:
    client = client_at(emulator.url)
    gate = next(p for p in client.runtime.core.policies if p.name == "rate_limits")

    def broken(state: object) -> object:
        raise KeyError("a bug in a policy")

    gate.enter = broken  # type: ignore[method-assign]
    error = client.failure()
    assert error.kind == "plugin_error" and isinstance(error.__cause__, KeyError)
    assert emulator.stats.requests == 0


class _Finished:
    """A third-party plugin listening to ``rakka_request_finished``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, Any, Any]] = []

    @hookimpl
    def rakka_request_finished(
        self, deployment: str, request: Any, result: Any, error: Any
    ) -> None:
        self.events.append((deployment, request, result, error))


def test_a_plugin_hears_every_finished_request_once(client_at: Make, emulator: Emulator) -> None:
    # No built-in plugin implements the event (the runtime skips the call then): a plugin
    # that does still hears each request once, with its result or its final error.
    listener = _Finished()
    hooks = PluginHooks(make_plugin_manager(extra_plugins=[("listener", listener)]))
    client = client_at(emulator.url, NO_RETRY, hooks=hooks)
    result, _ = client.run("hello", stream=False)
    error = client.failure("hello", stream=False, extra_headers=fault("server_error"))
    assert [(e[0], e[2], e[3]) for e in listener.events] == [
        ("openai", result, None),
        ("openai", None, error),
    ]
    assert listener.events[0][1].messages == [{"role": "user", "content": "hello"}]
