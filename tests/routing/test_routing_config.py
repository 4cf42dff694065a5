"""Routed configs: composed from the deployments group, checked, shown, compiled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rakka_runtime.config.compiled import compile_config, load_compiled, write_compiled
from rakka_runtime.config.loader import load_config
from rakka_runtime.errors import ConfigError
from rakka_runtime.plugins import PluginHooks
from rakka_runtime.runtime import Runtime, resolve_deployment, resolve_deployments

RAKKA = str(Path(sys.executable).with_name("rakka"))
PAIR = ["deployments=[local_a,local_b]", "routing=local_pair"]


def rakka(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RAKKA, *args], capture_output=True, text=True, timeout=60, check=False)


def test_named_deployments_inherit_policy_keys_and_env_overlays() -> None:
    config = load_config([*PAIR, "policy=batch", "env=prod"])
    hooks = PluginHooks()
    resolved = resolve_deployments(config, hooks)
    assert list(resolved) == ["local_a", "local_b"]
    _, a = resolved["local_a"]
    assert a.name == "local_a" and a.embedded_emulator
    # env=prod writes deployment.rate_limits and timeouts: every named deployment gets them.
    assert a.rate_limits.requests_per_minute == 3000
    assert a.timeouts.deadline == 120.0
    # A key a deployment sets itself wins; an override reaches one deployment.
    config = load_config([*PAIR, "+deployments.local_b.timeouts.deadline=5s"])
    _, b = resolve_deployments(config, hooks)["local_b"]
    assert b.timeouts.deadline == 5.0


def test_a_single_deployment_config_is_unchanged() -> None:
    config = load_config([])
    assert not config.routed and config.deployments == {} and config.model_groups == {}
    with Runtime(config) as runtime:
        assert not runtime.routed and list(runtime.cores) == ["local"]
        # As before: the model is passed to the one deployment, not routed.
        result = runtime.chat("hi", model="gpt-4o")
        assert result.deployment is None and result.deployment_attempts == []


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        (
            ["deployments=[local_a]", "routing=local_pair"],
            "model_groups.gpt-4o-mini.deployments[1]",
        ),
        (
            [*PAIR, "+model_groups.gpt-4o-mini.context_fallback=big"],
            "model_groups.gpt-4o-mini.context_fallback",
        ),
        (
            [*PAIR, "+model_groups.gpt-4o-mini.fallbacks={timeout: elsewhere}"],
            "model_groups.gpt-4o-mini.fallbacks.timeout",
        ),
        ([*PAIR, "+deployments.local_a.name=other"], "deployments.local_a.name"),
        ([*PAIR, "+default_model=nothing"], "default_model"),
    ],
)
def test_a_group_naming_something_unknown_fails_with_its_path(
    overrides: list[str], path: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides)
    assert caught.value.path == path


def test_an_unknown_strategy_names_its_path() -> None:
    config = load_config([*PAIR, "model_groups.gpt-4o-mini.strategy=fastest"])
    with pytest.raises(ConfigError) as caught:
        Runtime(config)
    assert caught.value.path == "model_groups.gpt-4o-mini.strategy"


def test_config_show_and_exit_2() -> None:
    shown = rakka("config", "show", *PAIR)
    assert shown.returncode == 0, shown.stderr
    assert "deployments:\n  local_a:\n" in shown.stdout
    assert "model_groups:\n  gpt-4o-mini:\n    deployments:\n    - local_a\n    - local_b" in (
        shown.stdout
    )
    bad = rakka("config", "show", "deployments=[local_a]", "routing=local_pair")
    assert bad.returncode == 2
    assert "model_groups.gpt-4o-mini.deployments[1]" in bad.stderr


def test_chat_health_and_compiled_over_the_cli(tmp_path: Path) -> None:
    out = rakka("chat", "hello", "-m", "local_b", "--json", *PAIR)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["deployment"] == "local_b"
    assert [a["deployment"] for a in body["deployment_attempts"]] == ["local_b"]
    health = rakka("health", "--json", *PAIR)
    assert health.returncode == 0, health.stderr
    rows = [json.loads(line) for line in health.stdout.splitlines()]
    assert [(r["deployment"], r["breaker"], r["groups"]) for r in rows] == [
        ("local_a", "closed", ["gpt-4o-mini"]),
        ("local_b", "closed", ["gpt-4o-mini"]),
    ]
    compiled = tmp_path / "routed.json"
    made = rakka("config", "compile", *PAIR, "-o", str(compiled))
    assert made.returncode == 0, made.stderr
    out = rakka("chat", "hello", "-m", "gpt-4o-mini", "--compiled", str(compiled))
    assert out.returncode == 0, out.stderr
    assert "[local_a · " in out.stderr


def test_compiled_round_trip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = load_config([*PAIR, "model_groups.gpt-4o-mini.strategy=weighted"])
    hooks = PluginHooks()
    _, deployment = resolve_deployment(config, hooks)
    named = {name: item for name, (_, item) in resolve_deployments(config, hooks).items()}
    path = tmp_path / "rakka.json"
    write_compiled(compile_config(config, deployment, named), path)
    loaded = load_compiled(path, hooks)
    assert "validating it in full" not in caplog.text
    assert loaded.deployments == named
    assert loaded.model_groups == config.model_groups
    assert loaded.default_model is None


@pytest.mark.parametrize("driver", ["async", "thread"])
def test_batch_lines_name_a_group_or_a_deployment(tmp_path: Path, driver: str) -> None:
    lines = [
        {"custom_id": "g", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a"}]},
        {"custom_id": "b", "model": "local_b", "messages": [{"role": "user", "content": "b"}]},
        {"custom_id": "x", "model": "nope", "messages": [{"role": "user", "content": "c"}]},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    output = tmp_path / "out.jsonl"
    out = rakka("batch", str(source), "-o", str(output), "--driver", driver, *PAIR)
    assert out.returncode in (0, 1), out.stderr
    records = {r["custom_id"]: r for r in map(json.loads, output.read_text().splitlines())}
    assert records["g"]["deployment"] == "local_a"
    assert records["b"]["deployment"] == "local_b"
    tried = records["g"]["deployment_attempts"]
    assert [(a["deployment"], a["kind"]) for a in tried] == [("local_a", "ok")]
    assert records["g"]["cost_usd"] == pytest.approx(tried[0]["cost_usd"])
    assert records["x"]["error"]["code"] == "invalid_request"


def test_a_missing_secret_names_the_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAKKA_NOPE_16", raising=False)
    config = load_config([*PAIR, "deployments.local_b.api_key={from: env, name: RAKKA_NOPE_16}"])
    with pytest.raises(ConfigError) as caught:
        Runtime(config)
    assert caught.value.path == "deployments.local_b.api_key"
