"""The configuration schema: frozen dataclasses that pydantic validates.

The core knows policies, pricing and the provider-neutral part of a deployment. A
provider adds its own fields (``variant``, ``organization``, ...) by subclassing
:class:`DeploymentConfig`; that is why :class:`RakkaConfig` keeps ``deployment`` as a raw
mapping and :func:`~rakka_runtime.config.validation.validate_deployment` validates it
later, with the provider's model looked up in the registry (never by importing what a
config names).

Why dataclasses, not pydantic models: importing this module must not import pydantic, so a
serving process can run from a compiled config (:mod:`rakka_runtime.config.compiled`)
without the ~12 MiB pydantic and its schemas cost (Hydra is not loaded either). pydantic
validates these classes all the same (:mod:`rakka_runtime.config.validation`): it takes
constraints from ``annotated_types`` in the annotations, aliases, patterns and
discriminators from ``field(metadata=...)`` (its documented reading of dataclass fields),
parse functions from :mod:`~rakka_runtime.config.markers`, and cross-field checks from
``__post_init__`` (a ``ValueError`` there becomes a validation error at that path).

Every class is ``@dataclass(frozen=True, slots=True, kw_only=True)`` and derives from
:class:`ConfigModel`, which forbids unknown keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from annotated_types import Ge, Gt, Interval, Le, MinLen

from rakka_runtime.config.checks import Number, RedisUrl
from rakka_runtime.config.durations import Duration, PositiveDuration, format_duration
from rakka_runtime.config.errors import SECRET_REF_ERROR, SECRET_TAG_PREFIX
from rakka_runtime.config.markers import ParseInstead
from rakka_runtime.secret_value import Secret

__all__ = [
    "PLUGIN_LOCATORS",
    "SECRET_MEMBERS",
    "URL_PASSWORD",
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
    "ModelGroup",
    "PluginSecret",
    "PriceOverride",
    "PriceRow",
    "PricingTable",
    "RakkaConfig",
    "RateLimitPolicy",
    "RedisBackend",
    "RetryPolicy",
    "SecretRef",
    "SecretRefUnion",
    "SecretWatch",
    "Timeouts",
    "near_builtin_source",
]

NonEmptyStr = Annotated[str, MinLen(1)]
# Number: a bool is not 1, and a float must be finite (a price of 1e309 is not a price).
NonNegativeInt = Annotated[int, Number, Ge(0)]
PositiveInt = Annotated[int, Number, Gt(0)]
NonNegativeFloat = Annotated[float, Number, Ge(0)]
PositiveFloat = Annotated[float, Number, Gt(0)]

MAX_CONCURRENT_REQUESTS = 10_000
"""Most ``rate_limits.concurrent_requests`` (the connection pool is sized from it)."""

URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^/@\s:]*:)[^/@\s]+@")
"""A URL's userinfo password (``redis://:pass@host``); group 1 is what precedes it."""


class ConfigModel:
    """Base of every config class: immutable, and a misspelt key is an error rather than a
    silently ignored setting. Providers derive their deployment classes from it (through
    :class:`DeploymentConfig`) with the same ``@dataclass(frozen=True, slots=True,
    kw_only=True)``."""

    __slots__ = ()
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}


# --- Secret references ------------------------------------------------------------------
# A reference says where a secret lives; rakka_runtime.secrets turns it into a value. The
# key is ``from`` (a Python keyword), so the field is ``source`` with alias ``from``.

_BUILTIN_SOURCES = ("env", "file", "inline")


class _SecretRefModel(ConfigModel):
    __slots__ = ()
    # Config writes ``from``; Python callers may pass ``source``.
    __pydantic_config__: ClassVar[dict[str, Any]] = {
        "extra": "forbid",
        "validate_by_name": True,
        "validate_by_alias": True,
    }


_FROM: dict[str, Any] = {"alias": "from"}


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvSecret(_SecretRefModel):
    """``{from: env, name: OPENAI_API_KEY}``: read from an environment variable."""

    source: Literal["env"] = field(default="env", metadata=_FROM)
    name: NonEmptyStr


@dataclass(frozen=True, slots=True, kw_only=True)
class FileSecret(_SecretRefModel):
    """``{from: file, path: /run/secrets/key}``: one file per secret, UTF-8, stripped."""

    source: Literal["file"] = field(default="file", metadata=_FROM)
    path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class InlineSecret(_SecretRefModel):
    """``{from: inline, value: ...}``: the value in the config itself; for tests only."""

    source: Literal["inline"] = field(default="inline", metadata=_FROM)
    value: Secret


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginSecret(_SecretRefModel):
    """Any other ``from``: kept for a ``rakka_secret_source`` plugin to resolve.

    In config every key but ``from`` is collected into ``params``
    (``{from: vault, path: kv/openai, key: api_key}`` → ``params={"path": ..., "key": ...}``)
    and it is written back in that flat form (:meth:`as_config`).
    """

    source: NonEmptyStr = field(metadata=_FROM)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source in _BUILTIN_SOURCES:
            raise ValueError(f"{self.source!r} is a built-in source, not a plugin one")
        near = near_builtin_source(self.source)
        if near is not None:
            # {from: inlin, value: K} would otherwise be a plugin reference that is printed
            # and compiled in clear: a near miss of a built-in is a typo, not a plugin.
            raise ValueError(
                f"unknown secret source {self.source!r}: did you mean {near!r}? "
                f"(built-in sources: {', '.join(_BUILTIN_SOURCES)}; a plugin source must "
                "not be one letter off a built-in one)"
            )
        if not _SOURCE_NAME.fullmatch(self.source):
            raise ValueError(
                f"malformed secret source {self.source!r}: expected a name of letters, "
                "digits, '_', '-' or '.' (a plugin's source)"
            )

    def as_config(self) -> dict[str, Any]:
        """The flat form config files use."""
        return {"from": self.source, **self.params}

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(collect_plugin_params, handler(source))


_SOURCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")

PLUGIN_LOCATORS = frozenset(
    {"name", "path", "field", "key", "mount", "version", "region", "project", "namespace"}
)
"""Parameters of a plugin secret reference that say where a secret lives, shown by
``rakka config show`` and written by ``config compile``; every other parameter may be a
credential for the secret store itself (``secret_id``, ``role_token``) and is masked, or
refused by compile."""


def near_builtin_source(source: str) -> str | None:
    """The built-in source ``source`` is a typo of (case, one letter added, dropped,
    changed or two swapped), or ``None``."""
    lowered = source.lower()
    for builtin in _BUILTIN_SOURCES:
        if lowered == builtin or _one_edit(lowered, builtin):
            return builtin
    return None


def _one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        i, j = diff[0], diff[-1]
        return len(diff) == 2 and j == i + 1 and a[i] == b[j] and a[j] == b[i]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


SECRET_MEMBERS: dict[str, type[_SecretRefModel]] = {
    f"{SECRET_TAG_PREFIX}env": EnvSecret,
    f"{SECRET_TAG_PREFIX}file": FileSecret,
    f"{SECRET_TAG_PREFIX}inline": InlineSecret,
    f"{SECRET_TAG_PREFIX}plugin": PluginSecret,
}


def _secret_tag(value: Any) -> str | None:
    if isinstance(value, _SecretRefModel):
        source = getattr(value, "source", None)
    elif isinstance(value, Mapping):
        source = value.get("from", value.get("source"))
    else:
        return None
    if not isinstance(source, str) or not source:
        return None
    return f"{SECRET_TAG_PREFIX}{source if source in _BUILTIN_SOURCES else 'plugin'}"


def secret_ref_class(value: Any) -> type[_SecretRefModel] | None:
    """Which reference class a config value (a mapping keyed by ``from``) or an instance is."""
    tag = _secret_tag(value)
    return None if tag is None else SECRET_MEMBERS[tag]


def collect_plugin_params(value: Any) -> Any:
    """A plugin reference's flat config form → ``{"from": ..., "params": {...}}``."""
    if secret_ref_class(value) is PluginSecret and isinstance(value, Mapping) and "from" in value:
        return {"from": value["from"], "params": {k: v for k, v in value.items() if k != "from"}}
    return value


class SecretRefUnion:
    """Validates a :data:`SecretRef`: a union tagged by ``from`` (``from=env`` ... in error
    locations, which the error formatter leaves out and never prints a value under)."""

    __slots__ = ()

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.tagged_union_schema(
            {tag: handler.generate_schema(member) for tag, member in SECRET_MEMBERS.items()},
            discriminator=_secret_tag,
            custom_error_type=SECRET_REF_ERROR,
            custom_error_message=(
                "expected a secret reference: {from: env, name: VAR}, {from: file, path: PATH}, "
                "{from: inline, value: ...} or {from: <plugin source>, ...}"
            ),
        )


SecretRef = Annotated[EnvSecret | FileSecret | InlineSecret | PluginSecret, SecretRefUnion()]
"""Where a secret lives, told apart by its ``from`` key."""


# --- Policies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy(ConfigModel):
    """Exponential backoff with jitter; the server's Retry-After wins when respected."""

    enabled: bool = True
    max_retries: NonNegativeInt = 3
    initial_backoff: Duration = 1.0
    max_backoff: Duration = 60.0
    backoff_multiplier: Annotated[float, Number, Ge(1.0)] = 2.0
    jitter: Literal["none", "equal", "full"] = "equal"
    respect_retry_after: bool = True
    # A longer Retry-After fails the call rather than parking it; None: no cap.
    max_retry_after: Duration | None = 60.0
    # Total time across all attempts; None: bounded by max_retries only.
    deadline: PositiveDuration | None = None

    def __post_init__(self) -> None:
        if self.max_backoff < self.initial_backoff:
            raise ValueError(
                f"max_backoff ({format_duration(self.max_backoff)}) is shorter than "
                f"initial_backoff ({format_duration(self.initial_backoff)})"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
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

    url: RedisUrl = field(
        default="redis://127.0.0.1:6379/0", metadata={"pattern": r"^(rediss?|unix)://"}
    )
    # A secret reference (env, file or inline), read again for every new connection, so a
    # rotated file is used once Redis drops the old connections. Better than a password in
    # the URL, which config dumps mask but compiled configs refuse.
    password: SecretRef | None = None
    key_prefix: NonEmptyStr = "rakka"
    socket_timeout: PositiveDuration = 0.25
    socket_connect_timeout: PositiveDuration = 0.25
    retry_interval: PositiveDuration = 1.0
    on_backend_failure: Literal["local", "reject"] = "local"
    lease: PositiveDuration = 30.0

    def __post_init__(self) -> None:
        if self.password is not None and URL_PASSWORD.match(self.url):
            raise ValueError("the URL carries a password and `password` is set: keep one")


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerRedisBackend(RedisBackend):
    """:class:`RedisBackend` for the breaker: ``state_cache`` is how long a process may act
    on the circuit state it last read (at most 50 ms, so a trip reaches every process
    within that plus one round trip)."""

    state_cache: Annotated[Duration, Le(0.05)] = 0.025


@dataclass(frozen=True, slots=True, kw_only=True)
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
    failure_rate: Annotated[float, Number, Interval(ge=0.0, le=1.0)] | None = None
    backend: Literal["local", "redis"] = "local"
    redis: BreakerRedisBackend = field(default_factory=BreakerRedisBackend)


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitPolicy(ConfigModel):
    """Client-side limits; ``None`` leaves a dimension to the server's ratelimit headers.
    ``backend: redis`` shares the buckets, concurrency slots and 429 pause with every
    process using the same Redis (one quota for the fleet)."""

    enabled: bool = True
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    concurrent_requests: Annotated[int, Number, Gt(0), Le(MAX_CONCURRENT_REQUESTS)] | None = None
    on_capacity_exhausted: Literal["queue", "reject"] = "queue"
    # The longest a provider's hint (a 429's retry-after) pauses the deployment.
    max_pause: PositiveDuration = 60.0
    backend: Literal["local", "redis"] = "local"
    redis: RedisBackend = field(default_factory=RedisBackend)


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts(ConfigModel):
    """Per-phase limits of one attempt; ``deadline`` bounds the whole call."""

    connect: PositiveDuration = 5.0
    request_timeout: PositiveDuration = 30.0
    # Longest silence between two reads (stream chunks).
    read_timeout: PositiveDuration = 10.0
    # The whole request, attempts and waits included. Finite by default (as the official
    # SDK's 10 minutes): a server trickling bytes must not hold a request for ever.
    deadline: PositiveDuration | None = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseLimits(ConfigModel):
    """Bounds on what one response may make the client hold, counted after decoding;
    far above any real answer. Past one, the attempt fails with ``protocol``."""

    max_body_bytes: PositiveInt = 64 * 1024 * 1024
    # One server-sent event (or one line that never ends) of a stream.
    max_event_bytes: PositiveInt = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
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


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceOverride(ConfigModel):
    """``deployment.pricing``: fields replacing the row of the deployment's priced model
    (USD per million tokens; unset fields keep the table's value)."""

    input: NonNegativeFloat | None = None
    output: NonNegativeFloat | None = None
    cached_input: NonNegativeFloat | None = None
    cache_write_input: NonNegativeFloat | None = None


# --- Credentials ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretWatch(ConfigModel):
    """Reload a ``{from: file}`` key when the file changes (a watchdog observer on its
    directory); ``debounce`` lets a burst of filesystem events settle into one re-read."""

    enabled: bool = True
    debounce: Duration = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyAuth(ConfigModel):
    """``auth: {kind: api_key}`` (the default): send ``api_key`` as the provider expects."""

    kind: Literal["api_key"] = "api_key"


@dataclass(frozen=True, slots=True, kw_only=True)
class EntraAuth(ConfigModel):
    """``auth: {kind: entra, token_provider: NAME}``: a bearer token from the callable a
    ``rakka_token_provider`` plugin registers under NAME, renewed ``refresh_before`` its
    expiry (or halfway through its lifetime, for tokens shorter than twice that)."""

    kind: Literal["entra"] = "entra"
    token_provider: NonEmptyStr
    refresh_before: PositiveDuration = 300.0


AuthConfig = ApiKeyAuth | EntraAuth
"""How a deployment authenticates, told apart by ``kind`` (fields of this type say
``metadata={"discriminator": "kind"}``)."""


# --- Deployment -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentConfig(ConfigModel):
    """The provider-neutral part of a deployment. Providers subclass it."""

    name: NonEmptyStr = "default"
    provider: NonEmptyStr
    model: NonEmptyStr
    # The model whose price applies when ``model`` is a deployment name or an alias.
    base_model: str | None = None
    api_key: SecretRef | None = None
    auth: AuthConfig = field(default_factory=ApiKeyAuth, metadata={"discriminator": "kind"})
    secret_watch: SecretWatch = field(default_factory=SecretWatch)
    embedded_emulator: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    circuit_breaker: CircuitBreakerPolicy = field(default_factory=CircuitBreakerPolicy)
    rate_limits: RateLimitPolicy = field(default_factory=RateLimitPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: ResponseLimits = field(default_factory=ResponseLimits)
    budget: BudgetPolicy = field(default_factory=BudgetPolicy)
    # Overrides the price row of `priced_model` for this deployment (negotiated rates).
    pricing: PriceOverride | None = None

    def __post_init__(self) -> None:
        if isinstance(self.auth, EntraAuth) and self.api_key is not None:
            raise ValueError(
                "auth.kind=entra sends a bearer token instead of api_key; set api_key: null"
            )

    @property
    def priced_model(self) -> str:
        """The model name to look up in the price table."""
        return self.base_model or self.model

    @property
    def price_namespace(self) -> str | None:
        """A prefix of price rows that price this deployment instead of the plain rows
        (``azure/data_zone``: an Azure Data Zone deployment); None for list prices.
        Providers whose prices depend on how a deployment is hosted override it."""
        return None


# --- Pricing and environment ------------------------------------------------------------


def _as_of_or_none(value: Any) -> date | str | None:
    return None if value is None else _as_of(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceRow(ConfigModel):
    """USD (or the table's currency) per million tokens. Cached prompt tokens are billed
    at ``input`` when ``cached_input`` is absent, and so are prompt-cache writes when
    ``cache_write_input`` is absent."""

    input: NonNegativeFloat
    output: NonNegativeFloat
    cached_input: NonNegativeFloat | None = None
    # Where the rate was checked (a URL or "negotiated"), shown by `rakka pricing`.
    source: str | None = None
    cache_write_input: NonNegativeFloat | None = None
    # When the rate was last checked against its source (a date, or a label).
    as_of: Annotated[date | str | None, ParseInstead(_as_of_or_none)] = None


def _as_of(value: Any) -> date | str:
    # An ISO date becomes a date; other text ("2025-08", "list prices, August") is kept,
    # so one date-or-text field reports one error rather than one per union member.
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
        # A label must still date the prices ("Aug 2025", "2025-08"): one without a year
        # ("not a date") would hide how stale the table is.
        if _YEAR.search(value):
            return value.strip()
    from pydantic_core import PydanticCustomError  # only to report a bad value

    raise PydanticCustomError(
        "config",
        f"{value!r} is not a date or a label with a year (use YYYY-MM-DD, or e.g. 'Aug 2025')",
    )


_YEAR = re.compile(r"(?<!\d)(19|20|21)\d\d(?!\d)")


@dataclass(frozen=True, slots=True, kw_only=True)
class PricingTable(ConfigModel):
    """Prices per model. ``as_of`` says when they were copied, so a stale table shows."""

    as_of: Annotated[date | str, ParseInstead(_as_of)]
    currency: str = field(default="USD", metadata={"pattern": r"^[A-Z]{3}$"})
    models: dict[str, PriceRow] = field(default_factory=dict)
    # Price files in LiteLLM's model_prices_and_context_window.json format, read when a
    # runtime starts; rows in `models` win over them.
    sources: list[Path] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvConfig(ConfigModel):
    name: NonEmptyStr


# --- Routing ----------------------------------------------------------------------------

FALLBACK_NEXT = "next"
FALLBACK_STOP = "stop"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelGroup(ConfigModel):
    """``model_groups.<name>``: a logical model served by several named deployments.

    ``strategy`` picks among the healthy deployments not yet tried (``ordered``,
    ``weighted``, ``least_in_flight``, ``lowest_latency``, ``most_headroom``, or one a
    plugin registers); ``weights`` (by deployment name, default 1) serve ``weighted``.
    ``fallbacks`` maps an error kind to ``next`` (another deployment of this group),
    ``stop`` (fail), or the name of another group; it is merged over the defaults
    (:data:`rakka_runtime.routing.fallbacks.DEFAULT_FALLBACKS`). ``context_fallback``
    is the larger-context group a ``context_length_exceeded`` goes to;
    ``content_filter_fallback`` the group a ``content_filtered`` goes to (else it stops).
    ``stream_failover``: after the first chunk reached the caller, ``fail`` surfaces
    ``stream_interrupted`` with the partial; ``continue`` asks the next deployment to
    continue the partial answer. ``max_tries_per_deployment``: how often one request may
    go to the same deployment (its own retries, inside, not counted).
    """

    deployments: Annotated[list[NonEmptyStr], MinLen(1)]
    strategy: NonEmptyStr = "ordered"
    weights: dict[str, PositiveFloat] = field(default_factory=dict)
    fallbacks: dict[str, NonEmptyStr] = field(default_factory=dict)
    context_fallback: str | None = None
    content_filter_fallback: str | None = None
    stream_failover: Literal["fail", "continue"] = "fail"
    max_tries_per_deployment: PositiveInt = 1

    def __post_init__(self) -> None:
        if len(set(self.deployments)) != len(self.deployments):
            raise ValueError("a deployment is listed twice")
        unknown = sorted(set(self.weights) - set(self.deployments))
        if unknown:
            raise ValueError(f"weights name {unknown[0]!r}, which is not in deployments")


@dataclass(frozen=True, slots=True, kw_only=True)
class RakkaConfig(ConfigModel):
    """The whole composed configuration.

    ``deployment`` is either the raw composed mapping (treat it as read-only), which only
    the provider knows the full schema of (see
    :func:`~rakka_runtime.config.validation.validate_deployment`), or a deployment object
    already built: a provider's :class:`DeploymentConfig` subclass made in code or
    rebuilt from a compiled config.

    ``deployments`` (named, raw mappings or objects as ``deployment``) and
    ``model_groups`` make a routed config: requests name a group or a deployment. Without
    ``deployments``, ``deployment`` is the one deployment (an implicit group of one).
    With them, ``deployment`` only lends its policy keys to each named deployment as
    defaults (:func:`~rakka_runtime.config.validation.validate_config` merges them).
    """

    deployment: dict[str, Any] | DeploymentConfig
    pricing: PricingTable
    env: EnvConfig
    deployments: dict[str, dict[str, Any] | DeploymentConfig] = field(default_factory=dict)
    model_groups: dict[str, ModelGroup] = field(default_factory=dict)
    # The group (or deployment) a request that names no model goes to; None: the first
    # group, else the first deployment.
    default_model: str | None = None

    @property
    def routed(self) -> bool:
        return bool(self.deployments)


POLICY_KEYS = (
    "retry",
    "circuit_breaker",
    "rate_limits",
    "timeouts",
    "limits",
    "budget",
    "secret_watch",
)
"""The keys of ``deployment`` a named deployment inherits as defaults (the policy group
and env overlays write them there)."""


def routing_problems(config: RakkaConfig) -> list[tuple[str, str]]:
    """``(dotted path, message)`` for every group or default naming something unknown."""
    from rakka_runtime.routing.fallbacks import ERROR_KINDS

    problems: list[tuple[str, str]] = []
    names = set(config.deployments) or {deployment_name(config.deployment)}
    groups = set(config.model_groups)
    for group_name, group in config.model_groups.items():
        where = f"model_groups.{group_name}"
        for index, member in enumerate(group.deployments):
            if member not in names:
                known = ", ".join(sorted(names)) or "none declared"
                problems.append(
                    (f"{where}.deployments[{index}]", f"unknown deployment {member!r} ({known})")
                )
        for kind, action in group.fallbacks.items():
            if kind not in ERROR_KINDS:
                problems.append((f"{where}.fallbacks.{kind}", f"{kind!r} is not an error kind"))
            if action not in (FALLBACK_NEXT, FALLBACK_STOP) and action not in groups:
                problems.append(
                    (
                        f"{where}.fallbacks.{kind}",
                        f"{action!r} is neither next, stop nor a model group",
                    )
                )
        for key in ("context_fallback", "content_filter_fallback"):
            target = getattr(group, key)
            if target is not None and target not in groups:
                problems.append((f"{where}.{key}", f"unknown model group {target!r}"))
    for key, deployment in config.deployments.items():
        if deployment_name(deployment) != key:
            problems.append(
                (f"deployments.{key}.name", f"must be {key!r}, the deployment's key, or unset")
            )
    for name in groups & names:
        problems.append((f"model_groups.{name}", f"{name!r} names a deployment too"))
    default = config.default_model
    if default is not None and default not in groups | names:
        problems.append(("default_model", f"{default!r} is neither a group nor a deployment"))
    return problems


def deployment_name(deployment: Mapping[str, Any] | DeploymentConfig) -> str:
    """The ``name`` of a raw or built deployment (``default`` when unset)."""
    if isinstance(deployment, DeploymentConfig):
        return deployment.name
    return str(deployment.get("name") or "default")
