"""A plugin adds a secret source (a vault, say) through ``rakka_secret_source``, end to end:
config reference → plugin → request headers → re-read after a 401."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from rakka_provider_openai.emulator import Emulator
from rakka_runtime import hookimpl
from rakka_runtime.config.loader import dump_config_yaml, load_config
from rakka_runtime.config.schema import PluginSecret
from rakka_runtime.errors import ConfigError
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.runtime import Runtime

FIRST = "sk-vault-first-000000000000001"
SECOND = "sk-vault-second-00000000000002"


class Vault:
    """Answers ``{from: vault, path: P}`` from a dict; any other source is not its own."""

    def __init__(self, data: dict[str, str]) -> None:
        self.data = data
        self.refs: list[PluginSecret] = []

    @hookimpl
    def rakka_secret_source(self, ref: PluginSecret) -> str | None:
        if ref.source != "vault":
            return None
        self.refs.append(ref)
        return self.data[ref.params["path"]]


def vault_runtime(url: str, vault: Vault, source: str = "vault") -> Runtime:
    hooks = PluginHooks(make_plugin_manager(extra_plugins=[("vault", vault)]))
    return Runtime(load_config(overrides(url, source)), hooks=hooks)


def overrides(url: str, source: str = "vault") -> list[str]:
    return [
        "deployment=openai",
        f"deployment.variant.endpoint={url}/v1",
        "~deployment.api_key",
        f"+deployment.api_key={{from: {source}, path: kv/openai, field: key}}",
    ]


def test_a_vault_plugin_supplies_the_key_and_is_asked_again_after_a_401(tmp_path: Path) -> None:
    vault = Vault({"kv/openai": FIRST})
    accepted = tmp_path / "accepted"
    accepted.write_text(FIRST, encoding="utf-8")
    with Emulator(key_file=accepted, key_grace=0.0) as emu, vault_runtime(emu.url, vault) as rt:
        assert rt.chat("hello").attempts == 1
        assert vault.refs[0].params == {"path": "kv/openai", "field": "key"}
        # The key rotates in the vault; nothing tells the runtime (no watcher for plugins).
        vault.data["kv/openai"] = SECOND
        tmp = tmp_path / "accepted.tmp"
        tmp.write_text(SECOND, encoding="utf-8")
        os.replace(tmp, accepted)
        result = rt.chat("after rotation")
        assert result.attempts == 2
        assert len(vault.refs) == 2  # asked once more, after the 401
        assert rt.session is not None and rt.session.swaps == 1
        assert rt.session.watcher is None


def test_config_show_prints_the_reference_not_the_value() -> None:
    shown = dump_config_yaml(load_config(overrides("http://127.0.0.1:9")))
    assert "from: vault" in shown and "path: kv/openai" in shown
    assert FIRST not in shown


def test_a_source_no_plugin_knows_is_a_config_error() -> None:
    vault = Vault({"kv/openai": FIRST})
    with pytest.raises(ConfigError) as info:
        vault_runtime("http://127.0.0.1:9", vault, source="nowhere")
    assert str(info.value) == "deployment.api_key: no plugin resolves secret source 'nowhere'"


def test_a_failing_plugin_is_reported_without_the_value() -> None:
    class Broken:
        @hookimpl
        def rakka_secret_source(self, ref: PluginSecret) -> Any:
            raise PermissionError("vault token expired")

    hooks = PluginHooks(make_plugin_manager(extra_plugins=[("broken", Broken())]))
    with pytest.raises(ConfigError, match="secret source 'vault' failed: PermissionError"):
        Runtime(load_config(overrides("http://127.0.0.1:9")), hooks=hooks)
