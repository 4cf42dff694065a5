"""Every file under conf/ composes and validates, alone and in every combination."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from rakka_runtime.config import (
    DeploymentConfig,
    EnvSecret,
    FileSecret,
    RakkaConfig,
    builtin_conf_dir,
    compose_config,
    load_config,
    validate_deployment,
)

CONF = builtin_conf_dir()


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@dataclass(frozen=True, slots=True, kw_only=True)
class _ProviderDeployment(DeploymentConfig):
    """Stands in for a provider's model: the keys the built-in files add to the core."""

    variant: dict[str, Any] = field(default_factory=dict)
    organization: str | None = None
    project: str | None = None
    max_tokens_param: str = "auto"
    # anthropic.yaml and local-anthropic.yaml
    endpoint: str | None = None
    anthropic_version: str | None = None
    default_max_tokens: int | None = None
    beta: list[str] = field(default_factory=list)


def test_builtin_conf_dir_is_the_shipped_tree() -> None:
    assert (CONF / "config.yaml").is_file()
    # The editable install points at the repository's conf/, which hatch ships in the wheel.
    assert Path(__file__).resolve().parents[2] / "conf" == CONF


def test_every_group_has_the_expected_options() -> None:
    assert _options("deployment") == ["anthropic", "azure", "local", "local-anthropic", "openai"]
    assert _options("policy") == ["batch", "default"]
    assert _options("pricing") == ["published"]
    assert _options("env") == ["dev", "prod"]


COMBINATIONS = list(
    itertools.product(
        _options("deployment"), _options("policy"), _options("pricing"), _options("env")
    )
)


@pytest.mark.parametrize(("deployment", "policy", "pricing", "env"), COMBINATIONS)
def test_every_combination_composes_and_validates(
    deployment: str, policy: str, pricing: str, env: str
) -> None:
    config = load_config(
        [f"deployment={deployment}", f"policy={policy}", f"pricing={pricing}", f"env={env}"]
    )
    assert isinstance(config, RakkaConfig)
    assert config.env.name == env
    validated = validate_deployment(config.deployment, _ProviderDeployment)
    assert validated.name == deployment
    assert config.pricing.models, "the price table is empty"
    # Every deployment's model has a price.
    assert validated.priced_model in config.pricing.models


def test_default_composition() -> None:
    raw = compose_config()
    assert set(raw) == {"deployment", "pricing", "env"}
    deployment = validate_deployment(raw["deployment"], _ProviderDeployment)
    assert deployment.name == "local"
    assert deployment.provider == "openai"
    assert deployment.model == "gpt-4o-mini"
    assert deployment.embedded_emulator is True
    assert deployment.api_key is None
    assert deployment.variant == {"kind": "direct", "endpoint": None}
    assert deployment.retry.max_retries == 3
    assert deployment.retry.max_backoff == 60.0
    assert deployment.retry.jitter == "equal"
    assert deployment.circuit_breaker.failure_threshold == 10
    assert deployment.rate_limits.on_capacity_exhausted == "queue"
    assert deployment.timeouts.connect == 5.0
    assert deployment.timeouts.request_timeout == 30.0
    assert raw["env"] == {"name": "dev"}


def test_default_policy_file_matches_schema_defaults() -> None:
    # A bare deployment (no policy group) must behave like policy=default.
    raw = compose_config()["deployment"]
    from_file = validate_deployment(raw, _ProviderDeployment)
    bare = DeploymentConfig(provider="openai", model="gpt-4o-mini")
    for section in ("retry", "circuit_breaker", "rate_limits", "timeouts"):
        assert getattr(from_file, section) == getattr(bare, section), section


def test_openai_and_azure_reference_their_keys() -> None:
    openai = validate_deployment(
        compose_config(["deployment=openai"])["deployment"], _ProviderDeployment
    )
    assert openai.api_key == EnvSecret(name="OPENAI_API_KEY")
    assert openai.variant["endpoint"] == "https://api.openai.com/v1"
    azure = validate_deployment(
        compose_config(["deployment=azure"])["deployment"], _ProviderDeployment
    )
    assert azure.provider == "azure"
    assert azure.base_model == "gpt-4o-mini"
    assert isinstance(azure.api_key, FileSecret)
    assert azure.api_key.path == Path("/var/run/secrets/azure-openai/api-key")
    # YAML would read an unquoted 2024-10-21 as a date.
    assert azure.variant["api_version"] == "2024-10-21"


def test_published_prices() -> None:
    models = load_config().pricing.models
    assert models["gpt-4o"].input == 2.50
    assert models["gpt-4o"].cached_input == 1.25
    assert models["gpt-4o"].output == 10.00
    assert models["gpt-4-turbo"].cached_input is None
    assert models["gpt-5-nano"].cached_input == 0.005
    assert load_config().pricing.as_of == date(2026, 12, 7)
    assert load_config().pricing.currency == "USD"


def test_batch_policy_queues_and_retries_more() -> None:
    default = validate_deployment(compose_config()["deployment"], _ProviderDeployment)
    batch = validate_deployment(compose_config(["policy=batch"])["deployment"], _ProviderDeployment)
    assert batch.retry.max_retries > default.retry.max_retries
    assert batch.rate_limits.on_capacity_exhausted == "queue"
    assert batch.retry.max_backoff == 300.0
    assert batch.circuit_breaker.failure_rate == 0.5


def test_env_prod_wins_over_pricing_and_policy() -> None:
    dev = load_config(["env=dev"])
    prod = load_config(["env=prod"])
    assert dev.pricing.models["gpt-4o-mini"].input == 0.15
    assert prod.pricing.models["gpt-4o-mini"].input == 0.12
    # Rows prod does not mention are kept (merged, not replaced).
    assert prod.pricing.models["gpt-4o"] == dev.pricing.models["gpt-4o"]
    prod_deployment = validate_deployment(prod.deployment, _ProviderDeployment)
    assert prod_deployment.rate_limits.requests_per_minute == 3000
    assert prod_deployment.rate_limits.on_capacity_exhausted == "reject"
    # env is composed after the policy group, whichever policy is chosen.
    batch_prod = validate_deployment(
        load_config(["env=prod", "policy=batch"]).deployment, _ProviderDeployment
    )
    assert batch_prod.rate_limits.on_capacity_exhausted == "reject"


def test_command_line_override_wins_over_env() -> None:
    config = load_config(
        [
            "env=prod",
            "pricing.models.gpt-4o-mini.input=0.01",
            "deployment.rate_limits.on_capacity_exhausted=queue",
        ]
    )
    assert config.pricing.models["gpt-4o-mini"].input == 0.01
    deployment = validate_deployment(config.deployment, _ProviderDeployment)
    assert deployment.rate_limits.on_capacity_exhausted == "queue"


def test_override_switches_deployment_and_sets_a_key() -> None:
    config = load_config(["deployment=openai", "deployment.retry.max_retries=7"])
    deployment = validate_deployment(config.deployment, _ProviderDeployment)
    assert deployment.name == "openai"
    assert deployment.retry.max_retries == 7


@pytest.mark.parametrize("deployment", _options("deployment"))
def test_builtin_deployments_validate_with_the_registered_provider(deployment: str) -> None:
    # The stand-in above pins the core's side; this checks the real provider models
    # agree with the shipped files (skipped while no provider plugin is installed).
    plugins = pytest.importorskip("rakka_runtime.plugins")
    runtime = pytest.importorskip("rakka_runtime.runtime")
    hooks = plugins.PluginHooks()
    config = load_config([f"deployment={deployment}", "env=prod", "policy=batch"])
    if hooks.providers.get(config.deployment["provider"]) is None:
        pytest.skip(f"no provider plugin registers {config.deployment['provider']!r}")
    _, validated = runtime.resolve_deployment(config, hooks)
    assert validated.name == deployment
