"""Validate composed config with pydantic: the one config module that imports it.

The schema's classes are plain dataclasses (:mod:`rakka_runtime.config.schema`); a
``TypeAdapter`` per class, built on first use, validates a mapping into them. Every failure
becomes one :class:`~rakka_runtime.errors.ConfigError` whose lines name the dotted path,
the value and what is accepted (:mod:`rakka_runtime.config.errors`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from rakka_runtime.config.errors import config_error, from_validation_error, validation_problems
from rakka_runtime.config.schema import (
    POLICY_KEYS,
    DeploymentConfig,
    RakkaConfig,
    routing_problems,
)

__all__ = ["validate", "validate_config", "validate_deployment", "validate_deployment_core"]

_T = TypeVar("_T")
_Deployment = TypeVar("_Deployment", bound=DeploymentConfig)


_adapters: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    # Building one costs milliseconds: once per class (a race builds it twice, harmlessly).
    adapter = _adapters.get(cls)
    if adapter is None:
        adapter = _adapters[cls] = TypeAdapter(cls)
    return adapter


def validate(cls: type[_T], data: Any, *, prefix: str = "") -> _T:
    """Validate ``data`` (a mapping, or an instance) into the config class ``cls``.

    :param prefix: the dotted path of ``data`` in the whole config, for error lines.
    :raises ConfigError: one line per problem.
    """
    error = None
    try:
        result: _T = _adapter(cls).validate_python(data)
        return result
    except ValidationError as exc:
        error = from_validation_error(exc, model=cls, prefix=prefix)
    # Raised outside the except block so the ValidationError, whose inputs may include a
    # secret, is not kept as __context__.
    raise error


def validate_deployment(
    raw: Mapping[str, Any], model: type[_Deployment], *, prefix: str = "deployment"
) -> _Deployment:
    """Validate the composed ``deployment`` mapping (or a named one, at ``prefix``) with a
    provider's model.

    :raises ConfigError: one line per problem, each path starting with ``prefix``.
    """
    return validate(model, dict(raw), prefix=prefix)


def _core_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    names = {item.name for item in dataclasses.fields(DeploymentConfig)}
    return {key: value for key, value in raw.items() if key in names}


def validate_deployment_core(raw: Mapping[str, Any] | DeploymentConfig) -> DeploymentConfig:
    """Validate the keys of ``deployment`` that the core knows, ignoring provider keys
    (a deployment object, already built, is returned as it is).

    Lets a config be checked before any provider is loaded; unknown keys are caught
    later by :func:`validate_deployment` with the provider's model.
    """
    if isinstance(raw, DeploymentConfig):
        return raw
    return validate_deployment(_core_keys(raw), DeploymentConfig)


# Keys that appear at the top level when a group file lacks its "# @package" header.
_PACKAGE_HINTS = {
    "policy": "files in policy/ must start with '# @package deployment'",
    "pricing.pricing": "files in pricing/ must start with '# @package _global_'",
    "env.env": "files in env/ must start with '# @package _global_'",
}


def validate_config(raw: Mapping[str, Any]) -> RakkaConfig:
    """Validate a composed config: the top level, and the deployment keys the core knows.

    Provider-specific deployment keys are checked later, by :func:`validate_deployment`
    with the provider's model.

    :raises ConfigError: one line per problem.
    """
    problems = [(path, hint) for path, hint in _PACKAGE_HINTS.items() if _has_path(raw, path)]
    hinted = {path for path, _ in problems}
    raw = with_named_deployments(raw)
    config: RakkaConfig | None = None
    try:
        config = _adapter(RakkaConfig).validate_python(dict(raw))
    except ValidationError as exc:
        problems += [p for p in validation_problems(exc, model=RakkaConfig) if p[0] not in hinted]
    checked: list[tuple[str, Any]] = [("deployment", raw.get("deployment"))]
    named = raw.get("deployments")
    if isinstance(named, Mapping):
        checked += [(f"deployments.{name}", value) for name, value in named.items()]
    for prefix, deployment in checked:
        if isinstance(deployment, Mapping):
            try:
                _adapter(DeploymentConfig).validate_python(_core_keys(deployment))
            except ValidationError as exc:
                problems += validation_problems(exc, model=DeploymentConfig, prefix=prefix)
    if config is not None and not problems:
        problems += routing_problems(config)
    # Raised outside the except blocks: a ValidationError keeps its inputs (secrets too)
    # and must not ride along as __context__.
    if problems or config is None:
        raise config_error(problems or [("", "invalid configuration")])
    return config


def with_named_deployments(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """``raw`` with each named deployment completed: its ``name`` from its key, and the
    policy keys of ``deployment`` (the policy group, env overlays) as its defaults."""
    named = raw.get("deployments")
    if not isinstance(named, Mapping) or not named:
        return raw
    base = raw.get("deployment")
    defaults = (
        {key: base[key] for key in POLICY_KEYS if key in base} if isinstance(base, Mapping) else {}
    )
    completed: dict[str, Any] = {}
    for name, value in named.items():
        if isinstance(value, Mapping):
            merged = _merged(defaults, value)
            merged.setdefault("name", name)
            value = merged
        completed[str(name)] = value
    return {**raw, "deployments": completed}


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        below = out.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            out[key] = _merged(below, value)
        else:
            out[key] = value
    return out


def _has_path(raw: Mapping[str, Any], dotted: str) -> bool:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
