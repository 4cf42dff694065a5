"""Compiled configs: compose and validate once, then run without Hydra or pydantic."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rakka_provider_openai.deployment import DirectVariant, OpenAIDeployment
from rakka_provider_openai.emulator import Emulator
from rakka_runtime.config import EnvConfig, InlineSecret, PricingTable, RakkaConfig, RetryPolicy
from rakka_runtime.config.compiled import FORMAT, compile_config, load_compiled, write_compiled
from rakka_runtime.config.loader import builtin_conf_dir, load_config
from rakka_runtime.config.plain import from_plain, to_plain
from rakka_runtime.errors import ConfigError
from rakka_runtime.plugins import PluginHooks
from rakka_runtime.runtime import Runtime, resolve_deployment
from rakka_runtime.secret_value import Secret
from rakka_testing import EMULATOR_KEY

CANARY = "sk-canary-compiled-51f0"


def _compile(tmp_path: Path, *overrides: str) -> Path:
    config = load_config(list(overrides))
    _, deployment = resolve_deployment(config, PluginHooks())
    path = tmp_path / "rakka.json"
    write_compiled(compile_config(config, deployment), path)
    return path


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (builtin_conf_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize(
    ("deployment", "policy", "env"),
    list(itertools.product(_options("deployment"), _options("policy"), _options("env"))),
)
def test_every_builtin_config_rebuilds_equal_to_its_validated_form(
    tmp_path: Path, deployment: str, policy: str, env: str
) -> None:
    overrides = [f"deployment={deployment}", f"policy={policy}", f"env={env}"]
    if deployment == "azure":
        overrides.append("deployment.variant.resource=contoso")
    config = load_config(overrides)
    hooks = PluginHooks()
    _, validated = resolve_deployment(config, hooks)
    loaded = load_compiled(_compile(tmp_path, *overrides), hooks)
    assert loaded.deployment == validated
    assert type(loaded.deployment) is type(validated)
    assert loaded.pricing == config.pricing
    assert loaded.env == config.env


def test_a_serving_process_loads_neither_hydra_nor_pydantic(
    tmp_path: Path, emulator: Emulator
) -> None:
    path = _compile(
        tmp_path,
        "deployment=openai",
        f"deployment.variant.endpoint={emulator.url}/v1",
        "deployment.api_key.name=RAKKA_TEST_KEY",
    )
    code = (
        "import sys\n"
        "from rakka_runtime.runtime import Runtime\n"
        f"with Runtime.from_compiled({str(path)!r}) as runtime:\n"
        "    result = runtime.chat('hello')\n"
        "heavy = ('hydra', 'omegaconf', 'pydantic', 'pydantic_core', 'yaml', 'antlr4')\n"
        "print(result.finish_reason, [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"RAKKA_TEST_KEY": EMULATOR_KEY, "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(maxsplit=1) == ["stop", "[]\n"]


def test_an_edited_file_is_validated_in_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _compile(tmp_path, "deployment=local")
    data = json.loads(path.read_text())
    data["config"]["deployment"]["retry"]["max_retries"] = 7
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="rakka_runtime.config"):
        config = load_compiled(path, PluginHooks())
    assert "edited after it was compiled" in caplog.text
    # Validated, not rebuilt: the deployment is the raw mapping the runtime validates.
    assert isinstance(config.deployment, dict)
    with Runtime(config) as runtime:
        assert runtime.deployment.retry.max_retries == 7

    data["config"]["deployment"]["retry"]["max_retries"] = -1
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        Runtime.from_compiled(path)
    assert str(info.value).startswith("deployment.retry.max_retries: -1 is invalid")


def test_a_file_from_another_version_is_validated_in_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _compile(tmp_path, "deployment=local")
    data = json.loads(path.read_text())
    data["rakka_version"] = "0.0.1"
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="rakka_runtime.config"):
        config = load_compiled(path, PluginHooks())
    assert "compiled by rakka 0.0.1" in caplog.text
    assert isinstance(config.deployment, dict)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"format": "something-else"}', f"expected \"format\": '{FORMAT}'"),
        (json.dumps({"format": FORMAT, "config": {}}), 'needs a "config" object'),
    ],
)
def test_not_a_compiled_config(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_compiled(path, PluginHooks())
    assert info.value.path == str(path)
    assert message in info.value.message


@pytest.mark.parametrize(
    ("override", "path"),
    [
        (f"deployment.api_key={{from: inline, value: {CANARY}}}", "deployment.api_key"),
        (
            f"deployment.rate_limits.redis.url=redis://:{CANARY}@cache:6379/0",
            "deployment.rate_limits.redis.url",
        ),
    ],
)
def test_compiling_refuses_secret_values(override: str, path: str) -> None:
    config = load_config(["deployment=local", override])
    _, deployment = resolve_deployment(config, PluginHooks())
    with pytest.raises(ConfigError) as info:
        compile_config(config, deployment)
    assert info.value.path == path
    assert CANARY not in str(info.value)


def test_a_deployment_built_in_code_runs_without_validation(emulator: Emulator) -> None:
    deployment = OpenAIDeployment(
        provider="openai",
        model="gpt-4o-mini",
        variant=DirectVariant(endpoint=f"{emulator.url}/v1"),
        api_key=InlineSecret(value=Secret(EMULATOR_KEY)),
        retry=RetryPolicy(max_retries=1),
    )
    config = RakkaConfig(
        deployment=deployment, pricing=PricingTable(as_of="in code"), env=EnvConfig(name="dev")
    )
    with Runtime(config) as runtime:
        assert runtime.deployment is deployment
        assert runtime.chat("hi").text


def test_a_deployment_object_must_be_the_providers_class() -> None:
    from rakka_runtime.config import DeploymentConfig

    config = RakkaConfig(
        deployment=DeploymentConfig(provider="openai", model="m"),
        pricing=PricingTable(as_of="x"),
        env=EnvConfig(name="dev"),
    )
    with pytest.raises(ConfigError, match="is not a OpenAIDeployment"):
        Runtime(config)


def test_plain_round_trip_keeps_secret_references() -> None:
    config = load_config(["deployment=openai", "deployment.api_key.name=K"])
    _, deployment = resolve_deployment(config, PluginHooks())
    plain: dict[str, Any] = to_plain(deployment)
    assert plain["api_key"] == {"from": "env", "name": "K"}
    assert from_plain(OpenAIDeployment, plain) == deployment


def test_a_compiled_config_for_a_provider_not_installed_names_the_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _compile(tmp_path, "deployment=local")
    monkeypatch.setenv("RAKKA_DISABLE_PLUGINS", "openai")
    with pytest.raises(ConfigError) as info:
        Runtime.from_compiled(path)
    assert info.value.path == "deployment.provider"
    assert "'openai' is not a registered provider kind" in info.value.message
