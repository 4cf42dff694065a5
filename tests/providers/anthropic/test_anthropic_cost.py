"""Cache reads and writes priced at their own rates; the published Claude rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rakka_runtime.config.loader import load_config
from rakka_runtime.pricing import ModelRates, PriceTable, Spend, cost_from_usage, price_table_for
from rakka_runtime.types import Usage

# (input, cache read, 5-minute cache write, output), USD per 1M, from the pricing page.
CLAUDE = {
    "claude-opus-4-6": (5.00, 0.50, 6.25, 25.00),
    "claude-opus-4-5": (5.00, 0.50, 6.25, 25.00),
    "claude-opus-4-1": (15.00, 1.50, 18.75, 75.00),
    "claude-sonnet-4-5": (3.00, 0.30, 3.75, 15.00),
    "claude-haiku-4-5": (1.00, 0.10, 1.25, 5.00),
    "claude-3-5-haiku": (0.80, 0.08, 1.00, 4.00),
}


def test_published_claude_rows() -> None:
    table = PriceTable.published()
    for model, (prompt, read, write, completion) in CLAUDE.items():
        assert table.get(model) == ModelRates(prompt, completion, read, write), model
        assert table.source(model) == "anthropic"
    # Dated model IDs are priced by their base name.
    assert table.key("claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    assert table.key("claude-3-5-haiku-20241022") == "claude-3-5-haiku"
    assert table.key("gpt-4o-2024-08-06") == "gpt-4o"  # unchanged


def test_cache_write_rate_and_backward_compatibility() -> None:
    rates = ModelRates(3.00, 15.00, 0.30, 3.75)
    usage = Usage(
        input_tokens=1_321_000,
        output_tokens=10_000,
        cached_tokens=300_000,
        cache_write_tokens=20_000,
    )
    expected = (1_001_000 * 3.00 + 300_000 * 0.30 + 20_000 * 3.75 + 10_000 * 15.00) / 1e6
    assert cost_from_usage(rates, usage) == pytest.approx(expected, rel=1e-12)
    # No cache-write rate: writes bill at input, as before the field existed.
    assert cost_from_usage(ModelRates(3.00, 15.00, 0.30), usage) == pytest.approx(
        (1_021_000 * 3.00 + 300_000 * 0.30 + 10_000 * 15.00) / 1e6, rel=1e-12
    )
    # Counts beyond the prompt never bill negative input.
    odd = Usage(input_tokens=10, cached_tokens=8, cache_write_tokens=50)
    assert cost_from_usage(rates, odd) == pytest.approx((8 * 0.30 + 2 * 3.75) / 1e6)
    assert Usage(1, 2, 3, 4).as_dict() == {
        "input_tokens": 1,
        "output_tokens": 2,
        "cached_tokens": 3,
        "reasoning_tokens": 4,
    }
    assert Usage(cache_write_tokens=5).as_dict()["cache_write_tokens"] == 5


def test_spend_sums_cache_writes() -> None:
    spend = Spend()
    spend.add(0.1, Usage(10, 1, cache_write_tokens=4), estimated=False)
    spend.add(0.2, Usage(10, 1, cache_write_tokens=6), estimated=False)
    assert spend.usage.cache_write_tokens == 10


def test_litellm_cache_creation_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "claude-x": {
                    "input_cost_per_token": 3e-06,
                    "output_cost_per_token": 1.5e-05,
                    "cache_read_input_token_cost": 3e-07,
                    "cache_creation_input_token_cost": 3.75e-06,
                }
            }
        )
    )
    config = load_config([f"pricing.sources=['{path}']"])
    assert price_table_for(config.pricing).get("claude-x") == ModelRates(3.0, 15.0, 0.3, 3.75)
    override = load_config(
        ["deployment=local-anthropic", "+deployment.pricing={cache_write_input: 6.0}"]
    )
    from rakka_provider_anthropic.deployment import AnthropicDeployment
    from rakka_runtime.config.validation import validate_deployment

    assert isinstance(override.deployment, dict)
    deployment = validate_deployment(override.deployment, AnthropicDeployment)
    rates = price_table_for(override.pricing, deployment).get("claude-sonnet-4-5")
    assert rates == ModelRates(3.0, 15.0, 0.3, 6.0)
