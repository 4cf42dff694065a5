from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from rakka_runtime.config import (
    CircuitBreakerPolicy,
    DeploymentConfig,
    EnvConfig,
    EnvSecret,
    FileSecret,
    InlineSecret,
    PluginSecret,
    PriceRow,
    PricingTable,
    RakkaConfig,
    RateLimitPolicy,
    RetryPolicy,
    Timeouts,
    load_config,
    to_plain,
    validate,
    validate_deployment,
)
from rakka_runtime.errors import ConfigError


def _deployment(**extra: Any) -> DeploymentConfig:
    return validate_deployment({"provider": "openai", "model": "gpt-4o", **extra}, DeploymentConfig)


@pytest.mark.parametrize(
    "model",
    [
        RetryPolicy(),
        CircuitBreakerPolicy(),
        RateLimitPolicy(),
        Timeouts(),
        DeploymentConfig(provider="openai", model="gpt-4o"),
        PriceRow(input=1, output=2),
        EnvConfig(name="dev"),
        EnvSecret(name="X"),
        PluginSecret(source="vault", params={"path": "a"}),
    ],
)
def test_models_are_frozen(model: object) -> None:
    name = fields(model)[0].name  # type: ignore[arg-type]
    with pytest.raises(FrozenInstanceError):
        setattr(model, name, getattr(model, name))


def test_loaded_config_is_frozen() -> None:
    config = load_config()
    with pytest.raises(FrozenInstanceError):
        config.env = EnvConfig(name="prod")  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        config.pricing.models["gpt-4o"].input = 0  # type: ignore[misc]


def test_importing_the_schema_does_not_import_pydantic() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rakka_runtime.config.schema, rakka_runtime.config.plain;"
        "print([m for m in ('pydantic', 'pydantic_core') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bare_deployment_gets_default_policies() -> None:
    deployment = _deployment()
    assert deployment.name == "default"
    assert deployment.api_key is None
    assert deployment.embedded_emulator is False
    assert deployment.retry == RetryPolicy(
        max_retries=3,
        initial_backoff=1.0,
        max_backoff=60.0,
        backoff_multiplier=2.0,
        jitter="equal",
        respect_retry_after=True,
        max_retry_after=60.0,
        deadline=None,
    )
    assert deployment.circuit_breaker.failure_threshold == 10
    assert deployment.circuit_breaker.open_duration == 30.0
    assert deployment.circuit_breaker.min_calls == 20
    assert deployment.rate_limits.on_capacity_exhausted == "queue"
    assert deployment.timeouts == Timeouts(connect=5, request_timeout=30, read_timeout=10)


def test_durations_in_policies_are_seconds() -> None:
    deployment = _deployment(
        retry={"initial_backoff": "500ms", "max_backoff": "2m", "deadline": "1h"},
        timeouts={"connect": 3, "request_timeout": "1m30s"},
    )
    assert deployment.retry.initial_backoff == 0.5
    assert deployment.retry.max_backoff == 120.0
    assert deployment.retry.deadline == 3600.0
    assert deployment.timeouts.connect == 3.0
    assert deployment.timeouts.request_timeout == 90.0


def test_priced_model_prefers_base_model() -> None:
    assert _deployment().priced_model == "gpt-4o"
    assert _deployment(model="my-azure-deployment", base_model="gpt-4o-mini").priced_model == (
        "gpt-4o-mini"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Variant:
    kind: str


# At module level: pydantic resolves the annotations (strings here) in the module.
@dataclass(frozen=True, slots=True, kw_only=True)
class _Provider(DeploymentConfig):
    variant: _Variant


def test_provider_subclass_adds_fields_and_keeps_forbidding_others() -> None:
    Provider = _Provider
    deployment = validate_deployment(
        {"provider": "x", "model": "m", "variant": {"kind": "direct"}}, Provider
    )
    assert deployment.variant.kind == "direct"
    with pytest.raises(ConfigError, match=r"deployment\.typo: unknown key"):
        validate_deployment(
            {"provider": "x", "model": "m", "variant": {"kind": "d"}, "typo": 1}, Provider
        )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"from": "env", "name": "OPENAI_API_KEY"}, EnvSecret(name="OPENAI_API_KEY")),
        ({"from": "file", "path": "/run/key"}, FileSecret(path=Path("/run/key"))),
        (
            {"from": "vault", "path": "kv/openai", "key": "api_key"},
            PluginSecret(source="vault", params={"path": "kv/openai", "key": "api_key"}),
        ),
        ({"from": "gcp"}, PluginSecret(source="gcp")),
    ],
)
def test_secret_refs_are_discriminated_by_from(raw: dict[str, Any], expected: Any) -> None:
    assert _deployment(api_key=raw).api_key == expected


def test_inline_secret_is_a_secret_str() -> None:
    api_key = _deployment(api_key={"from": "inline", "value": "sk-test"}).api_key
    assert isinstance(api_key, InlineSecret)
    assert api_key.value.reveal() == "sk-test"


def test_secret_refs_dump_back_to_their_config_form() -> None:
    for raw in (
        {"from": "env", "name": "K"},
        {"from": "file", "path": "/run/key"},
        {"from": "vault", "path": "kv/openai", "params": {"nested": True}},
    ):
        deployment = _deployment(api_key=raw)
        dumped = to_plain(deployment)["api_key"]
        assert dumped == raw
        # And the dump validates back to an equal model.
        assert _deployment(api_key=dumped) == deployment


def test_plugin_secret_cannot_claim_a_builtin_source() -> None:
    with pytest.raises(ValueError, match="built-in source"):
        PluginSecret(source="env")


@pytest.mark.parametrize("bad", ["sk-plain-string", {"name": "X"}, {"from": 3}, ["env"]])
def test_not_a_secret_ref(bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        _deployment(api_key=bad)
    assert info.value.path == "deployment.api_key"
    assert "expected a secret reference" in info.value.message


def test_pricing_table() -> None:
    table = validate(
        PricingTable, {"as_of": date(2025, 8, 7), "models": {"m": {"input": 1, "output": 2}}}
    )
    assert table.currency == "USD"
    assert table.models["m"].cached_input is None
    with pytest.raises(ConfigError, match="greater than or equal to 0"):
        validate(PriceRow, {"input": -1, "output": 0})


def test_rakka_config_forbids_unknown_top_level_keys() -> None:
    with pytest.raises(ConfigError, match="hydra: unknown key"):
        validate(
            RakkaConfig,
            {
                "deployment": {},
                "pricing": {"as_of": "2025-08-07"},
                "env": {"name": "dev"},
                "hydra": {},
            },
        )


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        ("2025-08-07", date(2025, 8, 7)),
        (date(2024, 1, 2), date(2024, 1, 2)),
        ("Aug 2025", "Aug 2025"),
    ],
)
def test_pricing_as_of_is_a_date_or_a_label(as_of: object, expected: object) -> None:
    assert validate(PricingTable, {"as_of": as_of}).as_of == expected


def test_pricing_as_of_reports_one_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(["pricing.as_of=null"])
    assert str(info.value) == (
        "pricing.as_of: None is not a date or a label with a year (use YYYY-MM-DD, or e.g. "
        "'Aug 2025')"
    )
