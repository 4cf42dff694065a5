"""Cost through the real runtime and emulator, each expected dollar amount worked by hand.

``x-emulator-usage`` sets the usage the emulator reports (``prompt_tokens``,
``cached_tokens``; ``reasoning_tokens`` are added to ``completion_tokens``), and
``max_tokens`` fixes the visible completion length, so every figure below is known.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest
from click.testing import CliRunner

from rakka_provider_openai.emulator import Emulator
from rakka_runtime import hookimpl
from rakka_runtime.cli import cli
from rakka_runtime.config.schema import DeploymentConfig
from rakka_runtime.core.flow import DEFAULT_MAX_OUTPUT_TOKENS
from rakka_runtime.core.policy import Outcome, Policy, Wait
from rakka_runtime.core.state import CallState
from rakka_runtime.errors import InferenceError, StreamInterrupted
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.policies.ratelimit import reserved_tokens
from rakka_runtime.runtime import Runtime

# The conftest `make_runtime` fixture: builds a Runtime aimed at an emulator.
RuntimeFactory = Callable[..., Runtime]

NO_RETRY = "deployment.retry.enabled=false"


def usage_header(prompt: int, cached: int = 0, reasoning: int = 0) -> dict[str, str]:
    counts = {"prompt_tokens": prompt, "cached_tokens": cached, "reasoning_tokens": reasoning}
    return {"x-emulator-usage": json.dumps(counts)}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_cached_and_reasoning_tokens_by_hand(
    emulator: Emulator, make_runtime: RuntimeFactory, stream: bool
) -> None:
    runtime = make_runtime(emulator, "deployment.model=o4-mini")  # 1.10 / 0.275 / 4.40
    result = runtime.chat(
        "think hard", stream=stream, max_tokens=20, extra_headers=usage_header(2000, 1000, 300)
    )
    usage = result.usage
    assert usage is not None
    assert (usage.input_tokens, usage.cached_tokens) == (2000, 1000)
    assert (usage.output_tokens, usage.reasoning_tokens) == (320, 300)  # 20 visible + 300
    # 1000 uncached * 1.10 + 1000 cached * 0.275 + 320 output * 4.40 = 1100 + 275 + 1408
    assert result.cost_usd == pytest.approx(2783 / 1e6)
    assert result.cost_estimated is False


def test_dated_snapshot_is_priced_by_its_base_row(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(emulator, "deployment.model=gpt-4o-2024-08-06")  # → gpt-4o
    result = runtime.chat("hi", max_tokens=10, extra_headers=usage_header(1000, 200))
    # 800 * 2.50 + 200 * 1.25 + 10 * 10.00
    assert result.cost_usd == pytest.approx((2000 + 250 + 100) / 1e6)


def test_stream_cut_before_usage_is_estimated_and_flagged(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(emulator, NO_RETRY)  # gpt-4o-mini: 0.15 / 0.60
    with pytest.raises(StreamInterrupted) as caught:
        runtime.chat(
            "count to three", stream=True, extra_headers={"x-emulator-fault": "cut;after=3"}
        )
    partial = caught.value.partial
    assert partial is not None and partial.usage is None
    assert len(partial.text.split()) == 2  # the role chunk, then two words, then the cut
    # Input estimated from the message: 3 priming + 4 per message + ceil(14 chars / 4) = 11.
    # Output: ceil(characters received / 4).
    output = math.ceil(len(partial.text) / 4)
    assert partial.cost_usd == pytest.approx((11 * 0.15 + output * 0.60) / 1e6)
    assert partial.cost_estimated is True


class _RetryOnce:
    """A second attempt after any failure (the built-in retry never repeats a filter)."""

    name = "retry-once"
    scope: Literal["request", "attempt"] = "request"
    order = 90

    def enter(self, state: CallState) -> None:
        return None

    def leave(self, state: CallState, ticket: None, outcome: Outcome) -> None:
        return None

    def retry_wait(
        self, state: CallState, error: InferenceError, retries: int, delivered: int
    ) -> Wait:
        if retries:
            raise error
        return Wait(0.0)


class _RetryOncePlugin:
    @hookimpl
    def rakka_request_policy(self, deployment: DeploymentConfig, hooks: PluginHooks) -> Policy:
        return _RetryOnce()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_failed_attempt_that_consumed_tokens_is_added_to_the_spend(
    emulator: Emulator, make_runtime: RuntimeFactory, stream: bool
) -> None:
    hooks = PluginHooks(
        make_plugin_manager(disabled={"retry"}, extra_plugins=[("retry-once", _RetryOncePlugin())])
    )
    runtime = make_runtime(emulator, hooks=hooks)
    headers = {
        **usage_header(1000),
        # Only the first attempt is filtered; it still reports usage, and is billed.
        "x-emulator-fault": f"content_filter_finish;times=1;id=spend-{stream}",
    }
    result = runtime.chat("hello", stream=stream, max_tokens=10, extra_headers=headers)
    assert [a.kind for a in result.attempt_history] == ["content_filtered", "ok"]
    assert result.usage is not None and result.usage.output_tokens == 10
    # Filtered attempt: 1000 * 0.15 + 5 * 0.60 (half the words); then 1000 * 0.15 + 10 * 0.60.
    assert result.cost_usd == pytest.approx((150 + 3 + 150 + 6) / 1e6)
    assert result.cost_estimated is False


def test_azure_base_model_decides_estimate_and_actual_cost(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    # The Azure deployment is named gpt-4o-mini and the emulator answers as gpt-4o-mini,
    # but the deployment says it runs gpt-4o: gpt-4o's price applies throughout.
    runtime = make_runtime(emulator, "deployment.base_model=gpt-4o", azure=True)
    request = runtime.request("abcdefgh", stream=False, model="gpt-4.1", max_tokens=10)
    estimate = runtime.estimate_cost(request)
    # 3 + 4 + ceil(8 / 4) = 9 input tokens at 2.50, 10 output at 10.00
    assert (estimate.input_tokens, estimate.output_tokens_max) == (9, 10)
    assert estimate.usd == pytest.approx((9 * 2.50 + 10 * 10.00) / 1e6)
    request = dataclasses.replace(request, extra_headers=usage_header(1000))
    result = runtime.execute(request).result()
    assert result.model == "gpt-4o-mini"
    assert result.cost_usd == pytest.approx((1000 * 2.50 + 10 * 10.00) / 1e6)


def test_estimate_without_max_tokens_bounds_output_at_the_default(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(emulator)
    estimate = runtime.estimate_cost(runtime.request("abcd"))
    # The one default behind rate-limit reservations, budgets and this estimate.
    assert (estimate.input_tokens, estimate.output_tokens_max) == (8, DEFAULT_MAX_OUTPUT_TOKENS)
    assert estimate.usd == pytest.approx((8 * 0.15 + DEFAULT_MAX_OUTPUT_TOKENS * 0.60) / 1e6)


def test_one_estimate_feeds_cost_and_rate_limits_and_counts_every_choice(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(emulator)
    request = runtime.request("abcd", max_tokens=50, n=3)
    estimate = runtime.estimate_cost(request)
    assert estimate.output_tokens_max == 150
    assert reserved_tokens(request, estimate.input_tokens) == estimate.input_tokens + 150


def test_env_prod_negotiated_rate_prices_a_call(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(emulator, "env=prod", "deployment.timeouts.deadline=null")
    result = runtime.chat("hi", max_tokens=10, extra_headers=usage_header(1000, 500))
    # prod's gpt-4o-mini: 500 * 0.12 + 500 cached * 0.06 + 10 * 0.48
    assert result.cost_usd == pytest.approx((60 + 30 + 4.8) / 1e6)


def test_deployment_pricing_prices_a_call(emulator: Emulator, make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(emulator, "+deployment.pricing={input: 1.0, output: 2.0}")
    result = runtime.chat("hi", max_tokens=10, extra_headers=usage_header(1000, 400))
    # cached_input keeps gpt-4o-mini's 0.075: 600 * 1.0 + 400 * 0.075 + 10 * 2.0
    assert result.cost_usd == pytest.approx((600 + 30 + 20) / 1e6)


def test_model_from_a_litellm_file_prices_a_call(
    emulator: Emulator, make_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    row = {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.2e-05}
    prices.write_text(json.dumps({"acme-large": row}), encoding="utf-8")
    runtime = make_runtime(emulator, f"pricing.sources=['{prices}']", "deployment.model=acme-large")
    result = runtime.chat("hi", max_tokens=10, extra_headers=usage_header(1000))
    assert result.cost_usd == pytest.approx((1000 * 3.0 + 10 * 12.0) / 1e6)


def test_unknown_model_costs_none_never_zero(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(emulator, "deployment.model=acme-finetune")
    result = runtime.chat("hi", max_tokens=5)
    assert result.usage is not None and result.usage.output_tokens == 5
    assert result.cost_usd is None


def test_cli_says_unknown_for_a_model_without_a_price() -> None:
    out = CliRunner().invoke(cli, ["chat", "hello", "deployment.model=acme-finetune"])
    assert out.exit_code == 0, out.stderr
    assert "cost: unknown (no price for acme-finetune)" in out.stderr
    assert "$0.0" not in out.stderr


def test_an_azure_data_zone_deployment_is_billed_at_its_rate(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    # base_model gpt-4o-mini: Global 0.15 / 0.60, Data Zone 0.165 / 0.66 per 1M tokens.
    results = {}
    for kind in ("global", "data_zone"):
        runtime = make_runtime(emulator, f"deployment.variant.deployment_type={kind}", azure=True)
        results[kind] = runtime.chat("price me", stream=False, max_tokens=5)
    for kind, (prompt, completion) in {"global": (0.15, 0.60), "data_zone": (0.165, 0.66)}.items():
        usage = results[kind].usage
        assert usage is not None
        expected = (usage.input_tokens * prompt + usage.output_tokens * completion) / 1e6
        assert results[kind].cost_usd == pytest.approx(expected), kind
    assert results["data_zone"].cost_usd > results["global"].cost_usd  # type: ignore[operator]
