"""The price table: lookup, the published rows, overrides, LiteLLM files, the math."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rakka_runtime.config.loader import load_config
from rakka_runtime.config.schema import DeploymentConfig, PricingTable
from rakka_runtime.config.validation import validate
from rakka_runtime.errors import ConfigError
from rakka_runtime.pricing import (
    CostEstimate,
    ModelRates,
    PriceTable,
    Spend,
    cost_from_usage,
    estimate_cost,
    estimate_input_tokens,
    estimate_output_tokens,
    load_litellm_prices,
    price_table_for,
)
from rakka_runtime.types import ChatResult, ToolCall, Usage

# List rates (USD per 1M: input, cached input, output), checked against LiteLLM's price
# file and OpenAI's model pages (sources in conf/pricing/published.yaml).
LIST_RATES = {
    "gpt-3.5-turbo": (0.50, None, 1.50),
    "gpt-4": (30.00, None, 60.00),
    "gpt-4-turbo": (10.00, None, 30.00),
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4o-2024-05-13": (5.00, None, 15.00),
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "o1": (15.00, 7.50, 60.00),
    "o1-preview": (15.00, 7.50, 60.00),
    "o1-mini": (1.10, 0.55, 4.40),
    "gpt-4.1": (2.00, 0.50, 8.00),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1-nano": (0.10, 0.025, 0.40),
    "o3": (2.00, 0.50, 8.00),
    "o3-mini": (1.10, 0.55, 4.40),
    "o4-mini": (1.10, 0.275, 4.40),
    "gpt-5": (1.25, 0.125, 10.00),
    "gpt-5-mini": (0.25, 0.025, 2.00),
    "gpt-5-nano": (0.05, 0.005, 0.40),
    "gpt-5.1": (1.25, 0.125, 10.00),
    "gpt-5.2": (1.75, 0.175, 14.00),
    "gpt-5.4": (2.50, 0.25, 15.00),
    "gpt-5.4-mini": (0.75, 0.075, 4.50),
    "gpt-5.4-nano": (0.20, 0.02, 1.25),
    "gpt-5.5": (5.00, 0.50, 30.00),
}


def test_published_table_has_every_list_rate_and_a_source_per_row() -> None:
    table = PriceTable.published()
    for model, (prompt, cached, completion) in LIST_RATES.items():
        assert table.get(model) == ModelRates(prompt, completion, cached), model
        assert table.source(model) in {"litellm", "openai", "seed"}, model
    assert table.as_of == "2026-12-07"
    # The seed crate's accessor shape: input and output rates of a model.
    rates = table.get("gpt-4o")
    assert rates is not None and (rates.input, rates.output) == (2.50, 10.00)


def test_every_published_row_has_a_source_and_a_date() -> None:
    import yaml

    from rakka_runtime.config.loader import builtin_conf_dir

    raw = yaml.safe_load((builtin_conf_dir() / "pricing" / "published.yaml").read_text())
    pricing = validate(PricingTable, raw["pricing"], prefix="pricing")
    for name, row in pricing.models.items():
        assert row.source, name
        assert row.as_of is not None and str(row.as_of) >= "2024-01-01", name


def test_a_snapshot_with_its_own_price_is_billed_at_it() -> None:
    table = PriceTable.published()
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert table.key("gpt-4o-2024-05-13") == "gpt-4o-2024-05-13"
    assert table.cost("gpt-4o-2024-05-13", usage) == pytest.approx(20.0)
    assert table.key("gpt-4o-2024-08-06") == "gpt-4o"  # priced like its base
    assert table.cost("gpt-4o-2024-11-20", usage) == pytest.approx(12.5)
    assert table.key("gpt-4.1-mini-2025-04-14") == "gpt-4.1-mini"
    assert table.key("gpt-5.4-mini-2026-03-17") == "gpt-5.4-mini"
    assert table.key("gpt-3.5-turbo-0125") == "gpt-3.5-turbo"


def test_published_accessor_agrees_with_the_composed_default_config() -> None:
    composed = price_table_for(load_config().pricing)
    assert composed.models() == PriceTable.published().models()


def test_lookup_is_exact_then_snapshot_base_then_unknown() -> None:
    table = PriceTable({"gpt-4o": ModelRates(2.5, 10), "gpt-4o-2024-05-13": ModelRates(5, 15)})
    assert table.get("gpt-4o-2024-05-13") == ModelRates(5, 15)  # its own row wins
    assert table.get("gpt-4o-2024-08-06") == ModelRates(2.5, 10)  # dated snapshot → base
    assert table.key("gpt-4o-2024-08-06") == "gpt-4o"
    assert table.get("gpt-4-0125") is None  # no base row either
    assert table.get("my-finetune") is None
    assert table.cost("my-finetune", Usage(1000, 1000)) is None  # unknown is None, never $0


def test_cost_from_usage_by_hand() -> None:
    rates = ModelRates(input=2.50, output=10.00, cached_input=1.25)
    usage = Usage(input_tokens=1000, output_tokens=300, cached_tokens=400, reasoning_tokens=200)
    # 600 uncached * 2.50 + 400 cached * 1.25 + 300 output (reasoning inside) * 10.00
    assert cost_from_usage(rates, usage) == pytest.approx((1500 + 500 + 3000) / 1e6)
    # Without a cached rate, cached tokens bill at the input rate.
    assert cost_from_usage(ModelRates(2.0, 8.0), usage) == pytest.approx(
        (1000 * 2.0 + 300 * 8.0) / 1e6
    )


def test_seed_estimate_splits_80_20() -> None:
    estimate = CostEstimate.from_rates(ModelRates(1.0, 2.0), 1000)
    assert (estimate.input_tokens, estimate.output_tokens_max) == (800, 200)
    assert estimate.usd == pytest.approx((800 * 1.0 + 200 * 2.0) / 1e6)


def test_default_estimate_counts_messages_and_bounds_output() -> None:
    messages = [
        {"role": "system", "content": "be brief"},  # 8 chars: 2 tokens
        {"role": "user", "content": "abcdefghijk"},  # 11 chars: 3 tokens
    ]
    assert estimate_input_tokens(messages) == 3 + (4 + 2) + (4 + 3)
    table = PriceTable({"m": ModelRates(1.0, 3.0)})
    estimate = estimate_cost(table, "m", messages, 50)
    assert (estimate.input_tokens, estimate.output_tokens_max) == (16, 50)
    assert estimate.usd == pytest.approx((16 * 1.0 + 50 * 3.0) / 1e6)
    assert estimate_cost(table, "unknown-model", messages, 50).usd is None


def test_output_estimate_is_a_quarter_of_the_characters_received() -> None:
    result = ChatResult("r", text="x" * 9, tool_calls=[ToolCall("c", "fn", '{"a":1}')])
    assert estimate_output_tokens(result) == 5  # ceil((9 + 2 + 7) / 4)
    assert estimate_output_tokens(ChatResult("r")) == 0


def test_spend_sums_attempts_and_an_unknown_part_makes_it_unknown() -> None:
    spend = Spend()
    spend.add(0.25, Usage(10, 5), estimated=False)
    spend.add(0.5, Usage(20, 1), estimated=True)
    assert spend.total == pytest.approx(0.75) and spend.estimated and spend.charged == 2
    assert (spend.usage.input_tokens, spend.usage.output_tokens) == (30, 6)
    spend.add(None, Usage(1, 1), estimated=False)
    assert spend.total is None and spend.usd == pytest.approx(0.75)


def _litellm_file(tmp_path: Path) -> Path:
    path = tmp_path / "model_prices_and_context_window.json"
    path.write_text(
        json.dumps(
            {
                "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
                "acme-chat": {
                    "input_cost_per_token": 1.5e-07,
                    "output_cost_per_token": 6e-07,
                    "cache_read_input_token_cost": 7.5e-08,
                    "litellm_provider": "openai",
                    "mode": "chat",
                },
                "gpt-4o-mini": {"input_cost_per_token": 9e-06, "output_cost_per_token": 9e-06},
                "dall-e-3": {"output_cost_per_image": 0.04, "mode": "image_generation"},
            }
        ),
        encoding="utf-8",
    )
    return path


def test_litellm_file_rows_are_converted_to_per_million(tmp_path: Path) -> None:
    rows = load_litellm_prices(_litellm_file(tmp_path))
    # Exactly 0.15, not 0.15000000000000002: float noise from the conversion is rounded.
    assert rows["acme-chat"] == ModelRates(input=0.15, output=0.60, cached_input=0.075)
    assert rows["gpt-4o-mini"] == ModelRates(9.0, 9.0)
    assert "sample_spec" not in rows and "dall-e-3" not in rows


def test_config_rows_win_over_a_litellm_file(tmp_path: Path) -> None:
    config = load_config([f"pricing.sources=['{_litellm_file(tmp_path)}']"])
    table = price_table_for(config.pricing)
    assert table.get("acme-chat") == ModelRates(0.15, 0.60, 0.075)
    assert (
        table.source("acme-chat") == f"litellm:{tmp_path / 'model_prices_and_context_window.json'}"
    )
    assert table.get("gpt-4o-mini") == ModelRates(0.15, 0.60, 0.075)  # published, not 9.0
    assert table.source("gpt-4o-mini") == "litellm"  # the published row's own source


def test_unreadable_litellm_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "prices.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    pricing = validate(PricingTable, {"as_of": "2025-01-01", "sources": [bad]})
    with pytest.raises(ConfigError, match=r"pricing\.sources: .* is not a JSON object"):
        price_table_for(pricing)
    missing = validate(PricingTable, {"as_of": "2025-01-01", "sources": [tmp_path / "none.json"]})
    with pytest.raises(ConfigError, match="cannot read"):
        price_table_for(missing)


def test_env_prod_replaces_a_published_rate() -> None:
    table = price_table_for(load_config(["env=prod"]).pricing)
    assert table.get("gpt-4o-mini") == ModelRates(0.12, 0.48, 0.06)
    assert table.source("gpt-4o-mini") == "negotiated"
    assert table.get("gpt-4o") == PriceTable.published().get("gpt-4o")


def test_a_command_line_override_adds_a_model() -> None:
    config = load_config(["+pricing.models.acme-ft={input: 4.0, output: 16.0}"])
    assert price_table_for(config.pricing).get("acme-ft") == ModelRates(4.0, 16.0)


def _deployment(**fields: object) -> DeploymentConfig:
    return validate(DeploymentConfig, {"provider": "openai", "model": "gpt-4o", **fields})


def test_deployment_pricing_overrides_only_its_priced_model() -> None:
    pricing = load_config().pricing
    deployment = _deployment(
        name="eu", base_model="gpt-4o-2024-08-06", pricing={"input": 2.0, "output": 9.0}
    )
    table = price_table_for(pricing, deployment)
    # Unset fields keep the base row's value (cached_input 1.25 from gpt-4o).
    assert table.get("gpt-4o-2024-08-06") == ModelRates(2.0, 9.0, 1.25)
    assert table.source("gpt-4o-2024-08-06") == "deployment.pricing (eu)"
    # The shared base row, and the snapshots that fall back to it, keep the list price.
    assert table.get("gpt-4o") == ModelRates(2.5, 10.0, 1.25)
    assert table.get("gpt-4o-2024-11-20") == ModelRates(2.5, 10.0, 1.25)


def test_deployment_pricing_of_an_unknown_model_needs_input_and_output() -> None:
    pricing = load_config().pricing
    with pytest.raises(ConfigError, match=r"deployment.pricing: 'acme' has no row"):
        price_table_for(pricing, _deployment(model="acme", pricing={"input": 1.0}))
    table = price_table_for(pricing, _deployment(model="acme", pricing={"input": 1, "output": 2}))
    assert table.get("acme") == ModelRates(1.0, 2.0)
