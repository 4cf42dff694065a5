"""The runtime: validated config + plugins → one ready deployment you can call.

``Runtime`` is the public entry point (the CLI is a thin shell over it). It resolves the
provider kind in the registry, validates the deployment with that provider's model,
opens the session (pool + credential snapshot), and builds the call chain once from
the middlewares plugins contribute.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rakka_runtime.config.errors import config_error
from rakka_runtime.config.schema import (
    DeploymentConfig,
    RakkaConfig,
    RateLimitPolicy,
    routing_problems,
)
from rakka_runtime.core.flow import DeploymentCore
from rakka_runtime.credentials import check_secret_sources, credential_resolver, watched_files
from rakka_runtime.drivers import sync, sync_transport
from rakka_runtime.errors import ConfigError, InvalidRequest
from rakka_runtime.plugins import PluginHooks
from rakka_runtime.pricing import CostEstimate, price_table_for
from rakka_runtime.provider import HeaderBuilder, ProviderContext
from rakka_runtime.registry import ProviderKind
from rakka_runtime.routing.router import Router
from rakka_runtime.session import Session
from rakka_runtime.types import (
    ChatRequest,
    ChatResult,
    Message,
    SamplingParams,
    check_messages,
)

RunHandle = sync.RunHandle


def resolve_deployment(
    config: RakkaConfig, hooks: PluginHooks
) -> tuple[ProviderKind, DeploymentConfig]:
    """Find the provider kind the config names and validate the deployment with its model
    (a deployment object built in code or from a compiled config is used as it is)."""
    return resolve_one(config.deployment, hooks, "deployment")


def resolve_one(
    deployment: Mapping[str, Any] | DeploymentConfig, hooks: PluginHooks, where: str
) -> tuple[ProviderKind, DeploymentConfig]:
    """:func:`resolve_deployment` for one deployment at the dotted path ``where``."""
    if isinstance(deployment, DeploymentConfig):
        kind: object = deployment.provider
    else:
        kind = deployment.get("provider")
    provider = hooks.providers.get(str(kind))
    if provider is None:
        raise ConfigError(f"{where}.provider", hooks.providers.unknown_kind_message(kind))
    if isinstance(deployment, DeploymentConfig):
        if not isinstance(deployment, provider.config_model):
            raise ConfigError(
                where,
                f"a {type(deployment).__name__} is not a {provider.config_model.__name__}, "
                f"the deployment class of provider {kind!r}",
            )
        check_secret_sources(deployment, hooks)
        return provider, deployment
    # pydantic is loaded here, on the first raw (composed) config, not at import.
    from rakka_runtime.config.validation import validate_deployment

    validated = validate_deployment(deployment, provider.config_model, prefix=where)
    check_secret_sources(validated, hooks)
    return provider, validated


def resolve_deployments(
    config: RakkaConfig, hooks: PluginHooks
) -> dict[str, tuple[ProviderKind, DeploymentConfig]]:
    """Every deployment requests can go to, by name: the named ``deployments`` of a
    routed config, else the one ``deployment``. Group references are checked too."""
    if not config.routed:
        provider, deployment = resolve_deployment(config, hooks)
        resolved = {deployment.name: (provider, deployment)}
    else:
        resolved = {
            name: resolve_one(raw, hooks, f"deployments.{name}")
            for name, raw in config.deployments.items()
        }
    problems = routing_problems(config)
    if problems:
        raise config_error(problems)
    return resolved


class Runtime:
    """Calls the composed deployments from threads: one deployment, or (with
    ``deployments`` and ``model_groups``) a router over many. Use as a context manager, or
    call :meth:`close`. :class:`~rakka_runtime.aio.AsyncRuntime` is its asyncio twin: same
    config, plugins, results and errors."""

    def __init__(self, config: RakkaConfig, *, hooks: PluginHooks | None = None) -> None:
        self.config = config
        self.hooks = hooks if hooks is not None else PluginHooks()
        resolved = resolve_deployments(config, self.hooks)
        self._sessions: dict[str, list[Session]] = {}
        self.cores: dict[str, DeploymentCore] = {}
        try:
            for name, (provider, deployment) in resolved.items():
                where = f"deployments.{name}" if config.routed else "deployment"
                self.cores[name] = self._build_core(provider, deployment, where)
            self.router = Router(
                self.cores,
                config.model_groups,
                default=config.default_model,
                strategies=self.hooks.routing_strategies(),
                hooks=self.hooks,
            )
        except BaseException:
            for core in self.cores.values():
                # The start's own failure is what the caller needs to see.
                with contextlib.suppress(Exception):
                    core.close()
            self._close_sessions()  # a watcher thread must not outlive a failed start
            raise
        # The default route's first deployment: what single-deployment callers see.
        self.core = self.cores[self.router.route(None).members[0]]
        self.deployment = self.core.deployment
        self.prices = self.core.prices
        # One deployment and no groups: requests skip the router (nothing to decide).
        self.routed = len(self.cores) > 1 or bool(config.model_groups)

    def _build_core(
        self, provider: ProviderKind, deployment: DeploymentConfig, where: str
    ) -> DeploymentCore:
        sessions = self._sessions.setdefault(deployment.name, [])
        resolve = credential_resolver(deployment, self.hooks, where)

        def open_session(build_headers: HeaderBuilder) -> Session:
            session = self._open_session(deployment, resolve, build_headers)
            sessions.append(session)
            return session

        codec = provider.factory(deployment, ProviderContext(open_session))
        if not sessions:  # a provider that needs no credential still has a pool
            open_session(lambda _secret: {})
        return DeploymentCore(
            deployment,
            codec,
            self.hooks,
            price_table_for(self.config.pricing, deployment),
            sessions[0],
            self.hooks.policies(deployment),
        )

    @classmethod
    def from_overrides(
        cls,
        overrides: Sequence[str] = (),
        *,
        config_dir: str | None = None,
        hooks: PluginHooks | None = None,
    ) -> Runtime:
        """Compose conf/ (plus ``config_dir``) with Hydra overrides and build the runtime."""
        from rakka_runtime.config.loader import load_config

        return cls(load_config(overrides, config_dir=config_dir), hooks=hooks)

    @classmethod
    def from_compiled(cls, path: str | Path, *, hooks: PluginHooks | None = None) -> Runtime:
        """Build the runtime from a compiled config (``rakka config compile``): no Hydra,
        and no pydantic unless the file was edited since it was compiled (see
        :mod:`rakka_runtime.config.compiled`)."""
        from rakka_runtime.config.compiled import load_compiled

        hooks = hooks if hooks is not None else PluginHooks()
        return cls(load_compiled(path, hooks), hooks=hooks)

    @property
    def session(self) -> Session | None:
        """The (default) deployment's session (credential snapshot, pool, watcher)."""
        sessions = self._sessions.get(self.deployment.name)
        return sessions[0] if sessions else None

    def _open_session(
        self,
        deployment: DeploymentConfig,
        resolve_credential: Any,
        build_headers: HeaderBuilder,
    ) -> Session:
        timeouts = deployment.timeouts
        # Keep a connection for every request the deployment lets fly at once: beyond the
        # pool's size urllib3 opens a connection per request and closes it after.
        in_flight = deployment.rate_limits.concurrent_requests or 0
        session = Session(
            deployment.name,
            pool=sync_transport.make_pool(
                connect=timeouts.connect,
                request_timeout=timeouts.request_timeout,
                maxsize=max(sync_transport.POOL_SIZE, in_flight),
            ),
            resolve_credential=resolve_credential,
            build_headers=build_headers,
            on_swap=self.hooks.session_swapped,
        )
        try:
            files = watched_files(deployment)
            if files:
                session.watch_files(files, debounce=deployment.secret_watch.debounce)
        except BaseException:
            session.close()
            raise
        return session

    def _close_sessions(self) -> None:
        for sessions in self._sessions.values():
            for session in sessions:
                session.close()

    # --- calling ------------------------------------------------------------------------

    def request(
        self,
        prompt: str | Sequence[Message],
        *,
        stream: bool = True,
        model: str | None = None,
        system: str | None = None,
        **fields: Any,
    ) -> ChatRequest:
        """Build a checked request from a prompt or OpenAI-shaped messages. ``deadline``
        (seconds) bounds the whole request each time it runs, waits included."""
        messages: list[Message] = []
        if system is not None:
            messages.append({"role": "system", "content": system})
        if isinstance(prompt, str):
            messages.append({"role": "user", "content": prompt})
        else:
            messages.extend(prompt)
        try:
            check_messages(messages)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        sampling, deadline = _NO_SAMPLING, None
        if fields:
            sampling_fields = {k: fields.pop(k) for k in list(fields) if k in _SAMPLING_FIELDS}
            deadline = fields.pop("deadline", None)
            try:
                sampling = SamplingParams(**sampling_fields) if sampling_fields else sampling
            except TypeError as exc:
                raise InvalidRequest(f"unknown request field: {exc}") from exc
        try:
            return ChatRequest(
                messages=messages,
                model=model,
                sampling=sampling,
                stream=stream,
                timeout=None if deadline is None else float(deadline),
                **fields,
            )
        except TypeError as exc:
            raise InvalidRequest(f"unknown request field: {exc}") from exc

    def execute(self, request: ChatRequest, *, deadline: float | None = None) -> RunHandle:
        """Start ``request``; iterate the handle for chunks or call ``result()``.
        ``deadline`` (absolute ``time.monotonic()``) may shorten this run's. With several
        deployments, ``request.model`` names a model group or a deployment."""
        if not self.routed:
            state = self.core.new_state(request, deadline)
            return RunHandle(state, sync.run(self.core, state))
        route = self.router.start(request, deadline)
        return RunHandle(route, sync.run_routed(route))

    def stream(self, prompt: str | Sequence[Message], **kw: Any) -> RunHandle:
        return self.execute(self.request(prompt, stream=True, **kw))

    def chat(
        self, prompt: str | Sequence[Message], *, stream: bool = False, **kw: Any
    ) -> ChatResult:
        return self.execute(self.request(prompt, stream=stream, **kw)).result()

    def estimate_cost(self, request: ChatRequest) -> CostEstimate:
        """The pre-call estimate at the price of the deployment the request goes to first."""
        if not self.routed:
            return self.core.estimate_cost(request)
        route = self.router.route(request.model)
        return self.cores[route.members[0]].estimate_cost(replace(request, model=None))

    @property
    def rate_limits(self) -> RateLimitPolicy:
        """The deployment's configured limits (the rate-limit plugin enforces them)."""
        return self.deployment.rate_limits

    def close(self) -> None:
        try:
            self.router.close()
        finally:
            # Idempotent; stops the watcher even if a provider's client forgot its session.
            self._close_sessions()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SAMPLING_FIELDS = frozenset(SamplingParams.__dataclass_fields__)
_NO_SAMPLING = SamplingParams()  # frozen: one shared instance for requests that set none
