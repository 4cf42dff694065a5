"""Secret references written wrong, or carrying a credential of their own, never print
(issue 13, item 8): a near miss of a built-in source is an error, a malformed source is
an error, and everything under a reference but what locates the secret is masked by
``rakka config show`` and refused by ``rakka config compile``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rakka_runtime.config.compiled import compile_config
from rakka_runtime.config.loader import dump_config_yaml, load_config
from rakka_runtime.config.schema import PluginSecret
from rakka_runtime.errors import ConfigError
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.runtime import resolve_deployment

CANARY = "canary-" + "5e3c0a9d71f24b8e"
RAKKA = str(Path(sys.executable).parent / "rakka")


class Vault:
    """A secret-source plugin (never asked here: nothing is resolved)."""

    @hookimpl
    def rakka_secret_source(self, ref: PluginSecret) -> str | None:
        return None


def vault_hooks() -> PluginHooks:
    return PluginHooks(make_plugin_manager(extra_plugins=[("vault", Vault())]))


def rakka(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RAKKA, *args], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )


@pytest.mark.parametrize("source", ["inlin", "inlnie", "Inline", "ENV", "flie", "files", "envv"])
def test_a_near_miss_of_a_builtin_source_is_an_error_that_hides_the_value(source: str) -> None:
    override = f"+deployment.api_key={{from: {source}, value: {CANARY}, name: {CANARY}}}"
    with pytest.raises(ConfigError) as info:
        load_config(["deployment=openai", "~deployment.api_key", override])
    assert info.value.path.startswith("deployment.api_key")
    assert "did you mean" in str(info.value)
    assert CANARY not in str(info.value)


@pytest.mark.parametrize("source", ["vault kv", "../x", "$(id)"])
def test_a_malformed_source_is_an_error(source: str) -> None:
    override = f"+deployment.api_key={{from: '{source}', value: {CANARY}}}"
    with pytest.raises(ConfigError) as info:
        load_config(["deployment=openai", "~deployment.api_key", override])
    assert "malformed secret source" in str(info.value)
    assert CANARY not in str(info.value)


def test_config_show_and_compile_from_the_cli(tmp_path: Path) -> None:
    typo = f"+deployment.api_key={{from: inlin, value: {CANARY}}}"
    out = tmp_path / "rakka.json"
    for args in (
        ("config", "show", "deployment=openai", "~deployment.api_key", typo),
        ("config", "compile", "deployment=openai", "~deployment.api_key", typo, "-o", str(out)),
    ):
        done = rakka(*args)
        assert done.returncode == 2, done.stderr
        assert CANARY not in done.stdout + done.stderr
        assert "did you mean 'inline'" in done.stderr
    assert not out.exists()


def test_everything_under_a_plugin_reference_but_its_locators_is_masked() -> None:
    override = (
        "+deployment.api_key={from: vault, path: kv/openai, field: key, "
        f"secret_id: {CANARY}, role: {{id: {CANARY}}}, options: [{CANARY}]}}"
    )
    config = load_config(["deployment=openai", "~deployment.api_key", override])
    shown = dump_config_yaml(config)
    assert CANARY not in shown
    assert "path: kv/openai" in shown and "field: key" in shown and "from: vault" in shown
    _, deployment = resolve_deployment(config, vault_hooks())
    with pytest.raises(ConfigError) as info:
        compile_config(config, deployment)
    assert info.value.path.startswith("deployment.api_key")
    assert CANARY not in str(info.value)


def test_a_plugin_reference_of_locators_only_still_compiles() -> None:
    config = load_config(
        [
            "deployment=openai",
            "~deployment.api_key",
            "+deployment.api_key={from: vault, path: kv/openai, field: key}",
        ]
    )
    _, deployment = resolve_deployment(config, vault_hooks())
    compiled = compile_config(config, deployment)
    assert compiled["config"]["deployment"]["api_key"] == {
        "from": "vault",
        "path": "kv/openai",
        "field": "key",
    }
    assert json.dumps(compiled)


def test_a_plugin_source_with_no_secret_source_plugin_installed_is_unknown() -> None:
    config = load_config(
        [
            "deployment=openai",
            "~deployment.api_key",
            f"+deployment.api_key={{from: vault, path: kv/openai, secret_id: {CANARY}}}",
        ]
    )
    with pytest.raises(ConfigError) as info:
        resolve_deployment(config, PluginHooks())
    assert info.value.path == "deployment.api_key"
    assert "unknown secret source 'vault'" in str(info.value)
    assert CANARY not in str(info.value)
