"""Provider kinds, filled by the ``rakka_register_providers`` hook.

Config names a provider kind (``deployment.provider``); the registry maps it to the
config class (a :class:`DeploymentConfig` dataclass) the deployment node is validated
into and the factory that builds its codec (:mod:`rakka_runtime.provider`). Kinds are
looked up here rather than through Hydra's ``_target_``, so a config file can never make
the runtime import arbitrary code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig
    from rakka_runtime.provider import ProviderCodec, ProviderContext


ConfigT = TypeVar("ConfigT", bound="DeploymentConfig")

CodecFactory = Callable[[Any, "ProviderContext"], "ProviderCodec"]
"""``factory(deployment, context) -> codec`` (see :mod:`rakka_runtime.provider`)."""


@dataclass(frozen=True, slots=True)
class ProviderKind:
    kind: str
    config_model: type[DeploymentConfig]
    factory: CodecFactory
    plugin: str  # who registered it, for `rakka plugins`


class DuplicateProviderError(ValueError):
    pass


# Provider kinds whose package is known, for the install hint of a missing one.
KNOWN_PROVIDER_PACKAGES: dict[str, str] = {
    "openai": "rakka-provider-openai",
    "azure": "rakka-provider-openai",
    "anthropic": "rakka-provider-anthropic",
}


class ProviderRegistry:
    def __init__(self) -> None:
        self._kinds: dict[str, ProviderKind] = {}
        self._current_plugin = "?"

    def register(
        self,
        kind: str,
        config_model: type[ConfigT],
        factory: Callable[[ConfigT, ProviderContext], ProviderCodec],
    ) -> None:
        """Add a provider kind; a kind registered twice is an error, not a silent override."""
        if kind in self._kinds:
            raise DuplicateProviderError(
                f"provider kind {kind!r} is registered by both "
                f"{self._kinds[kind].plugin!r} and {self._current_plugin!r}"
            )
        self._kinds[kind] = ProviderKind(kind, config_model, factory, self._current_plugin)

    def get(self, kind: str) -> ProviderKind | None:
        return self._kinds.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def unknown_kind_message(self, kind: object) -> str:
        """Why ``kind`` is not available, and how to get it (for a config error)."""
        known = ", ".join(self.kinds()) or "none installed"
        package = KNOWN_PROVIDER_PACKAGES.get(str(kind))
        if package is not None:
            hint = f"install it with `pip install {package}`"
        else:
            hint = (
                "install the package of the plugin that provides it (it registers under the "
                "'rakka' entry-point group; `rakka plugins` lists what is installed)"
            )
        from rakka_runtime.plugins import DISABLE_ENV, disabled_from_env

        if disabled_from_env():
            hint += f", and check {DISABLE_ENV}, which blocks some plugins here"
        return f"{kind!r} is not a registered provider kind ({known}); {hint}"

    def __iter__(self) -> Iterator[ProviderKind]:
        return iter(sorted(self._kinds.values(), key=lambda p: p.kind))

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds
