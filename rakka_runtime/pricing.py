"""Prices and cost: estimate before a call, measure from reported usage after it.

Rates are USD per million tokens. A model is looked up by exact name, then by its base
name with a dated snapshot suffix removed (``gpt-4o-2024-08-06`` → ``gpt-4o``); a model
found neither way is *unknown* and its cost is ``None`` — never reported as $0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rakka_runtime.types import Message, Usage

_PER_TOKEN = 1e-6
# -2024-08-06 (OpenAI) or -0125 / -1106 (older) snapshot suffixes.
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")


@dataclass(frozen=True, slots=True)
class ModelRates:
    """USD per million tokens. ``cached_input`` None means cached tokens bill at ``input``."""

    input: float
    output: float
    cached_input: float | None = None


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """A pre-call bound: ``usd`` for ``input_tokens`` plus at most ``output_tokens_max``."""

    usd: float | None
    input_tokens: int
    output_tokens_max: int

    @classmethod
    def from_rates(cls, rates: ModelRates, estimated_tokens: int) -> CostEstimate:
        """The seed crate's estimate: an 80/20 input/output split of a token count."""
        input_tokens = round(estimated_tokens * 0.8)
        output_tokens = estimated_tokens - input_tokens
        usd = (input_tokens * rates.input + output_tokens * rates.output) * _PER_TOKEN
        return cls(usd, input_tokens, output_tokens)


class PriceTable:
    """Effective rates by model name (built from config: published rows plus overrides)."""

    def __init__(self, rates: Mapping[str, ModelRates], as_of: str | None = None) -> None:
        self._rates = dict(rates)
        self.as_of = as_of

    @classmethod
    def from_config(
        cls, models: Mapping[str, Mapping[str, Any]], as_of: object = None
    ) -> PriceTable:
        """From config rows ``{model: {input, output, cached_input?}}`` (USD per 1M tokens)."""
        rates = {}
        for name, row in models.items():
            cached = row.get("cached_input")
            rates[name] = ModelRates(
                input=float(row["input"]),
                output=float(row["output"]),
                cached_input=None if cached is None else float(cached),
            )
        return cls(rates, None if as_of is None else str(as_of))

    def get(self, model: str) -> ModelRates | None:
        """Exact name, then the dated snapshot's base name; ``None`` when unknown."""
        rates = self._rates.get(model)
        if rates is None:
            base = _SNAPSHOT.sub("", model)
            if base != model:
                rates = self._rates.get(base)
        return rates

    def models(self) -> dict[str, ModelRates]:
        return dict(self._rates)

    def cost(self, model: str, usage: Usage) -> float | None:
        rates = self.get(model)
        return None if rates is None else cost_from_usage(rates, usage)


def cost_from_usage(rates: ModelRates, usage: Usage) -> float:
    """uncached input * input + cached * cached rate + output (reasoning included) * output."""
    cached = min(usage.cached_tokens, usage.input_tokens)
    cached_rate = rates.input if rates.cached_input is None else rates.cached_input
    return (
        (usage.input_tokens - cached) * rates.input
        + cached * cached_rate
        + usage.output_tokens * rates.output
    ) * _PER_TOKEN


def estimate_input_tokens(messages: Sequence[Message]) -> int:
    """A tokenizer-free estimate: about 4 characters a token, plus per-message overhead.

    Exact BPE counts would need tokenizer files fetched at run time; the estimate only
    reserves capacity and predicts cost, and the reported usage replaces it afterwards.
    """
    total = 3  # every reply is primed with a few tokens
    for message in messages:
        total += 4
        content = message.get("content")
        if isinstance(content, str):
            total += (len(content) + 3) // 4
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, Mapping):
                    continue
                if part.get("type") == "text":
                    total += (len(str(part.get("text", ""))) + 3) // 4
                elif part.get("type") == "image_url":
                    total += 85  # a low-detail image; high detail costs more
        for call in message.get("tool_calls") or ():
            function = call.get("function", {}) if isinstance(call, Mapping) else {}
            total += (len(str(function.get("arguments", ""))) + 3) // 4 + 4
    return total


def estimate_cost(
    table: PriceTable, model: str, messages: Sequence[Message], max_output_tokens: int
) -> CostEstimate:
    """Input tokens counted from the messages; output bounded by the request's max tokens."""
    input_tokens = estimate_input_tokens(messages)
    rates = table.get(model)
    usd = None
    if rates is not None:
        usd = (input_tokens * rates.input + max_output_tokens * rates.output) * _PER_TOKEN
    return CostEstimate(usd, input_tokens, max_output_tokens)
