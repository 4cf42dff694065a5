from __future__ import annotations

import copy
import logging
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from rakka_runtime.config import (
    DeploymentConfig,
    EnvSecret,
    FileSecret,
    InlineSecret,
    PluginSecret,
    dump_config_yaml,
    load_config,
    validate,
    validate_deployment,
    validate_deployment_core,
)
from rakka_runtime.errors import ConfigError
from rakka_runtime.secrets import Secret, resolve_secret

CANARY = "sk-canary-7f3a9c41d2e8"


def _chain_text(exc: BaseException) -> str:
    """Everything an exception (and whatever it chains) could print."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


# --- Secret ----------------------------------------------------------------------------


def test_secret_never_prints_its_value() -> None:
    secret = Secret(CANARY)
    assert secret.reveal() == CANARY
    assert repr(secret) == "Secret('**********')"
    printed = (str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}", "%s" % (secret,))  # noqa: UP031
    for text in printed:
        assert CANARY not in text
    assert CANARY not in repr([secret, {"k": secret}])


def test_secret_is_immutable_and_comparable() -> None:
    secret = Secret(CANARY)
    with pytest.raises(AttributeError):
        secret._value = "other"
    assert secret == Secret(CANARY)
    assert secret != Secret("other")
    assert hash(secret) == hash(Secret(CANARY))
    assert copy.deepcopy(secret) is secret
    assert pickle.loads(pickle.dumps(secret)) == secret


# --- resolution ------------------------------------------------------------------------


def test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAKKA_TEST_KEY", f"  {CANARY}\n")
    assert resolve_secret(EnvSecret(name="RAKKA_TEST_KEY")).reveal() == CANARY


def test_env_missing_names_variable_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAKKA_TEST_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        resolve_secret(EnvSecret(name="RAKKA_TEST_KEY"), path="deployment.api_key")
    assert str(info.value) == "deployment.api_key: environment variable RAKKA_TEST_KEY is not set"


def test_env_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAKKA_TEST_KEY", "  ")
    with pytest.raises(ConfigError, match="RAKKA_TEST_KEY is empty"):
        resolve_secret(EnvSecret(name="RAKKA_TEST_KEY"))


def test_file_is_utf8_and_stripped(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text(f"\n  {CANARY}  \r\n", encoding="utf-8")
    assert resolve_secret(FileSecret(path=key)).reveal() == CANARY
    key.write_bytes("\ufeffsk-ünïcode\n".encode())  # a BOM from a Windows editor
    assert resolve_secret(FileSecret(path=key)).reveal() == "sk-ünïcode"


def test_file_missing_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as info:
        resolve_secret(FileSecret(path=missing), path="deployment.api_key")
    assert info.value.path == "deployment.api_key"
    assert str(missing) in info.value.message
    assert "does not exist" in info.value.message


def test_file_empty_and_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text(" \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is empty"):
        resolve_secret(FileSecret(path=empty))
    with pytest.raises(ConfigError, match="is a directory"):
        resolve_secret(FileSecret(path=tmp_path))


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads anything")
def test_file_unreadable(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(CANARY, encoding="utf-8")
    key.chmod(0)
    with pytest.raises(ConfigError, match="not readable") as info:
        resolve_secret(FileSecret(path=key))
    assert CANARY not in _chain_text(info.value)


def test_file_not_utf8_never_shows_content(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(CANARY.encode() + b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        resolve_secret(FileSecret(path=key))
    assert CANARY not in _chain_text(info.value)
    assert info.value.__context__ is None


def test_inline_warns_without_the_value(caplog: pytest.LogCaptureFixture) -> None:
    ref = validate(InlineSecret, {"from": "inline", "value": CANARY})
    with caplog.at_level(logging.DEBUG, logger="rakka_runtime.secrets"):
        assert resolve_secret(ref, path="deployment.api_key").reveal() == CANARY
    warnings = [r for r in caplog.records if r.name == "rakka_runtime.secrets"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "tests only" in warnings[0].getMessage()
    assert "deployment.api_key" in warnings[0].getMessage()
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in repr(record.args)
    assert CANARY not in caplog.text


def test_plugin_resolver_is_called_with_the_ref() -> None:
    seen: list[PluginSecret] = []

    def resolver(ref: PluginSecret) -> str | None:
        seen.append(ref)
        return f" {CANARY} " if ref.source == "vault" else None

    ref = validate(PluginSecret, {"from": "vault", "path": "kv/openai"})
    assert resolve_secret(ref, plugin_resolver=resolver).reveal() == CANARY
    assert seen == [ref]
    assert seen[0].params == {"path": "kv/openai"}


def test_plugin_unresolved() -> None:
    ref = PluginSecret(source="vault")
    with pytest.raises(ConfigError) as info:
        resolve_secret(ref, path="deployment.api_key", plugin_resolver=lambda ref: None)
    assert str(info.value) == "deployment.api_key: no plugin resolves secret source 'vault'"
    with pytest.raises(ConfigError, match="no plugin resolves secret source 'vault'"):
        resolve_secret(ref)


def test_plugin_failure_becomes_config_error() -> None:
    def broken(ref: PluginSecret) -> str | None:
        raise RuntimeError("vault sealed")

    with pytest.raises(ConfigError, match="secret source 'vault' failed: RuntimeError: vault"):
        resolve_secret(PluginSecret(source="vault"), plugin_resolver=broken)


# --- the canary never leaks --------------------------------------------------------------


def test_canary_absent_from_config_reprs_and_dump() -> None:
    config = load_config([f"deployment.api_key={{from:inline,value:{CANARY}}}"])
    # The raw mapping holds it (it is the config); every printout of a model must not.
    assert isinstance(config.deployment, dict)
    deployment = validate_deployment_core(config.deployment)
    assert isinstance(deployment.api_key, InlineSecret)
    assert deployment.api_key.value.reveal() == CANARY
    for text in (repr(deployment), str(deployment), repr(deployment.api_key)):
        assert CANARY not in text
    for dumped in (dump_config_yaml(config), dump_config_yaml(deployment)):
        assert CANARY not in dumped
        assert "value: '**********'" in dumped
        assert "from: inline" in dumped


def test_dump_shows_references_not_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    dumped = dump_config_yaml(load_config(["deployment=openai"]))
    assert "api_key:\n    from: env\n    name: OPENAI_API_KEY\n" in dumped
    assert CANARY not in dumped


def test_dump_masks_a_key_pasted_as_plain_string() -> None:
    dumped = dump_config_yaml({"deployment": {"api_key": CANARY, "model": "gpt-4o"}})
    assert CANARY not in dumped
    assert "model: gpt-4o" in dumped


@pytest.mark.parametrize(
    "api_key",
    [
        CANARY,
        {"from": "inline", "valeu": CANARY},
        {"from": "inline", "value": CANARY, "extra": CANARY},
        {"from": "inline", "value": [CANARY]},
        {"from": "env", "name": 7, "note": CANARY},
    ],
)
def test_canary_absent_from_validation_errors(api_key: object) -> None:
    with pytest.raises(ConfigError) as info:
        validate_deployment(
            {"provider": "openai", "model": "m", "api_key": api_key}, DeploymentConfig
        )
    assert info.value.path.startswith("deployment.api_key")
    assert CANARY not in _chain_text(info.value)


def test_canary_absent_from_compose_errors() -> None:
    # The failing node's parent (holding the inline key) rides on OmegaConf's exception.
    with pytest.raises(ConfigError) as info:
        load_config([f"deployment.api_key={{from:inline,value:{CANARY}}}", "deployment.nope=1"])
    assert CANARY not in _chain_text(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(
            [f"deployment.api_key={{from:inline,value:{CANARY}}}", "deployment.retry.jitter=x"]
        )
    assert CANARY not in _chain_text(info.value)


def test_provider_secret_fields_are_not_echoed_in_errors() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Provider(DeploymentConfig):
        ad_token: int | None = None

    with pytest.raises(ConfigError) as info:
        validate_deployment({"provider": "x", "model": "m", "ad_token": CANARY}, Provider)
    assert info.value.path == "deployment.ad_token"
    assert CANARY not in _chain_text(info.value)
