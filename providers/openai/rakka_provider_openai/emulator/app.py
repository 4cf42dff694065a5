"""One request, start to finish: route, authenticate, pick a fault, answer.

This is the emulator's behaviour; ``server`` only moves bytes and threads around it.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any
from urllib.parse import parse_qs, unquote

from . import errors
from .chat_request import BadInput, ChatAsk, body_model, parse_chat, wants_stream
from .content import (
    completion_pieces,
    continued,
    fragments,
    prompt_seed,
    prompt_tokens,
    tool_arguments,
    unfinished_turn,
)
from .faults import ERROR_FAULTS, Fault, FaultBudget, parse_fault
from .framing import Request
from .injection import error_answer, retry_headers
from .keys import KeyRing
from .limits import RateBucket, go_duration
from .render import Choice, Completion, ToolCall, completion_body, stream_events
from .respond import MALFORMED_EVENT, Responder
from .scenario import Scenario
from .stats import Stats

_AZURE_PREFIX = "/openai/deployments/"
_AZURE_SUFFIX = "/chat/completions"

# Ids need to be unique, not unguessable: a PRNG avoids a getrandom syscall per id.
_ids = random.Random()


def _hex(nbytes: int) -> str:
    return _ids.getrandbits(nbytes * 8).to_bytes(nbytes).hex()


class EmulatorApp:
    def __init__(
        self,
        *,
        model: str,
        keys: KeyRing,
        bucket: RateBucket,
        enforce_limits: bool,
        chunk_delay: float,
        scenario: Scenario | None,
        stats: Stats,
        stopping: threading.Event,
    ) -> None:
        self.model = model
        self.keys = keys
        self.bucket = bucket
        self.enforce_limits = enforce_limits
        self.chunk_delay = chunk_delay
        self.scenario = scenario
        self.stats = stats
        self.stopping = stopping
        self.budget = FaultBudget()
        self._models_body = errors.dumps({"object": "list", "data": [self._model_entry()]})

    def _model_entry(self) -> dict[str, Any]:
        return {
            "id": self.model,
            "object": "model",
            "created": 1_700_000_000,
            "owned_by": "rakka-emulator",
        }

    def wait(self, seconds: float) -> bool:
        """Sleep; True when the emulator is stopping and the response should be abandoned."""
        return self.stopping.wait(seconds) if seconds > 0 else self.stopping.is_set()

    def handle(self, respond: Responder, request: Request) -> bool:
        """Answer one request; returns whether the connection may carry another."""
        self.stats.count_request()
        respond.headers.append(b"x-request-id: req_%s\r\n" % _hex(16).encode())
        path, _, query = request.target.partition("?")
        method = request.method
        if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            return self._chat(respond, request, azure=False)
        if method == "POST" and path.startswith(_AZURE_PREFIX) and path.endswith(_AZURE_SUFFIX):
            deployment = path[len(_AZURE_PREFIX) : -len(_AZURE_SUFFIX)]
            if deployment and "/" not in deployment:
                respond.headers.append(b"apim-request-id: %s\r\n" % _hex(16).encode())
                # Azure resolves the API version before it looks at credentials.
                versions = parse_qs(query).get("api-version")
                if not versions:
                    return self._send(respond, 404, errors.AZURE_NOT_FOUND)
                return self._chat(respond, request, azure=True, api_version=versions[0])
        if method == "GET" and (
            path in ("/v1/models", "/models") or path.startswith(("/v1/models/", "/models/"))
        ):
            return self._models(respond, request, path)
        return self._send(respond, 404, errors.invalid_url(method, path))

    def _send(self, respond: Responder, status: int, body: bytes) -> bool:
        """A response that consumed nothing from the rate bucket."""
        respond.headers.append(self.bucket.peek())
        return respond.send(status, body)

    def _authorized(self, request: Request, *, azure: bool) -> bool:
        return self.keys.open or self.keys.accepts(_credential(request, azure=azure))

    def _unauthorized(self, respond: Responder, request: Request, *, azure: bool) -> bool:
        key = _credential(request, azure=azure)
        if azure:
            body = errors.AZURE_MISSING_KEY if key is None else errors.AZURE_INVALID_KEY
        else:
            body = errors.missing_key() if key is None else errors.invalid_key(key)
        return self._send(respond, 401, body)

    def _models(self, respond: Responder, request: Request, path: str) -> bool:
        name = path.partition("/models")[2].strip("/")
        if "/" in name:
            return self._send(respond, 404, errors.invalid_url("GET", path))
        if not self._authorized(request, azure=False):
            return self._unauthorized(respond, request, azure=False)
        if not name:
            return self._send(respond, 200, self._models_body)
        if unquote(name) == self.model:
            return self._send(respond, 200, errors.dumps(self._model_entry()))
        return self._send(respond, 404, errors.http_error(404, unquote(name), azure=False))

    # -- chat completions -----------------------------------------------------------------

    def _chat(
        self, respond: Responder, request: Request, *, azure: bool, api_version: str | None = None
    ) -> bool:
        if not self._authorized(request, azure=azure):
            return self._unauthorized(respond, request, azure=azure)
        try:
            fault = self._pick_fault(request)
        except ValueError as exc:
            return self._send(respond, 400, errors.emulator_error(str(exc)))
        if fault is not None:
            self.stats.count_fault(fault.name)
            respond.headers.extend(retry_headers(fault))
            if fault.name == "reset":
                return respond.reset()
            if fault.name == "stall" and self.wait(fault.number("seconds", 1.0)):
                return False
            if fault.name in ERROR_FAULTS:
                model = self.model if azure else body_model(request.body) or self.model
                status, body = error_answer(fault, azure=azure, model=model, rpm=self.bucket.rpm)
                return self._send(respond, status, body)
            if fault.name == "stream_error" and not wants_stream(request.body):
                return self._send(respond, 500, errors.server_error(500, azure=False))
        try:
            ask = parse_chat(
                request.body,
                request.headers,
                model=self.model if azure else None,
                default_model=self.model,
                api_version=api_version,
            )
        except BadInput as exc:
            return self._send(respond, 400, exc.body)
        return self._answer(respond, ask, azure=azure, fault=fault)

    def _pick_fault(self, request: Request) -> Fault | None:
        # The scenario numbers every request, even one a header overrides, so that
        # "request 7" means the same thing whether or not other tests add headers.
        scenario = self.scenario
        planned = scenario.next_fault() if scenario is not None else None
        spec = request.headers.get("x-emulator-fault")
        fault = parse_fault(spec) if spec else planned
        if fault is not None and not self.budget.admit(fault):
            return None
        return fault

    def _answer(
        self, respond: Responder, ask: ChatAsk, *, azure: bool, fault: Fault | None
    ) -> bool:
        prompt = ask.prompt_tokens if ask.prompt_tokens is not None else prompt_tokens(ask.messages)
        prompt = max(prompt, ask.cached_tokens)  # cached tokens are a subset of the prompt
        # Like OpenAI, count the prompt plus the most the answer may use against the budget.
        budgeted = prompt + ask.count * ask.n
        verdict = self.bucket.take(budgeted, enforce=self.enforce_limits)
        respond.headers.append(verdict.headers)
        if not verdict.allowed:
            return self._refuse(respond, verdict.exhausted, verdict.wait, ask.model, budgeted)

        choices = _choices(
            ask,
            cut_short=fault is not None and fault.name == "content_filter_finish",
            refuse=fault is not None and fault.name == "refusal",
        )
        emitted = sum(
            len(c.pieces) if c.tool_call is None else -(-len(c.tool_call.arguments) // 4)
            for c in choices
        )
        completion = Completion(
            id=f"chatcmpl-{_hex(12)}",
            created=int(time.time()),
            model=ask.model,
            choices=choices,
            usage=_usage(
                prompt, emitted + ask.reasoning_tokens, ask.cached_tokens, ask.reasoning_tokens
            ),
            azure=azure,
            logprobs=ask.logprobs,
        )
        if not ask.stream:
            return respond.send(200, completion_body(completion), fault=fault)
        events = stream_events(completion, include_usage=ask.include_usage)
        if fault is not None and fault.name in ("malformed", "stream_error"):
            first = 2 if azure else 1  # Azure's choice-less opening chunk does not count
            if fault.name == "malformed":
                events.insert(first + fault.count("after", 0), MALFORMED_EVENT)
            else:
                events[first:] = [errors.STREAM_ERROR_EVENT]
        return respond.stream(events, delay=self.chunk_delay, fault=fault)

    def _refuse(
        self, respond: Responder, exhausted: str, wait: float, model: str, requested: int
    ) -> bool:
        limit = self.bucket.rpm if exhausted == "requests" else self.bucket.tpm
        respond.headers.append(b"retry-after: %d\r\n" % max(1, -(-wait // 1)))
        respond.headers.append(b"retry-after-ms: %d\r\n" % max(1, round(wait * 1000)))
        body = errors.rate_limited(
            model,
            kind=exhausted,
            limit=limit,
            used=limit,
            requested=1 if exhausted == "requests" else requested,
            wait=go_duration(wait),
        )
        return respond.send(429, body)


def _credential(request: Request, *, azure: bool) -> str | None:
    """The presented key: Azure's ``api-key`` header, else a Bearer token (Entra on Azure)."""
    if azure and "api-key" in request.headers:
        return request.headers["api-key"]
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


REFUSAL_PIECES = ("I'm", " sorry,", " I", " can't", " help", " with", " that.")
"""What a refusing model says (the ``refusal`` fault), one piece per token."""


def _choices(ask: ChatAsk, *, cut_short: bool, refuse: bool = False) -> tuple[Choice, ...]:
    seed = prompt_seed(ask.messages)
    choices = []
    for index in range(ask.n):
        if refuse:
            choices.append(Choice(REFUSAL_PIECES, None, "stop", refusal=True))
            continue
        if ask.tool is not None:
            arguments = tool_arguments(ask.tool, seed + index)
            function = ask.tool.get("function")
            name = str(function.get("name", "")) if isinstance(function, dict) else ""
            call = ToolCall(
                f"call_{(seed + index) & 0xFFFFFFFF:08x}{_hex(8)}",
                name,
                arguments,
                tuple(fragments(arguments)),
            )
            choices.append(Choice((), call, "tool_calls"))
            continue
        pieces = completion_pieces((seed + index) & 0xFFFFFFFF, ask.count)
        if ask.n == 1:
            pieces = continued(pieces, unfinished_turn(ask.messages))
        if cut_short:
            choices.append(Choice(pieces[: max(1, ask.count // 2)], None, "content_filter"))
        else:
            choices.append(Choice(pieces, None, "stop" if ask.limit is None else "length"))
    return tuple(choices)


def _usage(prompt: int, completion: int, cached: int, reasoning: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
