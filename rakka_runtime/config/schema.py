"""The configuration schema: frozen pydantic models that forbid unknown keys.

The core knows policies, pricing and the provider-neutral part of a deployment. A
provider adds its own fields (``variant``, ``organization``, ...) by subclassing
:class:`DeploymentConfig`; that is why :class:`RakkaConfig` keeps ``deployment`` as a raw
mapping and :func:`validate_deployment` validates it later, with the provider's model
looked up in the registry (never by importing what a config names).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PlainValidator,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from rakka_runtime.config.durations import Duration, PositiveDuration, format_duration
from rakka_runtime.config.errors import (
    SECRET_REF_ERROR,
    SECRET_TAG_PREFIX,
    from_validation_error,
)

__all__ = [
    "ApiKeyAuth",
    "AuthConfig",
    "BreakerRedisBackend",
    "BudgetPolicy",
    "CircuitBreakerPolicy",
    "ConfigModel",
    "DeploymentConfig",
    "EntraAuth",
    "EnvConfig",
    "EnvSecret",
    "FileSecret",
    "InlineSecret",
    "PluginSecret",
    "PriceOverride",
    "PriceRow",
    "PricingTable",
    "RakkaConfig",
    "RateLimitPolicy",
    "RedisBackend",
    "RetryPolicy",
    "SecretRef",
    "SecretWatch",
    "Timeouts",
    "validate_deployment",
    "validate_deployment_core",
]


class ConfigModel(BaseModel):
    """Base of every config model: immutable once validated, and a misspelt key is an
    error rather than a silently ignored setting. Providers derive their models from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- Secret references ------------------------------------------------------------------
# A reference says where a secret lives; rakka_runtime.secrets turns it into a value. The
# key is ``from`` (a Python keyword), so the field is ``source`` with alias ``from``.

_BUILTIN_SOURCES = ("env", "file", "inline")


class _SecretRefModel(ConfigModel):
    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class EnvSecret(_SecretRefModel):
    """``{from: env, name: OPENAI_API_KEY}``: read from an environment variable."""

    source: Literal["env"] = Field(default="env", alias="from")
    name: str = Field(min_length=1)


class FileSecret(_SecretRefModel):
    """``{from: file, path: /run/secrets/key}``: one file per secret, UTF-8, stripped."""

    source: Literal["file"] = Field(default="file", alias="from")
    path: Path


class InlineSecret(_SecretRefModel):
    """``{from: inline, value: ...}``: the value in the config itself; for tests only."""

    source: Literal["inline"] = Field(default="inline", alias="from")
    value: SecretStr


class PluginSecret(_SecretRefModel):
    """Any other ``from``: kept for a ``rakka_secret_source`` plugin to resolve.

    In config every key but ``from`` is collected into ``params``
    (``{from: vault, path: kv/openai, key: api_key}`` → ``params={"path": ..., "key": ...}``)
    and it serialises back to that flat form.
    """

    source: str = Field(alias="from", min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_params(cls, data: Any) -> Any:
        # Only the config form (keyed by "from") is flat; Python callers pass params=.
        if isinstance(data, Mapping) and "from" in data:
            return {"from": data["from"], "params": {k: v for k, v in data.items() if k != "from"}}
        return data

    @field_validator("source")
    @classmethod
    def _not_builtin(cls, value: str) -> str:
        if value in _BUILTIN_SOURCES:
            raise PydanticCustomError("config", f"{value!r} is a built-in source, not a plugin one")
        return value

    @model_serializer
    def _flat(self) -> dict[str, Any]:
        return {"from": self.source, **self.params}


def _secret_tag(value: Any) -> str | None:
    if isinstance(value, PluginSecret):
        return f"{SECRET_TAG_PREFIX}plugin"
    if isinstance(value, BaseModel):
        source = getattr(value, "source", None)
    elif isinstance(value, Mapping):
        source = value.get("from", value.get("source"))
    else:
        return None
    if not isinstance(source, str) or not source:
        return None
    return f"{SECRET_TAG_PREFIX}{source if source in _BUILTIN_SOURCES else 'plugin'}"


SecretRef = Annotated[
    Annotated[EnvSecret, Tag(f"{SECRET_TAG_PREFIX}env")]
    | Annotated[FileSecret, Tag(f"{SECRET_TAG_PREFIX}file")]
    | Annotated[InlineSecret, Tag(f"{SECRET_TAG_PREFIX}inline")]
    | Annotated[PluginSecret, Tag(f"{SECRET_TAG_PREFIX}plugin")],
    Discriminator(
        _secret_tag,
        custom_error_type=SECRET_REF_ERROR,
        custom_error_message=(
            "expected a secret reference: {from: env, name: VAR}, {from: file, path: PATH}, "
            "{from: inline, value: ...} or {from: <plugin source>, ...}"
        ),
    ),
]
"""Where a secret lives, discriminated by its ``from`` key."""


# --- Policies ---------------------------------------------------------------------------


class RetryPolicy(ConfigModel):
    """Exponential backoff with jitter; the server's Retry-After wins when respected."""

    enabled: bool = True
    max_retries: NonNegativeInt = 3
    initial_backoff: Duration = 1.0
    max_backoff: Duration = 60.0
    backoff_multiplier: float = Field(default=2.0, ge=1.0)
    jitter: Literal["none", "equal", "full"] = "equal"
    respect_retry_after: bool = True
    # A longer Retry-After fails the call rather than parking it; None: no cap.
    max_retry_after: Duration | None = 60.0
    # Total time across all attempts; None: bounded by max_retries only.
    deadline: PositiveDuration | None = None

    @model_validator(mode="after")
    def _backoff_ordered(self) -> RetryPolicy:
        if self.max_backoff < self.initial_backoff:
            raise PydanticCustomError(
                "config",
                "max_backoff ({max}) is shorter than initial_backoff ({initial})",
                {
                    "max": format_duration(self.max_backoff),
                    "initial": format_duration(self.initial_backoff),
                },
            )
        return self


class RedisBackend(ConfigModel):
    """Where a policy's shared state lives when ``backend: redis``, and what happens when
    that Redis cannot be reached.

    Processes share state when they use the same Redis, ``key_prefix`` and deployment
    ``name``. ``on_backend_failure: local`` keeps serving with this process's own limits
    or breaker (warned once), ``reject`` fails calls (``backpressure`` for rate limits,
    ``circuit_open`` for the breaker); either way Redis is tried again at most every
    ``retry_interval``. The socket timeouts bound how long one Redis call may delay a
    request. ``lease`` is how long a concurrency slot or half-open probe of a process that
    died stays taken (live processes renew theirs).
    """

    url: str = Field(default="redis://127.0.0.1:6379/0", pattern=r"^(rediss?|unix)://")
    key_prefix: str = Field(default="rakka", min_length=1)
    socket_timeout: PositiveDuration = 0.25
    socket_connect_timeout: PositiveDuration = 0.25
    retry_interval: PositiveDuration = 1.0
    on_backend_failure: Literal["local", "reject"] = "local"
    lease: PositiveDuration = 30.0


class BreakerRedisBackend(RedisBackend):
    """:class:`RedisBackend` for the breaker: ``state_cache`` is how long a process may act
    on the circuit state it last read (at most 50 ms, so a trip reaches every process
    within that plus one round trip)."""

    state_cache: Duration = Field(default=0.025, le=0.05)


class CircuitBreakerPolicy(ConfigModel):
    """Closed → open after ``failure_threshold`` consecutive failures (or, when ``window``
    and ``failure_rate`` are set, a failure rate over the window once ``min_calls`` calls
    were seen); open for ``open_duration``; then up to ``half_open_max_probes`` probes.
    ``backend: redis`` shares the state (not the failure counts) with every process using
    the same Redis: one process's trip opens the circuit for all."""

    enabled: bool = True
    failure_threshold: PositiveInt = 10
    open_duration: PositiveDuration = 30.0
    half_open_max_probes: PositiveInt = 1
    window: PositiveDuration | None = None
    min_calls: PositiveInt = 20
    failure_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    backend: Literal["local", "redis"] = "local"
    redis: BreakerRedisBackend = Field(default_factory=BreakerRedisBackend)


class RateLimitPolicy(ConfigModel):
    """Client-side limits; ``None`` leaves a dimension to the server's ratelimit headers.
    ``backend: redis`` shares the buckets, concurrency slots and 429 pause with every
    process using the same Redis (one quota for the fleet)."""

    enabled: bool = True
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    concurrent_requests: PositiveInt | None = None
    on_capacity_exhausted: Literal["queue", "reject"] = "queue"
    backend: Literal["local", "redis"] = "local"
    redis: RedisBackend = Field(default_factory=RedisBackend)


class Timeouts(ConfigModel):
    """Per-phase limits of one attempt; ``deadline`` bounds the whole call."""

    connect: PositiveDuration = 5.0
    request_timeout: PositiveDuration = 30.0
    # Longest silence between two reads (stream chunks).
    read_timeout: PositiveDuration = 10.0
    deadline: PositiveDuration | None = None


class BudgetPolicy(ConfigModel):
    """Spend limits over sliding windows of actual cost; ``None`` leaves a window unlimited.

    ``on_exceeded``: ``reject`` fails with ``budget_exceeded`` before sending when the
    window's spend plus the request's estimate would pass the limit; ``warn`` logs once
    per window and sends; ``throttle`` waits until enough spend ages out of the window
    (within the request's deadline, else ``budget_exceeded``).
    """

    max_spend_per_hour_usd: PositiveFloat | None = None
    max_spend_per_day_usd: PositiveFloat | None = None
    on_exceeded: Literal["reject", "warn", "throttle"] = "reject"

    @property
    def limited(self) -> bool:
        return self.max_spend_per_hour_usd is not None or self.max_spend_per_day_usd is not None


class PriceOverride(ConfigModel):
    """``deployment.pricing``: fields replacing the row of the deployment's priced model
    (USD per million tokens; unset fields keep the table's value)."""

    input: NonNegativeFloat | None = None
    output: NonNegativeFloat | None = None
    cached_input: NonNegativeFloat | None = None


# --- Credentials ------------------------------------------------------------------------


class SecretWatch(ConfigModel):
    """Reload a ``{from: file}`` key when the file changes (a watchdog observer on its
    directory); ``debounce`` lets a burst of filesystem events settle into one re-read."""

    enabled: bool = True
    debounce: Duration = 0.1


class ApiKeyAuth(ConfigModel):
    """``auth: {kind: api_key}`` (the default): send ``api_key`` as the provider expects."""

    kind: Literal["api_key"] = "api_key"


class EntraAuth(ConfigModel):
    """``auth: {kind: entra, token_provider: NAME}``: a bearer token from the callable a
    ``rakka_token_provider`` plugin registers under NAME, renewed ``refresh_before`` its
    expiry (or halfway through its lifetime, for tokens shorter than twice that)."""

    kind: Literal["entra"] = "entra"
    token_provider: str = Field(min_length=1)
    refresh_before: PositiveDuration = 300.0


AuthConfig = Annotated[ApiKeyAuth | EntraAuth, Field(discriminator="kind")]
"""How a deployment authenticates, discriminated by ``kind``."""


# --- Deployment -------------------------------------------------------------------------


class DeploymentConfig(ConfigModel):
    """The provider-neutral part of a deployment. Providers subclass it."""

    name: str = Field(default="default", min_length=1)
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    # The model whose price applies when ``model`` is a deployment name or an alias.
    base_model: str | None = None
    api_key: SecretRef | None = None
    auth: AuthConfig = Field(default_factory=ApiKeyAuth)
    secret_watch: SecretWatch = Field(default_factory=SecretWatch)
    embedded_emulator: bool = False
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    circuit_breaker: CircuitBreakerPolicy = Field(default_factory=CircuitBreakerPolicy)
    rate_limits: RateLimitPolicy = Field(default_factory=RateLimitPolicy)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    budget: BudgetPolicy = Field(default_factory=BudgetPolicy)
    # Overrides the price row of `priced_model` for this deployment (negotiated rates).
    pricing: PriceOverride | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> DeploymentConfig:
        if isinstance(self.auth, EntraAuth) and self.api_key is not None:
            raise PydanticCustomError(
                "config",
                "auth.kind=entra sends a bearer token instead of api_key; set api_key: null",
            )
        return self

    @property
    def priced_model(self) -> str:
        """The model name to look up in the price table."""
        return self.base_model or self.model


_Deployment = TypeVar("_Deployment", bound=DeploymentConfig)


def validate_deployment(raw: Mapping[str, Any], model: type[_Deployment]) -> _Deployment:
    """Validate the composed ``deployment`` mapping with a provider's model.

    :raises ConfigError: one line per problem, each path starting with ``deployment.``.
    """
    error = None
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        error = from_validation_error(exc, model=model, prefix="deployment")
    # Raised outside the except block so the ValidationError, whose inputs may include a
    # secret, is not kept as __context__.
    raise error


def validate_deployment_core(raw: Mapping[str, Any]) -> DeploymentConfig:
    """Validate the keys of ``deployment`` that the core knows, ignoring provider keys.

    Lets a config be checked before any provider is loaded; unknown keys are caught
    later by :func:`validate_deployment` with the provider's model.
    """
    known = {key: value for key, value in raw.items() if key in DeploymentConfig.model_fields}
    return validate_deployment(known, DeploymentConfig)


# --- Pricing and environment ------------------------------------------------------------


class PriceRow(ConfigModel):
    """USD (or the table's currency) per million tokens. Cached prompt tokens are billed
    at ``input`` when ``cached_input`` is absent."""

    input: NonNegativeFloat
    output: NonNegativeFloat
    cached_input: NonNegativeFloat | None = None
    # Where the rate was checked (a URL or "negotiated"), shown by `rakka pricing`.
    source: str | None = None


def _as_of(value: Any) -> date | str:
    # An ISO date becomes a date; other text ("2025-08", "list prices, August") is kept,
    # so one date-or-text field reports one error rather than one per union member.
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return value.strip()
    raise PydanticCustomError("config", f"{value!r} is not a date or a label (use YYYY-MM-DD)")


class PricingTable(ConfigModel):
    """Prices per model. ``as_of`` says when they were copied, so a stale table shows."""

    as_of: Annotated[date | str, PlainValidator(_as_of, json_schema_input_type=date | str)]
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    models: dict[str, PriceRow] = Field(default_factory=dict)
    # Price files in LiteLLM's model_prices_and_context_window.json format, read when a
    # runtime starts; rows in `models` win over them.
    sources: list[Path] = Field(default_factory=list)


class EnvConfig(ConfigModel):
    name: str = Field(min_length=1)


class RakkaConfig(ConfigModel):
    """The whole composed configuration.

    ``deployment`` stays a raw mapping (treat it as read-only): only the provider knows
    its full schema; see :func:`validate_deployment`.
    """

    deployment: dict[str, Any]
    pricing: PricingTable
    env: EnvConfig
