"""The runtime: validated config + plugins → one ready deployment you can call.

``Runtime`` is the public entry point (the CLI is a thin shell over it). It resolves the
provider kind in the registry, validates the deployment with that provider's model,
opens the session (pool + credential snapshot), and builds the call chain once from
the middlewares plugins contribute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from rakka_runtime import transport
from rakka_runtime.config.loader import load_config
from rakka_runtime.config.schema import DeploymentConfig, RakkaConfig, validate_deployment
from rakka_runtime.errors import ConfigError, InferenceError, InvalidRequest
from rakka_runtime.plugins import PluginHooks
from rakka_runtime.pricing import CostEstimate, PriceTable, estimate_cost
from rakka_runtime.registry import ProviderContext, ProviderKind
from rakka_runtime.runner import CallState, RunHandle, WireClient, compose
from rakka_runtime.secrets import Secret, resolve_secret
from rakka_runtime.session import HeaderBuilder, Session
from rakka_runtime.types import (
    Attempt,
    ChatResult,
    ExecuteBatch,
    Message,
    SamplingParams,
    TokenChunk,
    check_messages,
)

DEFAULT_MAX_OUTPUT_TOKENS = 4096  # bounds an estimate when a request sets no max


def resolve_deployment(
    config: RakkaConfig, hooks: PluginHooks
) -> tuple[ProviderKind, DeploymentConfig]:
    """Find the provider kind the config names and validate the deployment with its model."""
    kind = config.deployment.get("provider")
    provider = hooks.providers.get(str(kind))
    if provider is None:
        known = ", ".join(hooks.providers.kinds()) or "none installed"
        raise ConfigError(
            "deployment.provider", f"{kind!r} is not a registered provider kind ({known})"
        )
    return provider, validate_deployment(config.deployment, provider.config_model)


class DeploymentRunner:
    """A deployment's call chain (implements :class:`rakka_runtime.runner.ModelRunner`)."""

    def __init__(
        self,
        deployment: DeploymentConfig,
        client: WireClient,
        hooks: PluginHooks,
        prices: PriceTable,
    ) -> None:
        self.deployment = deployment
        self.client = client
        self.prices = prices
        self._hooks = hooks
        self._price_model = deployment.base_model or deployment.model
        self._default_deadline = deployment.timeouts.deadline
        self._call = compose(hooks.middlewares(deployment), self._attempt)

    def execute(self, request: ExecuteBatch) -> RunHandle:
        if request.deadline is None and self._default_deadline is not None:
            request.deadline = time.monotonic() + self._default_deadline
        state = CallState(
            request=request,
            deployment=self.deployment.name,
            model=request.model or self.deployment.model,
        )
        return RunHandle(state, self._run(state))

    def estimate_cost(self, request: ExecuteBatch) -> CostEstimate:
        sampling = request.sampling
        max_output = sampling.max_tokens or DEFAULT_MAX_OUTPUT_TOKENS
        return estimate_cost(
            self.prices, request.model or self._price_model, request.messages, max_output
        )

    def _attempt(self, state: CallState) -> Iterator[TokenChunk]:
        """Innermost layer: one wire exchange, recorded in ``state.attempts``."""
        record = Attempt("ok")
        state.attempts.append(record)
        try:
            yield from self.client.send(state)
        except InferenceError as exc:
            record.kind, record.status = exc.kind, exc.status
            raise
        record.status = state.status

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
        if result.usage is not None and result.cost_usd is None:
            # Azure hides the model behind the deployment name: base_model decides.
            model = self.deployment.base_model or result.model or state.model
            result.cost_usd = self.prices.cost(model, result.usage)
        self._hooks.request_finished(self.deployment.name, state.request, result, None)

    def close(self) -> None:
        self.client.close()


class Runtime:
    """Calls one composed deployment. Use as a context manager, or call :meth:`close`."""

    def __init__(self, config: RakkaConfig, *, hooks: PluginHooks | None = None) -> None:
        self.config = config
        self.hooks = hooks if hooks is not None else PluginHooks()
        provider, self.deployment = resolve_deployment(config, self.hooks)
        self.prices = PriceTable.from_config(
            {name: row.model_dump() for name, row in config.pricing.models.items()},
            config.pricing.as_of,
        )
        client = provider.factory(self.deployment, ProviderContext(self._open_session))
        self.runner = DeploymentRunner(self.deployment, client, self.hooks, self.prices)

    @classmethod
    def from_overrides(
        cls,
        overrides: Sequence[str] = (),
        *,
        config_dir: str | None = None,
        hooks: PluginHooks | None = None,
    ) -> Runtime:
        """Compose conf/ (plus ``config_dir``) with Hydra overrides and build the runtime."""
        return cls(load_config(overrides, config_dir=config_dir), hooks=hooks)

    def _open_session(self, build_headers: HeaderBuilder) -> Session:
        deployment = self.deployment
        timeouts = deployment.timeouts
        return Session(
            deployment.name,
            pool=transport.make_pool(
                connect=timeouts.connect, request_timeout=timeouts.request_timeout
            ),
            resolve_credential=self._resolve_credential,
            build_headers=build_headers,
            on_swap=self.hooks.session_swapped,
        )

    def _resolve_credential(self) -> Secret | None:
        ref = self.deployment.api_key
        if ref is None:
            return None
        return resolve_secret(
            ref, path="deployment.api_key", plugin_resolver=self.hooks.resolve_secret
        )

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
        self.runner.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SAMPLING_FIELDS = frozenset(SamplingParams.__dataclass_fields__)
