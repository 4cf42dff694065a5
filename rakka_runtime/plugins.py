"""The plugin manager and the typed facade the rest of the code calls hooks through.

Built-in plugins are listed as dotted module names and registered exactly as entry-point
plugins are; ``RAKKA_DISABLE_PLUGINS=name,...`` blocks any of them by name before
loading, so a blocked plugin's module is never imported.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from rakka_runtime import hookspecs
from rakka_runtime.registry import ProviderRegistry

if TYPE_CHECKING:
    import click

    from rakka_runtime.config.schema import DeploymentConfig, PluginSecret
    from rakka_runtime.core.policy import Policy
    from rakka_runtime.errors import InferenceError
    from rakka_runtime.routing.strategies import StrategyFactory
    from rakka_runtime.session import SessionSnapshot
    from rakka_runtime.tokens import TokenProvider
    from rakka_runtime.types import ChatResult, DeploymentAttempt, ExecuteBatch

ENTRY_POINT_GROUP = "rakka"
DISABLE_ENV = "RAKKA_DISABLE_PLUGINS"

# name -> "module" or "module:attribute"; registered in this order, each under its name.
# Each built-in policy is a plugin object on the system clock; tests block the name and
# register their own instance with a fake clock.
BUILTIN_PLUGINS: dict[str, str] = {
    "retry": "rakka_runtime.policies.retry:plugin",
    "circuit_breaker": "rakka_runtime.policies.breaker:plugin",
    "rate_limits": "rakka_runtime.policies.ratelimit:plugin",
    "budget": "rakka_runtime.policies.budget:plugin",
    "metrics": "rakka_runtime.metrics:plugin",
}


def _load(target: str) -> object:
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def disabled_from_env(environ: dict[str, str] | None = None) -> set[str]:
    raw = (os.environ if environ is None else environ).get(DISABLE_ENV, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def make_plugin_manager(
    *,
    disabled: Iterable[str] | None = None,
    extra_plugins: Iterable[tuple[str, object]] = (),
    builtins: bool = True,
) -> pluggy.PluginManager:
    """A manager with the hookspecs, the built-ins (unless ``builtins`` is false), the
    entry points and ``extra_plugins``."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in disabled_from_env() if disabled is None else set(disabled):
        pm.set_blocked(name)
    for name, module in BUILTIN_PLUGINS.items() if builtins else ():
        if not pm.is_blocked(name):
            pm.register(_load(module), name=name)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for name, plugin in extra_plugins:
        if not pm.is_blocked(name):
            pm.register(plugin, name=name)
    pm.check_pending()
    return pm


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    source: str  # "builtin", "entry point <dist>", or "registered"
    hooks: tuple[str, ...]


class PluginHooks:
    """Typed calls to every hook (as tox's plugin manager facade): no ``pm.hook`` elsewhere."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm if pm is not None else make_plugin_manager()
        self._registry: ProviderRegistry | None = None

    @property
    def providers(self) -> ProviderRegistry:
        if self._registry is None:
            registry = ProviderRegistry()
            for impl in self.pm.hook.rakka_register_providers.get_hookimpls():
                # Called one by one (not through pm.hook) so the registry knows who
                # registered each kind, for duplicate errors and `rakka plugins`.
                registry._current_plugin = impl.plugin_name
                impl.function(*[{"registry": registry}[arg] for arg in impl.argnames])
            registry._current_plugin = "?"
            self._registry = registry
        return self._registry

    def policies(self, deployment: DeploymentConfig) -> list[Policy]:
        found = self.pm.hook.rakka_request_policy(deployment=deployment, hooks=self)
        return [p for p in found if p is not None]

    def resolve_secret(self, ref: PluginSecret) -> str | None:
        value: str | None = self.pm.hook.rakka_secret_source(ref=ref)
        return value

    def offers_secret_sources(self) -> bool:
        """Whether any registered plugin implements ``rakka_secret_source``."""
        return bool(self.pm.hook.rakka_secret_source.get_hookimpls())

    def token_provider(self, name: str) -> TokenProvider | None:
        provider: TokenProvider | None = self.pm.hook.rakka_token_provider(name=name)
        return provider

    def session_swapped(self, deployment: str, old: SessionSnapshot, new: SessionSnapshot) -> None:
        self.pm.hook.rakka_session_swapped(deployment=deployment, old=old, new=new)

    def breaker_state_changed(
        self, deployment: str, old_state: str, new_state: str, retry_at: float | None
    ) -> None:
        self.pm.hook.rakka_breaker_state_changed(
            deployment=deployment, old_state=old_state, new_state=new_state, retry_at=retry_at
        )

    def request_finished(
        self,
        deployment: str,
        request: ExecuteBatch,
        result: ChatResult | None,
        error: InferenceError | None,
    ) -> None:
        caller = self.pm.hook.rakka_request_finished
        # Called once per request: with no implementation registered (none is built in),
        # pluggy's dispatch is skipped.
        if caller.get_hookimpls():
            caller(deployment=deployment, request=request, result=result, error=error)

    def route_finished(
        self,
        group: str,
        attempts: Sequence[DeploymentAttempt],
        result: ChatResult | None,
        error: InferenceError | None,
    ) -> None:
        self.pm.hook.rakka_route_finished(
            group=group, attempts=attempts, result=result, error=error
        )

    def routing_strategies(self) -> dict[str, StrategyFactory]:
        """Strategies plugins registered, by name (``rakka_routing_strategy``)."""
        from rakka_runtime.routing.router import strategies_of

        found = self.pm.hook.rakka_routing_strategy()
        return strategies_of([item for item in found if item])

    def register_commands(self, cli: click.Group) -> None:
        self.pm.hook.rakka_register_commands(cli=cli)

    def describe(self) -> list[PluginInfo]:
        """Every registered plugin with where it came from and the hooks it implements."""
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if name is None or plugin is None:
                continue
            hooks = tuple(sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()))
            dist: Any = dists.get(id(plugin))
            if name in BUILTIN_PLUGINS:
                source = "builtin"
            elif dist is not None:
                source = f"entry point ({dist.project_name} {dist.version})"
            else:
                source = "registered"
            infos.append(PluginInfo(name, source, hooks))
        return sorted(infos, key=lambda info: info.name)
