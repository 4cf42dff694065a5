"""From a deployment's config to how its session gets (and re-gets) a credential.

Two kinds (``deployment.auth.kind``): ``api_key``, a secret reference resolved by
:func:`rakka_runtime.secrets.resolve_secret` and watched when it is a file; and ``entra``,
a bearer token from a plugin's ``rakka_token_provider``. The session calls the resolver
built here whenever it needs the credential again; it never looks at config itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rakka_runtime.config.schema import DeploymentConfig, EntraAuth, FileSecret, PluginSecret
from rakka_runtime.errors import ConfigError
from rakka_runtime.plugins import PluginHooks
from rakka_runtime.secrets import Secret, resolve_secret
from rakka_runtime.tokens import fetch_token

__all__ = ["check_secret_sources", "credential_resolver", "watched_files"]

CredentialResolver = Callable[[], Secret | None]


def credential_resolver(
    deployment: DeploymentConfig, hooks: PluginHooks, where: str = "deployment"
) -> CredentialResolver:
    """A callable that reads the deployment's credential afresh each time it is called
    (``where``: the deployment's dotted path, for error messages).

    :raises ConfigError: when ``auth`` names a token provider no plugin offers.
    """
    auth = deployment.auth
    if isinstance(auth, EntraAuth):
        path = f"{where}.auth.token_provider"
        provider = hooks.token_provider(auth.token_provider)
        if provider is None:
            raise ConfigError(path, f"no plugin provides token provider {auth.token_provider!r}")
        name, lead = auth.token_provider, auth.refresh_before

        def fetch() -> Secret | None:
            return fetch_token(provider, name=name, refresh_before=lead, path=path)

        return fetch

    ref = deployment.api_key
    if ref is None:
        return lambda: None

    def resolve() -> Secret | None:
        return resolve_secret(ref, path=f"{where}.api_key", plugin_resolver=hooks.resolve_secret)

    return resolve


def check_secret_sources(deployment: DeploymentConfig, hooks: PluginHooks) -> None:
    """A plugin secret source is unknown for certain when no installed plugin offers any
    (``rakka_secret_source``): say so now (``config show``/``compile`` included), not at
    the first request. Which sources a plugin serves is only known by asking it, at start.

    :raises ConfigError: naming ``deployment.api_key`` and the source, never a parameter.
    """
    ref = deployment.api_key
    if isinstance(ref, PluginSecret) and not hooks.offers_secret_sources():
        raise ConfigError(
            "deployment.api_key",
            f"unknown secret source {ref.source!r}: it is not built in (env, file, inline) "
            "and no installed plugin provides secret sources",
        )


def watched_files(deployment: DeploymentConfig) -> list[Path]:
    """The files whose changes must reach the session: the key file, if watching is on."""
    ref = deployment.api_key
    if isinstance(ref, FileSecret) and deployment.secret_watch.enabled:
        return [ref.path]
    return []
