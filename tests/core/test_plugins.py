"""The plugin registry: hookspecs documented, entry points, blocking, duplicates."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import rakka_runtime
from rakka_runtime import hookimpl, hookspecs
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.registry import DuplicateProviderError, ProviderRegistry


def test_every_hook_is_documented_with_each_parameter() -> None:
    names = hookspecs.hook_names()
    assert "rakka_register_providers" in names and "rakka_request_policy" in names
    for name in names:
        spec = getattr(hookspecs, name)
        doc = inspect.getdoc(spec) or ""
        assert len(doc.splitlines()[0]) > 10, f"{name} has no summary line"
        for param in inspect.signature(spec).parameters:
            assert f":param {param}:" in doc, f"{name} does not document {param}"


def test_provider_plugin_is_loaded_through_its_entry_point() -> None:
    hooks = PluginHooks(make_plugin_manager(disabled=()))
    # Ours are present; a third-party provider installed beside them must not fail this.
    assert {"anthropic", "azure", "openai"} <= set(hooks.providers.kinds())
    info = {i.name: i for i in hooks.describe()}
    assert "openai" in info
    assert info["openai"].source.startswith("entry point (rakka-provider-openai")
    assert "rakka_register_providers" in info["openai"].hooks
    ours = ("anthropic", "azure", "openai")
    assert {p.kind: p.plugin for p in hooks.providers if p.kind in ours} == {
        "anthropic": "anthropic",
        "azure": "openai",
        "openai": "openai",
    }


def test_disabled_plugin_is_blocked_before_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAKKA_DISABLE_PLUGINS", " openai , nothing-else")
    hooks = PluginHooks()
    assert hooks.providers.kinds() == ["anthropic"]  # the other provider plugin still loads
    assert "openai" not in {i.name for i in hooks.describe()}


class _Shadow:
    @hookimpl
    def rakka_register_providers(self, registry: ProviderRegistry) -> None:
        registry.register("openai", object, lambda d, c: None)  # type: ignore[arg-type]


def test_a_second_plugin_cannot_shadow_a_provider_kind() -> None:
    hooks = PluginHooks(make_plugin_manager(disabled=(), extra_plugins=[("shadow", _Shadow())]))
    with pytest.raises(DuplicateProviderError, match="'openai' is registered by both"):
        _ = hooks.providers


def test_public_api_all_matches_exports() -> None:
    public = {
        name
        for name in dir(rakka_runtime)
        if not name.startswith("_")
        and not inspect.ismodule(getattr(rakka_runtime, name))
        and name not in {"annotations", "TYPE_CHECKING"}
    }
    public |= {"AsyncRuntime", "Runtime", "execute_batch", "__version__"}
    assert sorted(rakka_runtime.__all__) == rakka_runtime.__all__
    assert set(rakka_runtime.__all__) == public
    assert rakka_runtime.Runtime.__name__ == "Runtime"
    assert callable(rakka_runtime.execute_batch)


def test_import_is_lazy() -> None:
    code = (
        "import sys, rakka_runtime; "
        "print(','.join(m for m in ('hydra', 'omegaconf', 'watchdog', 'rakka_provider_openai',"
        " 'urllib3', 'pydantic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
