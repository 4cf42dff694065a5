"""Configuration: the schema, its pydantic validation, durations, Hydra composition of
``conf/``, and compiled configs.

Importing this package imports nothing heavy: names resolve on first use (so
``rakka --help`` and modules that only need ``parse_duration`` never load pydantic's
schema or Hydra).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rakka_runtime.config.compiled import compile_config, load_compiled
    from rakka_runtime.config.durations import (
        Duration,
        PositiveDuration,
        format_duration,
        parse_duration,
    )
    from rakka_runtime.config.errors import config_error
    from rakka_runtime.config.loader import (
        builtin_conf_dir,
        compose_config,
        dump_config_yaml,
        load_config,
    )
    from rakka_runtime.config.plain import from_plain, to_plain
    from rakka_runtime.config.schema import (
        ApiKeyAuth,
        AuthConfig,
        BudgetPolicy,
        CircuitBreakerPolicy,
        ConfigModel,
        DeploymentConfig,
        EntraAuth,
        EnvConfig,
        EnvSecret,
        FileSecret,
        InlineSecret,
        PluginSecret,
        PriceOverride,
        PriceRow,
        PricingTable,
        RakkaConfig,
        RateLimitPolicy,
        RetryPolicy,
        SecretRef,
        SecretWatch,
        Timeouts,
    )
    from rakka_runtime.config.validation import (
        validate,
        validate_config,
        validate_deployment,
        validate_deployment_core,
    )

_EXPORTS: dict[str, str] = {
    "ApiKeyAuth": "rakka_runtime.config.schema",
    "AuthConfig": "rakka_runtime.config.schema",
    "BudgetPolicy": "rakka_runtime.config.schema",
    "CircuitBreakerPolicy": "rakka_runtime.config.schema",
    "ConfigModel": "rakka_runtime.config.schema",
    "DeploymentConfig": "rakka_runtime.config.schema",
    "Duration": "rakka_runtime.config.durations",
    "EntraAuth": "rakka_runtime.config.schema",
    "EnvConfig": "rakka_runtime.config.schema",
    "EnvSecret": "rakka_runtime.config.schema",
    "FileSecret": "rakka_runtime.config.schema",
    "InlineSecret": "rakka_runtime.config.schema",
    "PluginSecret": "rakka_runtime.config.schema",
    "PositiveDuration": "rakka_runtime.config.durations",
    "PriceOverride": "rakka_runtime.config.schema",
    "PriceRow": "rakka_runtime.config.schema",
    "PricingTable": "rakka_runtime.config.schema",
    "RakkaConfig": "rakka_runtime.config.schema",
    "RateLimitPolicy": "rakka_runtime.config.schema",
    "RetryPolicy": "rakka_runtime.config.schema",
    "SecretRef": "rakka_runtime.config.schema",
    "SecretWatch": "rakka_runtime.config.schema",
    "Timeouts": "rakka_runtime.config.schema",
    "builtin_conf_dir": "rakka_runtime.config.loader",
    "compose_config": "rakka_runtime.config.loader",
    "config_error": "rakka_runtime.config.errors",
    "dump_config_yaml": "rakka_runtime.config.loader",
    "format_duration": "rakka_runtime.config.durations",
    "load_config": "rakka_runtime.config.loader",
    "parse_duration": "rakka_runtime.config.durations",
    "validate": "rakka_runtime.config.validation",
    "validate_config": "rakka_runtime.config.validation",
    "validate_deployment": "rakka_runtime.config.validation",
    "validate_deployment_core": "rakka_runtime.config.validation",
    "from_plain": "rakka_runtime.config.plain",
    "to_plain": "rakka_runtime.config.plain",
    "compile_config": "rakka_runtime.config.compiled",
    "load_compiled": "rakka_runtime.config.compiled",
}

__all__ = [
    "ApiKeyAuth",
    "AuthConfig",
    "BudgetPolicy",
    "CircuitBreakerPolicy",
    "ConfigModel",
    "DeploymentConfig",
    "Duration",
    "EntraAuth",
    "EnvConfig",
    "EnvSecret",
    "FileSecret",
    "InlineSecret",
    "PluginSecret",
    "PositiveDuration",
    "PriceOverride",
    "PriceRow",
    "PricingTable",
    "RakkaConfig",
    "RateLimitPolicy",
    "RetryPolicy",
    "SecretRef",
    "SecretWatch",
    "Timeouts",
    "builtin_conf_dir",
    "compile_config",
    "compose_config",
    "config_error",
    "dump_config_yaml",
    "format_duration",
    "from_plain",
    "load_compiled",
    "load_config",
    "parse_duration",
    "to_plain",
    "validate",
    "validate_config",
    "validate_deployment",
    "validate_deployment_core",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rakka_runtime.config' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
