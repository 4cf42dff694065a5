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
from rakka_runtime.config.schema import DeploymentConfig, RakkaConfig

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


def validate_deployment(raw: Mapping[str, Any], model: type[_Deployment]) -> _Deployment:
    """Validate the composed ``deployment`` mapping with a provider's model.

    :raises ConfigError: one line per problem, each path starting with ``deployment.``.
    """
    return validate(model, dict(raw), prefix="deployment")


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
    config: RakkaConfig | None = None
    try:
        config = _adapter(RakkaConfig).validate_python(dict(raw))
    except ValidationError as exc:
        problems += [p for p in validation_problems(exc, model=RakkaConfig) if p[0] not in hinted]
    deployment = raw.get("deployment")
    if isinstance(deployment, Mapping):
        try:
            _adapter(DeploymentConfig).validate_python(_core_keys(deployment))
        except ValidationError as exc:
            problems += validation_problems(exc, model=DeploymentConfig, prefix="deployment")
    # Raised outside the except blocks: a ValidationError keeps its inputs (secrets too)
    # and must not ride along as __context__.
    if problems or config is None:
        raise config_error(problems or [("", "invalid configuration")])
    return config


def _has_path(raw: Mapping[str, Any], dotted: str) -> bool:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
