"""The runtime: validated config + plugins → one ready deployment you can call.

``Runtime`` is the public entry point (the CLI is a thin shell over it). It resolves the
provider kind in the registry, validates the deployment with that provider's model,
opens the session (pool + credential snapshot), and builds the call chain once from
the middlewares plugins contribute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rakka_runtime import transport
from rakka_runtime.config.schema import DeploymentConfig, RakkaConfig, RateLimitPolicy
from rakka_runtime.credentials import check_secret_sources, credential_resolver, watched_files
from rakka_runtime.errors import (
    Cancelled,
    ConfigError,
    InferenceError,
    InvalidRequest,
    Unauthorized,
)
from rakka_runtime.plugins import PluginHooks
from rakka_runtime.pricing import (
    CostEstimate,
    PriceTable,
    cost_from_usage,
    estimate_cost,
    estimate_input_tokens,
    estimate_output_tokens,
    price_table_for,
)
from rakka_runtime.redaction import redact_error, session_secrets
from rakka_runtime.registry import ProviderContext, ProviderKind
from rakka_runtime.runner import CallState, RunHandle, WireClient, compose
from rakka_runtime.session import HeaderBuilder, Session
from rakka_runtime.types import (
    Attempt,
    ChatResult,
    ExecuteBatch,
    Message,
    SamplingParams,
    TokenChunk,
    Usage,
    check_messages,
)

DEFAULT_MAX_OUTPUT_TOKENS = 4096  # bounds an estimate when a request sets no max


def resolve_deployment(
    config: RakkaConfig, hooks: PluginHooks
) -> tuple[ProviderKind, DeploymentConfig]:
    """Find the provider kind the config names and validate the deployment with its model
    (a deployment object built in code or from a compiled config is used as it is)."""
    deployment = config.deployment
    if isinstance(deployment, DeploymentConfig):
        kind: object = deployment.provider
    else:
        kind = deployment.get("provider")
    provider = hooks.providers.get(str(kind))
    if provider is None:
        known = ", ".join(hooks.providers.kinds()) or "none installed"
        raise ConfigError(
            "deployment.provider", f"{kind!r} is not a registered provider kind ({known})"
        )
    if isinstance(deployment, DeploymentConfig):
        if not isinstance(deployment, provider.config_model):
            raise ConfigError(
                "deployment",
                f"a {type(deployment).__name__} is not a {provider.config_model.__name__}, "
                f"the deployment class of provider {kind!r}",
            )
        check_secret_sources(deployment, hooks)
        return provider, deployment
    # pydantic is loaded here, on the first raw (composed) config, not at import.
    from rakka_runtime.config.validation import validate_deployment

    validated = validate_deployment(deployment, provider.config_model)
    check_secret_sources(validated, hooks)
    return provider, validated


class DeploymentRunner:
    """A deployment's call chain (implements :class:`rakka_runtime.runner.ModelRunner`)."""

    def __init__(
        self,
        deployment: DeploymentConfig,
        client: WireClient,
        hooks: PluginHooks,
        prices: PriceTable,
        session: Session | None = None,
    ) -> None:
        self.deployment = deployment
        self.client = client
        self.session = session
        self.prices = prices
        self._hooks = hooks
        self._default_deadline = deployment.timeouts.deadline
        self._estimator = self.estimate_cost  # bound once, handed to every CallState
        self._middlewares = hooks.middlewares(deployment)
        self._call = compose(self._middlewares, self._attempt)

    def execute(self, request: ExecuteBatch) -> RunHandle:
        if request.deadline is None and self._default_deadline is not None:
            request.deadline = time.monotonic() + self._default_deadline
        state = CallState(
            request=request,
            deployment=self.deployment.name,
            model=request.model or self.deployment.model,
            estimator=self._estimator,
        )
        return RunHandle(state, self._run(state))

    def estimate_cost(self, request: ExecuteBatch) -> CostEstimate:
        sampling = request.sampling
        max_output = sampling.max_tokens or DEFAULT_MAX_OUTPUT_TOKENS
        # Azure ignores request.model (the deployment is in the URL): base_model decides.
        model = self.deployment.base_model or request.model or self.deployment.model
        return estimate_cost(self.prices, model, request.messages, max_output)

    @property
    def rate_limits(self) -> RateLimitPolicy:
        return self.deployment.rate_limits

    def _attempt(self, state: CallState) -> Iterator[TokenChunk]:
        """Innermost layer: one wire exchange, recorded in ``state.attempts``.

        A 401 response may only mean the key rotated and the watcher missed it: the
        session re-resolves the credential once and, if it changed, the exchange is
        repeated once with the new one (a second record in ``state.attempts``).
        """
        session = self.session
        used = None if session is None else session.cell.current
        try:
            yield from self._exchange(state)
        except Unauthorized as exc:
            # Only a 401 status (before any body): an error event mid-stream has no status.
            if session is None or used is None or exc.status != 401:
                raise
            if not session.reauthorize(used):
                raise
        else:
            return
        yield from self._exchange(state)

    def _exchange(self, state: CallState) -> Iterator[TokenChunk]:
        if state.cancelled:
            raise Cancelled("cancelled before sending")
        record = Attempt("ok")
        state.attempts.append(record)
        try:
            yield from self.client.send(state)
        except InferenceError as exc:
            redact_error(exc, session_secrets(self.session))  # a server may echo the key
            failure = exc
            if state.cancelled and not isinstance(exc, Cancelled):
                # The cut connection surfaces as a network error: say what happened, below
                # the retry and breaker layers so neither treats it as the provider's fault.
                failure = Cancelled(
                    "cancelled by the caller", request_id=exc.request_id, partial=exc.partial
                )
            record.kind, record.status = failure.kind, exc.status
            if exc.partial is not None:  # output arrived, so tokens were billed
                self._charge(state, exc.partial, failed=True)
            if failure is exc:
                raise
            raise failure from exc
        record.status = state.status
        if state.result is not None:
            self._charge(state, state.result, failed=False)

    def _charge(self, state: CallState, result: ChatResult, *, failed: bool) -> None:
        """Price one attempt's result and add it to the request's spend.

        A failed attempt without usage (a stream cut before its usage chunk) is costed from
        the estimated input plus ``ceil(chars / 4)`` of the output that arrived, and flagged
        as estimated. A complete answer without usage comes from a server that does not
        report it at all: its cost stays unknown rather than guessed.
        """
        usage = result.usage
        estimated = usage is None and failed
        if estimated:
            if not state.estimated_input_tokens:
                state.estimated_input_tokens = estimate_input_tokens(state.request.messages)
            usage = Usage(state.estimated_input_tokens, estimate_output_tokens(result))
        rates = self.prices.get(self._priced_model(result.model, state.model))
        cost = None if rates is None or usage is None else cost_from_usage(rates, usage)
        state.spend.add(cost, usage, estimated=estimated)
        result.cost_usd, result.cost_estimated = cost, estimated

    def _priced_model(self, reported: str | None, requested: str) -> str:
        """Azure hides the model behind the deployment name: base_model decides. Otherwise
        the model the server says answered, unless it has no price and the requested one does."""
        if self.deployment.base_model:
            return self.deployment.base_model
        if reported and (
            self.prices.get(reported) is not None or self.prices.get(requested) is None
        ):
            return reported
        return requested

    def _run(self, state: CallState) -> Iterator[TokenChunk]:
        """Outermost layer: timings, cost, attempt count and the finished event."""
        first = True
        try:
            for chunk in self._call(state):
                if first:
                    state.first_chunk_at = time.monotonic()
                    first = False
                yield chunk
        except InferenceError as exc:
            if not exc.attempts:
                exc.attempts = list(state.attempts)
            if exc.partial is not None and state.spend.charged:
                exc.partial.cost_usd = state.spend.total
                exc.partial.cost_estimated = state.spend.estimated
            self._hooks.request_finished(self.deployment.name, state.request, None, exc)
            raise
        result = state.result
        if result is None:
            raise InferenceError("the call chain ended without a result")
        finished = time.monotonic()
        result.latency_ms = (finished - state.started_at) * 1000
        first_at = state.first_chunk_at if state.request.stream else finished
        result.ttft_ms = None if first_at is None else (first_at - state.started_at) * 1000
        result.attempts = max(1, len(state.attempts))
        result.attempt_history = list(state.attempts)
        if state.spend.charged:
            # The whole request's cost: every attempt that consumed tokens, not just this one.
            result.cost_usd = state.spend.total
            result.cost_estimated = state.spend.estimated
        self._hooks.request_finished(self.deployment.name, state.request, result, None)

    def close(self) -> None:
        self.client.close()
        for middleware in self._middlewares:
            close = getattr(middleware, "close", None)
            if close is not None:
                close()


class Runtime:
    """Calls one composed deployment. Use as a context manager, or call :meth:`close`."""

    def __init__(self, config: RakkaConfig, *, hooks: PluginHooks | None = None) -> None:
        self.config = config
        self.hooks = hooks if hooks is not None else PluginHooks()
        provider, self.deployment = resolve_deployment(config, self.hooks)
        self.prices = price_table_for(config.pricing, self.deployment)
        self._resolve_credential = credential_resolver(self.deployment, self.hooks)
        self._sessions: list[Session] = []
        try:
            client = provider.factory(self.deployment, ProviderContext(self._open_session))
        except BaseException:
            self._close_sessions()  # a watcher thread must not outlive a failed start
            raise
        self.runner = DeploymentRunner(
            self.deployment, client, self.hooks, self.prices, self.session
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
        """The deployment's session (credential snapshot, pool, watcher)."""
        return self._sessions[0] if self._sessions else None

    def _open_session(self, build_headers: HeaderBuilder) -> Session:
        deployment = self.deployment
        timeouts = deployment.timeouts
        # Keep a connection for every request the deployment lets fly at once: beyond the
        # pool's size urllib3 opens a connection per request and closes it after.
        in_flight = deployment.rate_limits.concurrent_requests or 0
        session = Session(
            deployment.name,
            pool=transport.make_pool(
                connect=timeouts.connect,
                request_timeout=timeouts.request_timeout,
                maxsize=max(transport.POOL_SIZE, in_flight),
            ),
            resolve_credential=self._resolve_credential,
            build_headers=build_headers,
            on_swap=self.hooks.session_swapped,
        )
        self._sessions.append(session)
        files = watched_files(deployment)
        if files:
            session.watch_files(files, debounce=deployment.secret_watch.debounce)
        return session

    def _close_sessions(self) -> None:
        for session in self._sessions:
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
    ) -> ExecuteBatch:
        """Build a checked request from a prompt or OpenAI-shaped messages."""
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
        sampling_fields = {k: fields.pop(k) for k in list(fields) if k in _SAMPLING_FIELDS}
        deadline = fields.pop("deadline", None)
        try:
            return ExecuteBatch(
                messages=messages,
                model=model,
                sampling=SamplingParams(**sampling_fields),
                stream=stream,
                deadline=None if deadline is None else time.monotonic() + float(deadline),
                **fields,
            )
        except TypeError as exc:
            raise InvalidRequest(f"unknown request field: {exc}") from exc

    def execute(self, request: ExecuteBatch) -> RunHandle:
        """Start ``request``; iterate the handle for chunks or call ``result()``."""
        return self.runner.execute(request)

    def stream(self, prompt: str | Sequence[Message], **kw: Any) -> RunHandle:
        return self.execute(self.request(prompt, stream=True, **kw))

    def chat(
        self, prompt: str | Sequence[Message], *, stream: bool = False, **kw: Any
    ) -> ChatResult:
        return self.execute(self.request(prompt, stream=stream, **kw)).result()

    def estimate_cost(self, request: ExecuteBatch) -> CostEstimate:
        return self.runner.estimate_cost(request)

    def close(self) -> None:
        try:
            self.runner.close()
        finally:
            # Idempotent; stops the watcher even if a provider's client forgot its session.
            self._close_sessions()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SAMPLING_FIELDS = frozenset(SamplingParams.__dataclass_fields__)
