"""Every hook a rakka plugin can implement.

A plugin is any module or object with functions named like these, marked with
:data:`rakka_runtime.hookimpl`. Built-in plugins (the policies, metrics) are registered
exactly like third-party ones found through the ``rakka`` entry-point group, so anything
a built-in does, an external plugin can do too. The rest of the code calls hooks only
through :class:`rakka_runtime.plugins.PluginHooks`, never ``pm.hook`` directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from rakka_runtime.config.schema import DeploymentConfig, PluginSecret
    from rakka_runtime.core.policy import Policy
    from rakka_runtime.errors import InferenceError
    from rakka_runtime.plugins import PluginHooks
    from rakka_runtime.registry import ProviderRegistry
    from rakka_runtime.routing.strategies import StrategyFactory
    from rakka_runtime.session import SessionSnapshot
    from rakka_runtime.tokens import TokenProvider
    from rakka_runtime.types import ChatResult, DeploymentAttempt, ExecuteBatch

PROJECT = "rakka"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def rakka_register_providers(registry: ProviderRegistry) -> None:
    """Add provider kinds (``openai``, ``azure``, ...) to the registry.

    Call ``registry.register(kind, config_model, factory)``; registering a kind that is
    already taken raises, so two plugins cannot silently shadow each other.

    :param registry: the registry to add provider kinds to.
    """


@hookspec
def rakka_request_policy(deployment: DeploymentConfig, hooks: PluginHooks) -> Policy | None:
    """Return a policy applied to every call to ``deployment``, or ``None``.

    Called once per deployment when its policy chain is built, never per request. A policy
    is a set of decisions with no I/O and no blocking wait (see
    :mod:`rakka_runtime.core.policy`): it says where it sits (``scope`` "request": once per
    logical request, around retries; "attempt": once per attempt) and its ``order``, and
    answers ``enter`` with a ticket, a ``Wait`` or a refusal. The thread driver and the
    asyncio driver apply the same object, so a policy is written once.

    :param deployment: the validated deployment the chain is built for.
    :param hooks: the typed hook facade, for policies that fire events
        (e.g. ``hooks.breaker_state_changed``).
    :return: a :class:`rakka_runtime.core.policy.Policy`, or ``None`` to stay out.
    """


@hookspec(firstresult=True)
def rakka_secret_source(ref: PluginSecret) -> str | None:
    """Resolve a secret reference whose ``from`` is not built in (e.g. a vault).

    The first plugin returning a string wins.

    :param ref: the reference as written in config (``ref.source`` and ``ref.params``).
    :return: the secret value, or ``None`` when this plugin does not handle ``ref.source``.
    """


@hookspec(firstresult=True)
def rakka_token_provider(name: str) -> TokenProvider | None:
    """Return the bearer-token source registered as ``name`` (e.g. an Azure Entra ID
    credential), for deployments configured with ``auth: {kind: entra, token_provider: name}``.

    Called once, when a runtime opens the deployment's session; the first plugin returning
    a callable wins. The runtime calls that callable (with no arguments, from any thread)
    for the first token and again ahead of each expiry; it must return
    ``(token, expires_at)``, ``expires_at`` in Unix seconds (as ``azure.identity``'s
    ``AccessToken(token, expires_on)``, which unpacks the same way). It may block: requests
    keep using the current token while a renewal runs. An exception is logged (without the
    token) and the renewal is tried again later.

    :param name: the ``token_provider`` named in config.
    :return: a callable returning ``(token, expires_at)``, or ``None`` when ``name`` is not
        this plugin's.
    """


@hookspec
def rakka_session_swapped(deployment: str, old: SessionSnapshot, new: SessionSnapshot) -> None:
    """A deployment's session snapshot was replaced (for example after key rotation).

    :param deployment: the deployment's name.
    :param old: the snapshot requests started before the swap keep using.
    :param new: the snapshot every later request uses.
    """


@hookspec
def rakka_breaker_state_changed(
    deployment: str, old_state: str, new_state: str, retry_at: float | None
) -> None:
    """A deployment's circuit breaker changed state.

    :param deployment: the deployment's name.
    :param old_state: ``closed``, ``open`` or ``half_open``.
    :param new_state: ``closed``, ``open`` or ``half_open``.
    :param retry_at: when an open circuit lets a probe through (``time.monotonic()``).
    """


@hookspec
def rakka_request_finished(
    deployment: str,
    request: ExecuteBatch,
    result: ChatResult | None,
    error: InferenceError | None,
) -> None:
    """A logical request ended, successfully or not, after all its attempts.

    :param deployment: the deployment's name.
    :param request: the request as sent.
    :param result: the aggregate when it succeeded, else ``None``.
    :param error: the final classified error when it failed, else ``None``.
    """


@hookspec
def rakka_route_finished(
    group: str,
    attempts: Sequence[DeploymentAttempt],
    result: ChatResult | None,
    error: InferenceError | None,
) -> None:
    """A routed request ended (after ``rakka_request_finished`` of each deployment run).

    :param group: the model group (or deployment) the request named.
    :param attempts: every deployment tried, in order, with its own group.
    :param result: the aggregate when it succeeded, else ``None``.
    :param error: the final error when it failed, else ``None``.
    """


@hookspec
def rakka_routing_strategy() -> Mapping[str, StrategyFactory] | None:
    """Register routing strategies a model group can name in ``strategy``.

    :return: ``{name: factory}``; ``factory()`` makes one strategy object per group, whose
        ``choose(candidates)`` returns the index of the
        :class:`~rakka_runtime.routing.health.Candidate` to try (a pure decision: no I/O).
        A name already taken (built-in or another plugin's) is a config error.
    """


@hookspec
def rakka_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``rakka`` command line.

    :param cli: the top-level click group; call ``cli.add_command(...)``.
    """


def hook_names() -> list[str]:
    """Names of every hook specification, sorted (for docs and tests)."""
    return sorted(name for name in globals() if name.startswith("rakka_"))
