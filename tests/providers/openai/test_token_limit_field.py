"""Which field carries a request's ``max_tokens``: OpenAI, Azure by api-version, or a setting."""

from __future__ import annotations

import json

import pytest
from spec_schemas import OPENAI, spec_schema

from rakka_provider_openai.deployment import (
    AzureDeployment,
    OpenAIDeployment,
    azure_accepts_max_completion_tokens,
    completion_limit_key,
)
from rakka_provider_openai.emulator import Emulator
from rakka_provider_openai.wire import build_chat_body
from rakka_runtime.config.validation import validate_deployment
from rakka_runtime.errors import BadRequest
from rakka_runtime.types import ExecuteBatch, SamplingParams
from rakka_testing import RuntimeFactory


def openai_deployment(**fields: object) -> OpenAIDeployment:
    raw = {"provider": "openai", "model": "gpt-4o-mini", **fields}
    built = validate_deployment(raw, OpenAIDeployment)
    assert isinstance(built, OpenAIDeployment)
    return built


def azure_deployment(api_version: str, **fields: object) -> AzureDeployment:
    raw = {
        "provider": "azure",
        "model": "gpt-4o-mini",
        "variant": {
            "kind": "azure",
            "resource": "r",
            "deployment": "d",
            "api_version": api_version,
        },
        **fields,
    }
    built = validate_deployment(raw, AzureDeployment)
    assert isinstance(built, AzureDeployment)
    return built


def sent_key(deployment: OpenAIDeployment | AzureDeployment, model: str) -> str:
    req = ExecuteBatch(
        messages=[{"role": "user", "content": "hi"}], sampling=SamplingParams(max_tokens=9)
    )
    body = json.loads(
        build_chat_body(req, model=model, stream=False, limit_key=completion_limit_key(deployment))
    )
    [key] = [k for k in body if k in ("max_tokens", "max_completion_tokens")]
    assert body[key] == 9
    return key


@pytest.mark.parametrize(
    "model", ["gpt-4o-mini", "gpt-4.1", "gpt-3.5-turbo", "o3", "gpt-5", "future-x"]
)
def test_openai_gets_max_completion_tokens_for_every_model(model: str) -> None:
    # The published spec deprecates max_tokens for chat; newer models reject it.
    request = spec_schema(OPENAI, "CreateChatCompletionRequest")
    fields = {k: v for part in request["allOf"] for k, v in part.get("properties", {}).items()}
    assert fields["max_tokens"]["anyOf"][0].get("deprecated") is True
    assert sent_key(openai_deployment(), model) == "max_completion_tokens"
    regional = openai_deployment(
        variant={"kind": "direct", "endpoint": "https://eu.api.openai.com/v1"}
    )
    assert sent_key(regional, model) == "max_completion_tokens"


def test_the_embedded_emulator_is_treated_as_openai() -> None:
    local = openai_deployment(variant={"kind": "direct", "endpoint": None}, embedded_emulator=True)
    assert completion_limit_key(local) == "max_completion_tokens"


@pytest.mark.parametrize(
    ("version", "accepts"),
    [
        ("2024-02-01", False),
        ("2024-06-01", False),
        ("2024-08-01-preview", False),
        ("2024-09-01-preview", True),
        ("2024-10-21", True),
        ("2025-04-01-preview", True),
        ("v1", True),
        ("preview", True),
    ],
)
def test_azure_by_api_version(version: str, accepts: bool) -> None:
    assert azure_accepts_max_completion_tokens(version) is accepts
    expected = "max_completion_tokens" if accepts else "max_tokens"
    assert sent_key(azure_deployment(version), "gpt-4o-mini") == expected


def test_other_compatible_endpoints_default_to_max_tokens() -> None:
    vllm = openai_deployment(variant={"kind": "direct", "endpoint": "http://vllm.internal:8000/v1"})
    assert completion_limit_key(vllm) is None
    assert sent_key(vllm, "llama-3.1-70b") == "max_tokens"
    # A proxy in front of OpenAI, for a model that is known to reject max_tokens.
    assert sent_key(vllm, "o4-mini") == "max_completion_tokens"


def test_the_deployment_setting_wins() -> None:
    proxy = {"kind": "direct", "endpoint": "https://proxy.example/v1"}
    new = openai_deployment(variant=proxy, max_tokens_param="max_completion_tokens")
    assert sent_key(new, "llama") == "max_completion_tokens"
    old = openai_deployment(max_tokens_param="max_tokens")
    assert sent_key(old, "gpt-4o") == "max_tokens"
    assert sent_key(azure_deployment("2024-10-21", max_tokens_param="max_tokens"), "x") == (
        "max_tokens"
    )


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(Exception, match="max_tokens_param"):
        openai_deployment(max_tokens_param="max_output_tokens")


def test_old_azure_api_version_round_trip(emulator: Emulator, make_runtime: RuntimeFactory) -> None:
    # The emulator refuses max_completion_tokens below 2024-09-01, as Azure does.
    old = make_runtime(emulator, "deployment.variant.api_version=2024-06-01", azure=True)
    result = old.chat("hi", stream=False, max_tokens=3)
    assert result.usage is not None and result.usage.output_tokens == 3
    forced = make_runtime(
        emulator,
        "deployment.variant.api_version=2024-06-01",
        "deployment.max_tokens_param=max_completion_tokens",
        "deployment.retry.enabled=false",
        azure=True,
    )
    with pytest.raises(BadRequest, match="Unrecognized request argument supplied"):
        forced.chat("hi", stream=False, max_tokens=3)
    current = make_runtime(emulator, azure=True)
    assert current.chat("hi", stream=False, max_tokens=4).usage.output_tokens == 4  # type: ignore[union-attr]
