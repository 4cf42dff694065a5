"""Prices and cost: estimate before a call, measure from reported usage after it.

Rates are USD per million tokens. A model is looked up by exact name, then by its base
name with a dated snapshot suffix removed (``gpt-4o-2024-08-06`` → ``gpt-4o``); a model
found neither way is *unknown* and its cost is ``None`` — never reported as $0.

Where rows come from, later winning over earlier (see :func:`price_table_for`):

1. ``pricing.sources``: price files in LiteLLM's ``model_prices_and_context_window.json``
   format (per-token costs, converted to per million);
2. ``pricing.models``: the published rows (``conf/pricing/published.yaml``) with whatever
   an env file or an override changed or added;
3. ``deployment.pricing``: fields that replace the deployment's priced model's row.

A deployment with a ``price_namespace`` (an Azure deployment: ``azure/<deployment_type>``)
is priced by the rows under it (``azure/data_zone/gpt-4o`` prices ``gpt-4o``), see
:func:`_scope`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rakka_runtime.types import ChatResult, Message, Usage

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig, PricingTable

__all__ = [
    "CostEstimate",
    "ModelRates",
    "PriceDiff",
    "PriceTable",
    "RateChange",
    "Spend",
    "cost_from_usage",
    "diff_with_litellm",
    "estimate_cost",
    "estimate_input_tokens",
    "estimate_output_tokens",
    "load_litellm_prices",
    "price_table_for",
]

_PER_TOKEN = 1e-6
# -2024-08-06 (OpenAI) or -0125 / -1106 (older) snapshot suffixes; -20250929 (Anthropic).
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")
_MAX_REMEMBERED = 4096  # model names whose row is remembered (callers may send any name)


@dataclass(frozen=True, slots=True)
class ModelRates:
    """USD per million tokens. ``cached_input`` None means cached tokens bill at ``input``;
    ``cache_write_input`` None means tokens written to a prompt cache bill at ``input``."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write_input: float | None = None


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """A pre-call bound: ``usd`` for ``input_tokens`` plus at most ``output_tokens_max``.

    ``usd`` is ``None`` when the model has no price.
    """

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
    """Effective rates by model name, each row remembering where it came from."""

    def __init__(
        self,
        rates: Mapping[str, ModelRates],
        as_of: str | None = None,
        *,
        currency: str = "USD",
        sources: Mapping[str, str] | None = None,
    ) -> None:
        self._rates = dict(rates)
        self._keys: dict[str, str | None] = {}  # a model name -> the row pricing it (memo)
        self.as_of = as_of
        self.currency = currency
        self._sources = dict(sources or {})

    @classmethod
    def from_config(
        cls, models: Mapping[str, Mapping[str, Any]], as_of: object = None
    ) -> PriceTable:
        """From config rows ``{model: {input, output, cached_input?, source?}}`` (per 1M)."""
        rates = {name: _rates_of(row) for name, row in models.items()}
        sources = {name: str(row["source"]) for name, row in models.items() if row.get("source")}
        return cls(rates, None if as_of is None else str(as_of), sources=sources)

    @classmethod
    def published(cls) -> PriceTable:
        """The built-in published list prices, read from ``conf/pricing/published.yaml``.

        Read with PyYAML and validated, without Hydra: neither env files nor overrides
        apply (use :func:`price_table_for` with a composed config for those).
        """
        import yaml

        from rakka_runtime.config.loader import builtin_conf_dir
        from rakka_runtime.config.schema import PricingTable
        from rakka_runtime.config.validation import validate

        path = builtin_conf_dir() / "pricing" / "published.yaml"
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        pricing = validate(PricingTable, raw["pricing"], prefix="pricing")
        return cls.from_config(
            {name: asdict(row) for name, row in pricing.models.items()}, pricing.as_of
        )

    def get(self, model: str) -> ModelRates | None:
        """Exact name, then the dated snapshot's base name; ``None`` when unknown."""
        key = self.key(model)
        return None if key is None else self._rates[key]

    def key(self, model: str) -> str | None:
        """The row name ``model`` is priced by (itself or its base), or ``None``."""
        if model in self._rates:
            return model
        keys = self._keys
        if model in keys:  # every request prices its model: the snapshot regex runs once
            return keys[model]
        base = _SNAPSHOT.sub("", model)
        key = base if base != model and base in self._rates else None
        if len(keys) < _MAX_REMEMBERED:
            keys[model] = key
        return key

    def source(self, model: str) -> str | None:
        """Where the row pricing ``model`` came from (a URL, a file, ``deployment.pricing``)."""
        key = self.key(model)
        return None if key is None else self._sources.get(key)

    def models(self) -> dict[str, ModelRates]:
        return dict(self._rates)

    def scoped(self, namespace: str | None) -> PriceTable:
        """This table as a deployment with ``namespace`` sees it (see :func:`_scope`)."""
        if not namespace:
            return self
        rates, sources = dict(self._rates), dict(self._sources)
        _scope(rates, sources, namespace)
        return PriceTable(rates, self.as_of, currency=self.currency, sources=sources)

    def cost(self, model: str, usage: Usage) -> float | None:
        rates = self.get(model)
        return None if rates is None else cost_from_usage(rates, usage)


def cost_from_usage(rates: ModelRates, usage: Usage) -> float:
    """uncached input * input + cached * cached rate + cache writes * cache-write rate
    + output (reasoning included) * output."""
    cached = min(usage.cached_tokens, usage.input_tokens)
    written = min(usage.cache_write_tokens, usage.input_tokens - cached)
    cached_rate = rates.input if rates.cached_input is None else rates.cached_input
    write_rate = rates.input if rates.cache_write_input is None else rates.cache_write_input
    return (
        (usage.input_tokens - cached - written) * rates.input
        + cached * cached_rate
        + written * write_rate
        + usage.output_tokens * rates.output
    ) * _PER_TOKEN


@dataclass(slots=True)
class Spend:
    """What one logical request consumed, summed over its attempts.

    A failed attempt that consumed tokens (a stream that broke, a filtered answer) counts
    as much as the one that succeeded: the provider bills both.

    :ivar usd: the known part of the spend.
    :ivar estimated: a failed attempt reported no usage, so its tokens were estimated.
    :ivar unknown: some attempt's cost is unknown (its model has no price, or a complete
        answer came without usage); the total is then ``None``, never the known part.
    :ivar usage: the tokens behind ``usd`` (reported, or estimated where flagged).
    :ivar charged: attempts that consumed tokens.
    """

    usd: float = 0.0
    estimated: bool = False
    unknown: bool = False
    usage: Usage = field(default_factory=Usage)
    charged: int = 0

    @property
    def total(self) -> float | None:
        """USD for the whole request, or ``None`` when part of it is unknown."""
        return None if self.unknown else self.usd

    def add(self, cost: float | None, usage: Usage | None, *, estimated: bool) -> None:
        self.charged += 1
        if cost is None:
            self.unknown = True
        else:
            self.usd += cost
        self.estimated = self.estimated or estimated
        if usage is None:
            return
        total = self.usage
        total.input_tokens += usage.input_tokens
        total.output_tokens += usage.output_tokens
        total.cached_tokens += usage.cached_tokens
        total.reasoning_tokens += usage.reasoning_tokens
        total.cache_write_tokens += usage.cache_write_tokens


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


def estimate_output_tokens(result: ChatResult) -> int:
    """Output tokens a result without usage consumed: ``ceil(chars / 4)`` of what arrived.

    Counts the text plus each tool call's name and arguments, i.e. only what reached us;
    reasoning tokens the model spent before its first visible token cannot be seen.
    """
    chars = len(result.text)
    for call in result.tool_calls:
        chars += len(call.name) + len(call.arguments)
    return math.ceil(chars / 4)


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


# --- Building the effective table ----------------------------------------------------------


def load_litellm_prices(path: str | Path) -> dict[str, ModelRates]:
    """Rows of a LiteLLM ``model_prices_and_context_window.json`` file, per million tokens.

    Uses ``input_cost_per_token``, ``output_cost_per_token``,
    ``cache_read_input_token_cost`` and ``cache_creation_input_token_cost``; entries
    without both token costs (images, audio, ``sample_spec``) are skipped.

    :raises ConfigError: the file cannot be read or is not a JSON object.
    """
    from rakka_runtime.errors import ConfigError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError("pricing.sources", f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("pricing.sources", f"{str(path)!r} is not a JSON object of models")
    rows = {}
    for name, entry in data.items():
        if name == "sample_spec" or not isinstance(entry, Mapping):
            continue
        prompt = _number(entry.get("input_cost_per_token"))
        completion = _number(entry.get("output_cost_per_token"))
        if prompt is None or completion is None:
            continue
        cached = _number(entry.get("cache_read_input_token_cost"))
        written = _number(entry.get("cache_creation_input_token_cost"))
        rows[str(name)] = ModelRates(
            input=_per_million(prompt),
            output=_per_million(completion),
            cached_input=None if cached is None else _per_million(cached),
            cache_write_input=None if written is None else _per_million(written),
        )
    return rows


def price_table_for(
    pricing: PricingTable, deployment: DeploymentConfig | None = None
) -> PriceTable:
    """The effective table: source files, then config rows, then ``deployment.pricing``.

    :raises ConfigError: a source file is unreadable, or ``deployment.pricing`` prices a
        model the table does not know without giving both ``input`` and ``output``.
    """
    rates: dict[str, ModelRates] = {}
    sources: dict[str, str] = {}
    for path in pricing.sources:
        found = load_litellm_prices(path)
        rates.update(found)
        sources.update(dict.fromkeys(found, f"litellm:{path}"))
    for name, row in pricing.models.items():
        rates[name] = _rates_of(asdict(row))
        sources[name] = row.source or "config"
    namespace = deployment.price_namespace if deployment is not None else None
    if namespace:
        _scope(rates, sources, namespace)
    table = PriceTable(rates, str(pricing.as_of), currency=pricing.currency, sources=sources)
    override = deployment.pricing if deployment is not None else None
    if deployment is None or override is None:
        return table
    model = deployment.priced_model
    fields = {key: value for key, value in asdict(override).items() if value is not None}
    base = table.get(model)
    if base is None:
        if "input" not in fields or "output" not in fields:
            from rakka_runtime.errors import ConfigError

            raise ConfigError(
                "deployment.pricing",
                f"{model!r} has no row in the price table to override; set both input and output",
            )
        base = ModelRates(fields["input"], fields["output"])
    # Keyed by the priced model's own name, so other models sharing its base row keep theirs.
    table._rates[model] = replace(base, **fields)
    table._keys.clear()
    table._sources[model] = f"deployment.pricing ({deployment.name})"
    return table


def _scope(rates: dict[str, ModelRates], sources: dict[str, str], namespace: str) -> None:
    """Let the rows under ``namespace/`` price their models for this deployment.

    ``azure/global/gpt-4o`` then prices ``gpt-4o``. A ``*/global`` namespace falls back to
    the plain list rows where it has none (Azure's Global price is OpenAI's list price);
    any other (Data Zone, Regional: dearer than the list) has no fallback, so a model
    without a row there is unknown rather than under-priced.
    """
    prefix = namespace.rstrip("/") + "/"
    scoped = {
        name[len(prefix) :]: name for name in rates if name.startswith(prefix) and name != prefix
    }
    if not namespace.rstrip("/").endswith("/global"):
        for name in [n for n in rates if "/" not in n and n not in scoped]:
            del rates[name]
            sources.pop(name, None)
    for model, name in scoped.items():
        rates[model] = rates[name]
        sources[model] = f"{sources.get(name) or 'config'} ({name})"


def _rates_of(row: Mapping[str, Any]) -> ModelRates:
    cached = row.get("cached_input")
    written = row.get("cache_write_input")
    return ModelRates(
        input=float(row["input"]),
        output=float(row["output"]),
        cached_input=None if cached is None else float(cached),
        cache_write_input=None if written is None else float(written),
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 else None


def _per_million(per_token: float) -> float:
    # 1.5e-07 * 1e6 is 0.15000000000000002 in binary floating point: round away the noise.
    return round(per_token * 1_000_000, 9)


# --- Comparing with a LiteLLM price file ---------------------------------------------------

# Our hosting-type rows and the LiteLLM key prefixes that price the same thing (the first
# that has the model wins). Regional rows are billed at the Data Zone rate.
_LITELLM_PREFIXES: dict[str, tuple[str, ...]] = {
    "azure/global/": ("azure/", "azure/global/"),
    "azure/data_zone/": ("azure/us/", "azure/eu/"),
    "azure/regional/": ("azure/us/", "azure/eu/"),
}
# LiteLLM providers whose chat models the table is meant to cover, and our prefix for them.
_COVERED_PROVIDERS = {"openai": "", "azure": "azure/global/"}


@dataclass(frozen=True, slots=True)
class RateChange:
    """A row whose rates differ from the file's: ``(ours, theirs)`` per changed field."""

    model: str
    file_key: str
    fields: dict[str, tuple[float | None, float | None]]


@dataclass(slots=True)
class PriceDiff:
    """How a price table differs from a LiteLLM price file."""

    changed: list[RateChange] = field(default_factory=list)
    # Rows the file has no entry for (retired models, our own rows).
    only_in_table: list[str] = field(default_factory=list)
    # Chat models of the covered providers the table has no row for, by their row name.
    only_in_file: list[str] = field(default_factory=list)
    same: int = 0

    @property
    def differs(self) -> bool:
        return bool(self.changed or self.only_in_table or self.only_in_file)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": [
                {
                    "model": c.model,
                    "file_key": c.file_key,
                    "fields": {k: {"table": v[0], "file": v[1]} for k, v in c.fields.items()},
                }
                for c in self.changed
            ],
            "only_in_table": self.only_in_table,
            "only_in_file": self.only_in_file,
            "same": self.same,
        }


def _file_keys(model: str) -> tuple[str, ...]:
    for prefix, theirs in _LITELLM_PREFIXES.items():
        if model.startswith(prefix):
            return tuple(p + model[len(prefix) :] for p in theirs)
    return (model,)


def _read_litellm_file(path: str | Path) -> dict[str, Mapping[str, Any]]:
    from rakka_runtime.errors import ConfigError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError("pricing diff", f"cannot read {str(path)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("pricing diff", f"{str(path)!r} is not a JSON object of models")
    return {str(k): v for k, v in data.items() if k != "sample_spec" and isinstance(v, Mapping)}


def diff_with_litellm(rates: Mapping[str, ModelRates], path: str | Path) -> PriceDiff:
    """Compare table rows (per 1M tokens) with a LiteLLM ``model_prices_and_context_window``
    file: rates that differ, rows the file lacks, and chat models of the providers the
    table covers (``openai``, ``azure``) that the table lacks.

    :raises ConfigError: the file cannot be read or is not a JSON object.
    """
    entries = _read_litellm_file(path)
    theirs = load_litellm_prices(path)
    diff = PriceDiff()
    matched: set[str] = set()
    for model in sorted(rates):
        key = next((k for k in _file_keys(model) if k in theirs), None)
        if key is None:
            diff.only_in_table.append(model)
            continue
        matched.update(_file_keys(model))
        ours, other = rates[model], theirs[key]
        fields = {
            name: (getattr(ours, name), getattr(other, name))
            for name in ("input", "cached_input", "output")
            if not _same_rate(getattr(ours, name), getattr(other, name))
        }
        if fields:
            diff.changed.append(RateChange(model, key, fields))
        else:
            diff.same += 1
    new: set[str] = set()
    for key, entry in entries.items():
        prefix = _COVERED_PROVIDERS.get(str(entry.get("litellm_provider")))
        if prefix is None or entry.get("mode") != "chat" or key in matched or key not in theirs:
            continue
        if key.startswith("ft:"):  # fine-tunes are priced per organisation's model name
            continue
        name = key if not prefix else _row_name(key)
        if name is None or name in rates:
            continue
        # A dated snapshot priced like its base row is covered by the snapshot rule.
        base = rates.get(_SNAPSHOT.sub("", name))
        if base is not None and all(
            _same_rate(getattr(base, f), getattr(theirs[key], f))
            for f in ("input", "cached_input", "output")
        ):
            continue
        new.add(name)
    diff.only_in_file = sorted(new)
    return diff


def _row_name(azure_key: str) -> str | None:
    """Our row name for a LiteLLM ``azure/...`` key (None for hosting types we do not map)."""
    rest = azure_key.removeprefix("azure/")
    if "/" not in rest:
        return f"azure/global/{rest}"
    zone, _, model = rest.partition("/")
    if "/" in model:
        return None
    if zone == "global":
        return f"azure/global/{model}"
    if zone in ("us", "eu"):
        return f"azure/data_zone/{model}"
    return None


def _same_rate(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
