"""OpenAI Chat Completions wire format: request bodies out, responses and stream chunks in.

Pure functions, no I/O. The runner owns transport and SSE framing; this module only sees
``bytes`` it must send and ``dict`` objects already parsed from JSON.

Parsing is tolerant the way openai-python's models are: unknown fields are ignored and
optional fields may be missing or ``null``. Anything that is not the API's shape at all
(no ``choices`` list, a choice that is not an object, a non-integer token count) raises
:class:`~rakka_runtime.errors.ProtocolError`, which the retry policy treats as transient.

Only choice ``index == 0`` is aggregated (streamed or not). With ``n > 1`` the other choices
are billed and counted in ``usage`` but their text and tool calls are dropped: ``ChatResult``
holds one answer, and carrying the rest per chunk would cost every caller for a rare case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from rakka_provider_openai.errors import classify_stream_error
from rakka_runtime.provider import (
    ChatResult,
    ExecuteBatch,
    InvalidRequest,
    ProtocolError,
    TextBuffer,
    TokenChunk,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
    encode_json,
)

__all__ = [
    "ChatAggregate",
    "build_chat_body",
    "decode_stream_chunk",
    "parse_completion",
    "parse_usage",
    "uses_max_completion_tokens",
]

# Reasoning families reject ``max_tokens``; only consulted for endpoints whose deployment does
# not decide the field (OpenAI-compatible servers other than OpenAI and Azure). Dated
# snapshots (``o3-2025-04-16``), variants (``o4-mini``, ``gpt-5.1-codex``), fine-tunes
# (``ft:o4-mini-...``) and router prefixes (``openai/gpt-5``) all keep the family name right
# after the optional prefix; the trailing boundary stops ``o10`` or ``gpt-50`` from matching.
_MAX_COMPLETION_TOKENS_MODEL = re.compile(r"(?:ft:)?(?:[\w.-]+/)?(?:o1|o3|o4|gpt-5)(?:$|[-.:_])")


def uses_max_completion_tokens(model: str) -> bool:
    """Whether ``model`` needs ``max_completion_tokens`` instead of the older ``max_tokens``.

    True for the o1, o3, o4 and gpt-5 families and their dated snapshots.
    """
    return _MAX_COMPLETION_TOKENS_MODEL.match(model.lower()) is not None


def build_chat_body(
    req: ExecuteBatch,
    *,
    model: str,
    stream: bool,
    azure: bool = False,
    limit_key: str | None = None,
) -> bytes:
    """The JSON body of one ``POST .../chat/completions`` for ``req``.

    ``model`` is the resolved model (the request's override or the deployment's). Azure's
    2024-10-21 schema has no ``model`` field (the deployment is in the URL), so it is left
    out there. ``limit_key`` is the field that carries ``max_tokens`` (the deployment's
    :func:`~rakka_provider_openai.deployment.completion_limit_key`); ``None`` means an
    endpoint that did not say: ``max_tokens``, or ``max_completion_tokens`` for a model
    of OpenAI's reasoning families (:func:`uses_max_completion_tokens`). ``extra_body`` is
    merged last and may override any field except ``stream``, which must agree with how
    the runner reads the response.

    Raises :class:`~rakka_runtime.errors.InvalidRequest` when the body cannot be encoded
    (NaN, objects JSON does not know) or ``extra_body`` contradicts ``stream``.
    """
    body: dict[str, Any] = {} if azure else {"model": model}
    body["messages"] = req.messages
    s = req.sampling
    if s.temperature is not None:
        body["temperature"] = s.temperature
    if s.top_p is not None:
        body["top_p"] = s.top_p
    if s.max_tokens is not None:
        key = limit_key
        if key is None:
            key = "max_completion_tokens" if uses_max_completion_tokens(model) else "max_tokens"
        body[key] = s.max_tokens
    if s.stop is not None:
        body["stop"] = s.stop
    if s.presence_penalty is not None:
        body["presence_penalty"] = s.presence_penalty
    if s.frequency_penalty is not None:
        body["frequency_penalty"] = s.frequency_penalty
    if s.seed is not None:
        body["seed"] = s.seed
    if s.n is not None:
        body["n"] = s.n
    if req.tools is not None:
        body["tools"] = req.tools
    if req.tool_choice is not None:
        body["tool_choice"] = req.tool_choice
    if req.response_format is not None:
        body["response_format"] = req.response_format
    if req.user is not None:
        body["user"] = req.user
    if stream:
        body["stream"] = True
        # Without it a stream never reports usage, and cost would have to be estimated.
        body["stream_options"] = {"include_usage": True}
    if req.extra_body:
        if "stream" in req.extra_body and bool(req.extra_body["stream"]) is not stream:
            raise InvalidRequest(
                f"extra_body.stream: {req.extra_body['stream']!r} contradicts stream={stream}; "
                "set ExecuteBatch.stream instead"
            )
        body.update(req.extra_body)
    try:
        return encode_json(body)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc


class _ToolCallParts:
    """One tool call being assembled; argument fragments are joined once, at the end."""

    __slots__ = ("args", "id", "name", "type")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.type = "function"
        self.args: list[str] = []


class ChatAggregate:
    """Everything one streamed response has said so far, for the final :class:`ChatResult`.

    Text fragments are kept in a :class:`TextBuffer` (grouped, so an open stream holds few
    objects) and joined once in :meth:`result`. Tool-call fragments are grouped by their
    ``index``: ``id`` and ``name`` come from the first fragment that carries them, the
    ``arguments`` fragments are concatenated in arrival order.

    :ivar finish_reason: the last non-null ``finish_reason`` of choice 0, passed through.
    :ivar usage: from the ``include_usage`` chunk, when the server sent one.
    :ivar model: the model the server says answered (Azure: the underlying model name).
    :ivar response_id: the ``chatcmpl-...`` id, not the ``x-request-id`` header.
    """

    __slots__ = (
        "_logprobs",
        "_refusal",
        "_refusal_logprobs",
        "_text",
        "_tools",
        "created",
        "finish_reason",
        "model",
        "response_id",
        "usage",
    )

    def __init__(self) -> None:
        self._text = TextBuffer()
        self._refusal = TextBuffer()
        # Created on the first chunk that carries log-probabilities (most streams have none).
        self._logprobs: list[TokenLogprob] | None = None
        self._refusal_logprobs: list[TokenLogprob] | None = None
        self._tools: dict[int, _ToolCallParts] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.response_id: str | None = None
        self.created: int | None = None

    @property
    def text(self) -> str:
        return self._text.text()

    @property
    def refusal(self) -> str | None:
        """The model's refusal message, if it refused."""
        return self._refusal.text() if self._refusal else None

    def add_tool_fragments(self, fragments: Sequence[Mapping[str, Any]]) -> list[ToolCallDelta]:
        """Fold in one delta's ``tool_calls``; returns the fragments as the caller sees them."""
        out: list[ToolCallDelta] = []
        for frag in fragments:
            index = frag.get("index")
            call_id = frag.get("id")
            if not isinstance(index, int):
                index = self._implicit_index(call_id)
            parts = self._tools.get(index)
            if parts is None:
                parts = self._tools[index] = _ToolCallParts()
            if call_id and parts.id is None:
                parts.id = call_id
            kind = frag.get("type")
            if kind:
                parts.type = kind
            fn = frag.get("function")
            name = None
            args = ""
            if fn:
                name = fn.get("name")
                if name and parts.name is None:
                    parts.name = name
                args = fn.get("arguments") or ""
                if args:
                    parts.args.append(args)
            out.append(ToolCallDelta(index=index, id=call_id, name=name, arguments=args))
        return out

    def _implicit_index(self, call_id: str | None) -> int:
        # Some OpenAI-compatible servers omit ``index``: a known id continues its call, a new
        # id starts the next one, and a fragment with neither continues the latest call.
        if call_id:
            for i, parts in self._tools.items():
                if parts.id == call_id:
                    return i
            return max(self._tools, default=-1) + 1
        return max(self._tools, default=0)

    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(
                id=parts.id or "",
                name=parts.name or "",
                arguments="".join(parts.args),
                type=parts.type,
            )
            for _, parts in sorted(self._tools.items())
        ]

    def result(self, request_id: str) -> ChatResult:
        """The aggregate as a :class:`ChatResult` (cost, timings and attempts are the runner's)."""
        return ChatResult(
            request_id=request_id,
            text=self._text.text(),
            tool_calls=self.tool_calls(),
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model,
            response_id=self.response_id,
            created=self.created,
            refusal=self.refusal,
            logprobs=self._logprobs,
            refusal_logprobs=self._refusal_logprobs,
        )


def _logprob_list(obj: Mapping[str, Any], key: str) -> list[TokenLogprob] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ProtocolError(f"logprobs.{key} is not a list")
    return value


def decode_stream_chunk(
    obj: dict[str, Any], request_id: str, agg: ChatAggregate
) -> TokenChunk | None:
    """Fold one parsed ``chat.completion.chunk`` into ``agg``; return what the caller sees.

    Returns ``None`` for chunks that carry nothing for the caller: Azure's first chunk
    (``choices: []`` with ``prompt_filter_results``), content-filter-only chunks, and empty
    deltas. The ``include_usage`` chunk (``choices: []`` plus ``usage``) gives a chunk with
    ``usage`` set. An ``{"error": ...}`` object raises what
    :func:`~rakka_provider_openai.errors.classify_stream_error` makes of it.
    """
    if not isinstance(obj, dict):
        raise ProtocolError(f"stream chunk is not an object: {type(obj).__name__}")
    if obj.get("error") is not None:
        raise classify_stream_error(obj)
    try:
        choices = obj["choices"]
        model = obj.get("model")
        if model:  # Azure's prompt-filter chunk has model ""
            agg.model = model
        response_id = obj.get("id")
        if response_id:
            agg.response_id = response_id
        created = obj.get("created")
        if isinstance(created, int) and agg.created is None:
            agg.created = created
        raw_usage = obj.get("usage")
        usage = parse_usage(raw_usage) if raw_usage is not None else None
        if usage is not None:
            agg.usage = usage
        text = ""
        refusal = ""
        deltas: list[ToolCallDelta] | None = None
        finish: str | None = None
        content_lp: list[TokenLogprob] | None = None
        refusal_lp: list[TokenLogprob] | None = None
        for choice in choices:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")  # absent on Azure's trailing content-filter chunks
            if delta:
                content = delta.get("content")
                if content:
                    text = content
                    agg._text.append(content)
                calls = delta.get("tool_calls")
                if calls:
                    deltas = agg.add_tool_fragments(calls)
                refusal = delta.get("refusal") or ""
                if refusal:
                    agg._refusal.append(refusal)
            logprobs = choice.get("logprobs")  # null unless the request asked for them
            if logprobs:
                content_lp = _logprob_list(logprobs, "content")
                if content_lp:
                    if agg._logprobs is None:
                        agg._logprobs = []
                    agg._logprobs.extend(content_lp)
                refusal_lp = _logprob_list(logprobs, "refusal")
                if refusal_lp:
                    if agg._refusal_logprobs is None:
                        agg._refusal_logprobs = []
                    agg._refusal_logprobs.extend(refusal_lp)
            finish = choice.get("finish_reason")
            if finish:
                agg.finish_reason = finish
    except (KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"stream chunk is not a chat.completion.chunk: {exc!r}") from exc
    if (
        not text
        and not refusal
        and deltas is None
        and not finish
        and usage is None
        and not content_lp
        and not refusal_lp
    ):
        return None
    return TokenChunk(
        request_id=request_id,
        text_delta=text,
        tool_call_delta=deltas,
        usage=usage,
        finish_reason=finish or None,
        refusal_delta=refusal,
        logprobs=content_lp or None,
        refusal_logprobs=refusal_lp or None,
    )


def parse_completion(obj: dict[str, Any], request_id: str) -> ChatResult:
    """A non-streamed ``chat.completion`` object as a :class:`ChatResult`."""
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not isinstance(choices, list):
        raise ProtocolError("response is not a chat.completion: no 'choices' list")
    get = obj.get
    response_id, created = get("id"), get("created")
    result = ChatResult(
        request_id=request_id,
        usage=parse_usage(get("usage")),
        model=get("model") or None,
        response_id=response_id if isinstance(response_id, str) else None,
        created=created if isinstance(created, int) else None,
    )
    choice = _first_choice(choices)
    if choice is None:
        if choices:
            raise ProtocolError("response has no choice with index 0")
        return result
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ProtocolError("response choice 0 has no 'message' object")
    content = message.get("content")
    if isinstance(content, str):
        result.text = content
    elif content is not None:
        raise ProtocolError("response message 'content' is neither a string nor null")
    refusal = message.get("refusal")
    if isinstance(refusal, str):
        result.refusal = refusal or None  # "" is no refusal, like null
    elif refusal is not None:
        raise ProtocolError("response message 'refusal' is neither a string nor null")
    logprobs = choice.get("logprobs")
    if logprobs is not None:
        if not isinstance(logprobs, dict):
            raise ProtocolError("response choice 'logprobs' is not an object")
        result.logprobs = _logprob_list(logprobs, "content")
        result.refusal_logprobs = _logprob_list(logprobs, "refusal")
    result.finish_reason = choice.get("finish_reason")
    raw_calls = message.get("tool_calls")
    if raw_calls:
        if not isinstance(raw_calls, list):
            raise ProtocolError("response message 'tool_calls' is not a list")
        result.tool_calls = [_parse_tool_call(call) for call in raw_calls]
    return result


def _first_choice(choices: list[Any]) -> dict[str, Any] | None:
    """Choice 0 (a loop, not ``next()`` over a generator: no generator made and closed
    per answer)."""
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None


def _parse_tool_call(call: object) -> ToolCall:
    if not isinstance(call, dict):
        raise ProtocolError("response tool call is not an object")
    kind = call.get("type") or "function"
    # Custom (free-form) tools carry ``custom: {name, input}`` instead of a function.
    body = call.get(kind) if kind == "custom" else call.get("function")
    if not isinstance(body, dict):
        raise ProtocolError(f"response tool call of type {kind!r} has no {kind!r} object")
    arguments = body.get("input" if kind == "custom" else "arguments")
    return ToolCall(
        id=call.get("id") or "",
        name=body.get("name") or "",
        arguments=arguments if isinstance(arguments, str) else "",
        type=kind,
    )


def _count(obj: Mapping[str, Any] | None, key: str) -> int:
    """``obj[key]`` as a token count: 0 when absent (or ``obj`` is not an object)."""
    if not isinstance(obj, dict):
        return 0
    value = obj.get(key)
    if value is None:
        return 0
    if type(value) is int:  # an integer, not a bool (a subclass of int)
        return value
    raise ProtocolError(f"usage.{key} is not an integer: {value!r}")


def parse_usage(obj: dict[str, Any] | None) -> Usage | None:
    """OpenAI's ``usage`` object as :class:`Usage`; ``None`` when there is none.

    ``output_tokens`` is ``completion_tokens``, which already includes reasoning tokens (the
    API bills them as output); ``reasoning_tokens`` is reported beside it, not added.
    """
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ProtocolError(f"usage is not an object: {type(obj).__name__}")
    get = obj.get
    prompt, completion = get("prompt_tokens"), get("completion_tokens")
    prompt_details = get("prompt_tokens_details")
    completion_details = get("completion_tokens_details")
    cached = 0 if prompt_details is None else _count(prompt_details, "cached_tokens")
    reasoning = 0 if completion_details is None else _count(completion_details, "reasoning_tokens")
    # The usual usage: both counts are integers (type(), since a bool is an int too).
    if type(prompt) is not int or type(completion) is not int:
        prompt, completion = _count(obj, "prompt_tokens"), _count(obj, "completion_tokens")
    return Usage(prompt, completion, cached, reasoning)
