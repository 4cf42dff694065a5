"""Configuration: the pydantic schema, durations, and Hydra composition of ``conf/``.

Importing this package does not import Hydra or OmegaConf; composing does.
"""

from __future__ import annotations

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
    validate_config,
)
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
    validate_deployment,
    validate_deployment_core,
)

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
    "compose_config",
    "config_error",
    "dump_config_yaml",
    "format_duration",
    "load_config",
    "parse_duration",
    "validate_config",
    "validate_deployment",
    "validate_deployment_core",
]
