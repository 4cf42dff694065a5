"""Each kind of mistake becomes one ConfigError line: dotted path, the value, what is accepted."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import pytest

from rakka_runtime.config import DeploymentConfig, load_config, validate_deployment
from rakka_runtime.errors import ConfigError


def _error(overrides: list[str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(overrides)
    return info.value


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "deployment.retry.jitter=sometimes",
            "deployment.retry.jitter: 'sometimes' is not one of none, equal, full",
        ),
        (
            "deployment.timeouts.connect=5 parsecs",
            "deployment.timeouts.connect: '5 parsecs' is not a duration "
            "(use 30s, 500ms, 2m or a number of seconds)",
        ),
        (
            "deployment.retry.max_backoff=-1s",
            "deployment.retry.max_backoff: '-1s' is negative; a duration must be 0 or more",
        ),
        (
            "deployment.rate_limits.on_capacity_exhausted=drop",
            "deployment.rate_limits.on_capacity_exhausted: 'drop' is not one of queue, reject",
        ),
        (
            "deployment.retry.max_retries=-1",
            "deployment.retry.max_retries: -1 is invalid: "
            "input should be greater than or equal to 0",
        ),
        (
            "deployment.circuit_breaker.failure_rate=1.5",
            "deployment.circuit_breaker.failure_rate: 1.5 is invalid: "
            "input should be less than or equal to 1",
        ),
        (
            "deployment.circuit_breaker.failure_threshold=0",
            "deployment.circuit_breaker.failure_threshold: 0 is invalid: "
            "input should be greater than 0",
        ),
        (
            "deployment.timeouts.request_timeout=0s",
            "deployment.timeouts.request_timeout: '0s' is not more than 0 "
            "(use e.g. 30s, 500ms or 2m)",
        ),
        (
            "deployment.retry.max_backoff=500ms",
            "deployment.retry: max_backoff (500ms) is shorter than initial_backoff (1s)",
        ),
        (
            "pricing.models.gpt-4o.input=-2",
            "pricing.models.gpt-4o.input: -2 is invalid: "
            "input should be greater than or equal to 0",
        ),
        (
            "pricing.currency=dollars",
            "pricing.currency: 'dollars' is invalid: string should match pattern '^[A-Z]{3}$'",
        ),
        (
            "deployment.provider=",
            "deployment.provider: '' is invalid: string should have at least 1 character",
        ),
        (
            "deployment.retry=5",
            "deployment.retry: 5 is invalid: "
            "input should be a dictionary or an instance of RetryPolicy",
        ),
        (
            "+surprise=1",
            "surprise: unknown key (allowed: deployment, pricing, env, deployments, "
            "model_groups, default_model)",
        ),
        ("~deployment.model", "deployment.model: required key is missing"),
    ],
)
def test_bad_value_messages(override: str, expected: str) -> None:
    assert str(_error([override])) == expected


def test_error_path_attribute_is_the_dotted_path() -> None:
    error = _error(["deployment.retry.jitter=sometimes"])
    assert error.path == "deployment.retry.jitter"
    assert error.message == "'sometimes' is not one of none, equal, full"


def test_several_problems_one_line_each() -> None:
    error = _error(
        [
            "deployment.retry.jitter=sometimes",
            "deployment.timeouts.connect=soon",
            "pricing.models.gpt-4o.output=-1",
        ]
    )
    lines = str(error).splitlines()
    assert len(lines) == 3
    assert {line.split(":", 1)[0] for line in lines} == {
        "deployment.retry.jitter",
        "deployment.timeouts.connect",
        "pricing.models.gpt-4o.output",
    }
    assert error.path == lines[0].split(":", 1)[0]


def test_unknown_group_option() -> None:
    assert str(_error(["deployment=nope"])) == (
        "deployment: 'nope' is not a config option "
        "(available: anthropic, azure, local, local-anthropic, openai)"
    )
    assert str(_error(["policy=fast"])) == (
        "policy: 'fast' is not a config option (available: batch, default)"
    )


def test_override_of_a_key_that_does_not_exist() -> None:
    error = _error(["deployment.retyr.max_retries=3"])
    assert error.path == "deployment.retyr"
    assert "unknown key" in str(error)
    assert "'deployment.retyr.max_retries=3'" in str(error)
    assert "+" in str(error)


def test_bad_override_syntax_names_override_and_reason_without_traceback() -> None:
    error = _error(["deployment.retry.max_retries=[1,"])
    text = str(error)
    assert "'deployment.retry.max_retries=[1,'" in text
    assert "no viable alternative" in text
    assert "Traceback" not in text
    assert "\n" not in text
    assert error.__cause__ is None


def test_missing_mandatory_value() -> None:
    error = _error(["deployment.model=???"])
    assert error.path == "deployment.model"
    assert "required" in error.message


def test_unresolvable_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAKKA_TEST_UNSET", raising=False)
    error = _error(["deployment.model=${oc.env:RAKKA_TEST_UNSET}"])
    assert error.path == "deployment.model"
    assert "RAKKA_TEST_UNSET" in error.message


def test_interpolation_from_environment_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAKKA_TEST_MODEL", "gpt-4.1")
    assert load_config(["deployment.model=${oc.env:RAKKA_TEST_MODEL}"]).deployment["model"] == (
        "gpt-4.1"
    )


def test_hydra_settings_are_not_overridable() -> None:
    error = _error(["hydra.searchpath=[file:///tmp]"])
    assert error.path == "hydra.searchpath"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Provider(DeploymentConfig):
    variant: dict[str, Any] = field(default_factory=dict)


def _deployment(**extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "model": "gpt-4o", "variant": {}, **extra}


def test_validate_deployment_unknown_key_lists_allowed_keys() -> None:
    with pytest.raises(ConfigError) as info:
        validate_deployment(_deployment(retyr={}), _Provider)
    # Derived from the model: several features add deployment keys; the order is the model's.
    allowed = ", ".join(f.name for f in fields(_Provider))
    assert allowed.startswith("name, provider, model, base_model, api_key, ")
    assert allowed.endswith(", variant")
    assert str(info.value) == f"deployment.retyr: unknown key (allowed: {allowed})"


def test_validate_deployment_nested_unknown_key() -> None:
    with pytest.raises(ConfigError) as info:
        validate_deployment(_deployment(timeouts={"conect": "1s"}), _Provider)
    assert str(info.value) == (
        "deployment.timeouts.conect: unknown key (allowed: connect, request_timeout, "
        "read_timeout, deadline)"
    )


def test_secret_ref_errors_name_the_path_without_the_union_tag() -> None:
    with pytest.raises(ConfigError) as info:
        validate_deployment(_deployment(api_key={"from": "env", "nmae": "X"}), _Provider)
    assert str(info.value).splitlines() == [
        "deployment.api_key.name: required key is missing",
        "deployment.api_key.nmae: unknown key (allowed: from, name)",
    ]


def test_load_config_checks_core_deployment_keys_but_not_provider_keys() -> None:
    # Provider keys (variant, organization, ...) are left to the provider's model...
    load_config(["+deployment.some_provider_key=1"])
    # ...but the core's own keys are checked without any provider loaded.
    assert "deployment.retry.jitter" in str(_error(["deployment.retry.jitter=x"]))


def test_adding_a_key_that_exists() -> None:
    error = _error(["+deployment.retry.max_retries=4"])
    assert error.path == "deployment.retry.max_retries"
    assert "drop the +" in error.message


def test_model_level_check_prints_its_reason_not_the_mapping() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Provider(DeploymentConfig):
        endpoint: str | None = None

        def __post_init__(self) -> None:
            if self.endpoint is None and not self.embedded_emulator:
                raise ValueError("endpoint is required unless embedded_emulator is true")

    with pytest.raises(ConfigError) as info:
        validate_deployment(
            {"provider": "x", "model": "m", "api_key": {"from": "inline", "value": "sk-x1"}},
            Provider,
        )
    assert str(info.value) == ("deployment: endpoint is required unless embedded_emulator is true")
