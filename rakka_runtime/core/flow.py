"""What happens around each exchange of a request, decided once for both drivers.

:class:`DeploymentCore` is one deployment as the drivers see it: its codec, session,
prices, hooks and policy chain. Its methods are the request's bookkeeping — attempt
records, billing, what a failure becomes, whether and how long to wait before the next
attempt, the finished result — with no I/O and no waiting, so the thread driver and the
asyncio driver call the same code and differ only in how they wait and read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rakka_runtime.core.policy import Outcome, Policy, Wait, does_io, retry_wait_of
from rakka_runtime.core.state import CallState
from rakka_runtime.errors import Cancelled, InferenceError, PluginError
from rakka_runtime.pricing import (
    CostEstimate,
    ModelRates,
    PriceTable,
    cost_from_usage,
    estimate_cost,
    estimate_output_tokens,
)
from rakka_runtime.redaction import redact_error, session_secrets
from rakka_runtime.types import Attempt, ChatRequest, ChatResult, TokenChunk, Usage

if TYPE_CHECKING:
    from rakka_runtime.config.schema import DeploymentConfig
    from rakka_runtime.core.exchange import Exchange
    from rakka_runtime.plugins import PluginHooks
    from rakka_runtime.provider import ProviderCodec
    from rakka_runtime.session import Session

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "DeploymentCore",
    "OpenStream",
    "estimated_tokens",
    "plugin_failure",
]

_MAX_PRICED = 256  # (reported, requested) model pairs whose rates a deployment remembers

DEFAULT_MAX_OUTPUT_TOKENS = 1024
"""Output tokens assumed for a request that sets no ``max_tokens``: the one default
behind rate-limit reservations, budget admission and the pre-call cost estimate.
Reserving a model's whole output window would serialise a tokens-per-minute budget
needlessly; reconciling with the reported usage corrects the guess either way."""


def estimated_tokens(request: ChatRequest, input_tokens: int) -> int:
    """The one estimate of what ``request`` will use: its prompt plus the most the answer
    may use (``max_tokens`` times ``n``, or the default)."""
    sampling = request.sampling
    output = DEFAULT_MAX_OUTPUT_TOKENS if sampling.max_tokens is None else sampling.max_tokens
    return input_tokens + output * max(1, sampling.n or 1)


def ask(policy: Policy, state: CallState) -> Any:
    """``policy.enter(state)``: its decision, or its refusal raised; an exception that is
    not a refusal (a bug) raised as :func:`plugin_failure`."""
    try:
        return policy.enter(state)
    except InferenceError:
        raise
    except Exception as exc:
        raise plugin_failure(exc) from exc


def plugin_failure(problem: BaseException) -> InferenceError:
    """What a policy's own exception (a bug, not a decision) becomes for the caller."""
    if isinstance(problem, InferenceError):
        return problem
    error = PluginError(f"a policy failed: {type(problem).__name__}: {problem}")
    error.__cause__ = problem
    return error


class DeploymentCore:
    """One deployment's codec, session, prices and policies, shared by both drivers."""

    def __init__(
        self,
        deployment: DeploymentConfig,
        codec: ProviderCodec,
        hooks: PluginHooks,
        prices: PriceTable,
        session: Session | None,
        policies: Sequence[Policy],
    ) -> None:
        self.deployment = deployment
        self.codec = codec
        self.hooks = hooks
        self.prices = prices
        self.session = session
        self.policies = list(policies)
        by_order = sorted(self.policies, key=lambda p: p.order)
        self.request_policies = [p for p in by_order if p.scope == "request"]
        self.attempt_policies = [p for p in by_order if p.scope != "request"]
        self.retry_policy = next(
            (p for p in self.request_policies if retry_wait_of(p) is not None), None
        )
        self.responders = [
            (i, p.on_response)  # type: ignore[attr-defined]
            for i, p in enumerate(self.attempt_policies)
            if getattr(p, "on_response", None) is not None
        ]
        # What the asyncio driver may not call on the event loop as it is (core.policy):
        # it awaits these policies' twins, or runs their calls in a worker thread.
        self.io_policies = [p for p in self.policies if does_io(p)]
        self.loop_responders = [
            (i, respond) for i, respond in self.responders if not does_io(self.attempt_policies[i])
        ]
        self.io_responders = [
            (i, p)
            for i, p in enumerate(self.attempt_policies)
            if does_io(p) and getattr(p, "on_response", None) is not None
        ]
        timeouts = deployment.timeouts
        self.connect = timeouts.connect
        self.request_timeout = timeouts.request_timeout
        self.read_timeout = timeouts.read_timeout
        self.limits = deployment.limits
        self._default_deadline = timeouts.deadline
        self._estimator = self.estimate_cost  # bound once, handed to every state
        self._priced: dict[tuple[str | None, str], ModelRates | None] = {}

    # -- a request's life -------------------------------------------------------------------

    def new_state(self, request: ChatRequest, deadline: float | None = None) -> CallState:
        """The state of one run of ``request``; ``deadline`` (absolute) may shorten it."""
        now = time.monotonic()
        earliest = request.deadline
        if (
            deadline is not None
            or request.timeout is not None
            or self._default_deadline is not None
        ):
            for limit in (
                deadline,
                None if request.timeout is None else now + request.timeout,
                None if self._default_deadline is None else now + self._default_deadline,
            ):
                if limit is not None and (earliest is None or limit < earliest):
                    earliest = limit
        return CallState(
            request=request,
            deployment=self.deployment.name,
            model=request.model or self.deployment.model,
            deadline=earliest,
            started_at=now,
            estimated_input_tokens=self.codec.estimate_input_tokens(request),
            estimator=self._estimator,
        )

    def begin_exchange(self, state: CallState) -> Attempt:
        if state.cancelled:
            raise Cancelled("cancelled before sending")
        record = Attempt("ok")
        state.attempts.append(record)
        return record

    def head(
        self,
        state: CallState,
        exchange: Exchange,
        status: int,
        headers: dict[str, str],
        outcome: Outcome,
        entered: list[Any],
        responders: list[tuple[int, Any]] | None = None,
    ) -> str:
        """The response head arrived: the exchange's reading mode, after the attempt's
        policies have seen the headers (rate-limit feedback before a long stream ends).
        ``responders``: which of them to call here (the asyncio driver calls the ones
        doing I/O itself)."""
        mode = exchange.head(status, headers)
        outcome.responded = True
        for index, on_response in self.responders if responders is None else responders:
            if index < len(entered):
                on_response(state, entered[index])
        return mode

    def exchange_ok(self, state: CallState, record: Attempt, result: ChatResult) -> None:
        record.status = state.status
        self._charge(state, result, failed=False)

    def exchange_failed(
        self, state: CallState, record: Attempt, error: BaseException
    ) -> InferenceError:
        """What a failed exchange becomes (the caller raises it)."""
        if not isinstance(error, InferenceError):
            failure: InferenceError = PluginError(
                f"the provider's codec failed: {type(error).__name__}: {error}"
            )
            failure.__cause__ = error
            error = failure
        # A server may echo the key in its message (gateways do): never let it through.
        redact_error(error, session_secrets(self.session))
        failure = error
        if state.cancelled and not isinstance(error, Cancelled):
            # The cut connection surfaces as a network error: say what happened, below the
            # retry and breaker policies so neither holds it against the provider.
            failure = Cancelled(
                "cancelled by the caller", request_id=error.request_id, partial=error.partial
            )
            failure.__cause__ = error
        record.kind, record.status = failure.kind, error.status
        if error.partial is not None:  # output arrived, so tokens were billed
            self._charge(state, error.partial, failed=True)
        return failure

    def reauthorize(self, state: CallState, error: InferenceError, used: Any) -> bool:
        """After a 401: whether the key rotated under us and the exchange is worth
        repeating once with the new one (the session re-reads the credential)."""
        session = self.session
        if session is None or used is None or error.status != 401 or error.kind != "unauthorized":
            return False
        return session.reauthorize(used)

    def credential_in_use(self) -> Any:
        session = self.session
        return None if session is None else session.cell.current

    def after_failure(
        self, state: CallState, error: InferenceError, retries: int, recorded: int, delivered: int
    ) -> Wait:
        """Record a failed attempt, then the wait before the next one; raises when there is
        none (no retry policy, or it gives up)."""
        if len(state.attempts) == recorded:
            # Refused before the wire (breaker open, rate limit): still an attempt.
            state.attempts.append(Attempt(error.kind, error.status))
        elif state.attempts[-1].kind == "ok":  # the exchange went through, a policy failed it
            state.attempts[-1].kind = error.kind
        if isinstance(error, Cancelled | PluginError):
            raise error
        if state.hand_over is not None and state.hand_over(error):
            raise error  # a router takes it to another deployment rather than wait here
        policy = self.retry_policy
        if policy is None:
            raise error
        wait: Wait = policy.retry_wait(state, error, retries, delivered)  # type: ignore[attr-defined]
        state.attempts[-1].wait = wait.seconds
        return wait

    def finished(self, state: CallState) -> ChatResult:
        """The request succeeded: timings, attempts and cost on its result."""
        result = state.result
        if result is None:
            raise InferenceError("the request ended without a result")
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
        self.hooks.request_finished(self.deployment.name, state.request, result, None)
        return result

    def failed(self, state: CallState, error: InferenceError) -> None:
        if not error.attempts:
            error.attempts = list(state.attempts)
        if error.partial is not None and state.spend.charged:
            error.partial.cost_usd = state.spend.total
            error.partial.cost_estimated = state.spend.estimated
        self.hooks.request_finished(self.deployment.name, state.request, None, error)

    @staticmethod
    def leave_all(
        state: CallState, policies: list[Policy], entered: list[Any], outcome: Outcome
    ) -> BaseException | None:
        """Leave every entered policy, innermost first (``entered[i]`` is the ticket of
        ``policies[i]``); every one is left even when one fails (a plugin's bug), and the
        first such failure is returned."""
        problem: BaseException | None = None
        while entered:
            ticket = entered.pop()
            try:
                policies[len(entered)].leave(state, ticket, outcome)
            except Exception as exc:
                if problem is None:
                    problem = exc
        return problem

    # -- cost -------------------------------------------------------------------------------

    def estimate_cost(self, request: ChatRequest) -> CostEstimate:
        sampling = request.sampling
        max_output = (sampling.max_tokens or DEFAULT_MAX_OUTPUT_TOKENS) * max(1, sampling.n or 1)
        # Azure ignores request.model (the deployment is in the URL): base_model decides.
        model = self.deployment.base_model or request.model or self.deployment.model
        return estimate_cost(self.prices, model, request.messages, max_output)

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
                state.estimated_input_tokens = self.codec.estimate_input_tokens(state.request)
            usage = Usage(state.estimated_input_tokens, estimate_output_tokens(result))
        rates = self._rates(result.model, state.model)
        cost = None if rates is None or usage is None else cost_from_usage(rates, usage)
        state.spend.add(cost, usage, estimated=estimated)
        result.cost_usd, result.cost_estimated = cost, estimated

    def _rates(self, reported: str | None, requested: str) -> ModelRates | None:
        """The rates of the model an answer is priced at, found once per pair of names (a
        deployment sees a handful; the memo stops growing at :data:`_MAX_PRICED`)."""
        key = (reported, requested)
        memo = self._priced
        if key in memo:
            return memo[key]
        rates = self.prices.get(self._priced_model(reported, requested))
        if len(memo) < _MAX_PRICED:
            memo[key] = rates
        return rates

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

    def close(self) -> None:
        try:
            self.codec.close()
        finally:
            for policy in self.policies:
                close = getattr(policy, "close", None)
                if close is not None:
                    close()


class OpenStream:
    """An attempt's stream once its head is in, as both drivers read it: what each block
    means, what a failure while reading is, and the result at the end. A driver's
    subclass reads the blocks (``next``) and closes the response with :attr:`how`."""

    __slots__ = ("_core", "_exchange", "_record", "_state", "how")

    def __init__(
        self, core: DeploymentCore, state: CallState, record: Attempt, exchange: Exchange
    ) -> None:
        self._core = core
        self._state = state
        self._record = record
        self._exchange = exchange
        # How the body ended, for the transport: "abandoned" until the body's end
        # ("complete") or the provider's end marker ("ended") is reached.
        self.how = "abandoned"

    @property
    def ended(self) -> bool:
        """Whether the provider's end marker came: nothing after it is read."""
        if self._exchange.done:
            self.how = "ended"
            return True
        return False

    def chunks(self, block: bytes) -> list[TokenChunk] | None:
        """The chunks ``block`` completes (maybe none); ``None`` at the body's end."""
        if not block:
            self.how = "complete"
            return None
        try:
            return self._exchange.feed(block)
        except Exception as exc:
            raise self.failed(exc)  # noqa: B904 - failed() keeps the cause

    def failed(self, error: BaseException) -> InferenceError:
        """What a failure while reading the stream means (the driver raises it)."""
        if isinstance(error, InferenceError):
            error = self._exchange.broken(error)
        failure = self._core.exchange_failed(self._state, self._record, error)
        if failure is not error and failure.__cause__ is None:
            failure.__cause__ = error
        return failure

    def end(self, attempt: Outcome) -> None:
        """The stream is over: its result on the attempt (raises what the end stands for)."""
        try:
            result = self._exchange.end()
        except Exception as exc:
            raise self.failed(exc)  # noqa: B904 - failed() keeps the cause
        attempt.result = result
        self._core.exchange_ok(self._state, self._record, result)
