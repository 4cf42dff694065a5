"""Anthropic Messages on the wire: the caller's OpenAI-shaped request out, Messages in.

Pure functions and one stream aggregate, no I/O.

Request translation (the caller keeps the request shape it uses for OpenAI):

- ``system`` and ``developer`` messages are lifted out into the top-level ``system``
  string (joined with a blank line, in order);
- content parts become content blocks (``text``; ``image_url`` as a ``base64`` source for
  ``data:`` URLs, a ``url`` source otherwise); other part types are refused;
- an assistant's ``tool_calls`` become ``tool_use`` blocks (arguments parsed as JSON);
  ``tool`` messages become ``tool_result`` blocks of a user turn;
- consecutive turns of the same role are merged into one (the API alternates roles, and
  every ``tool_result`` answering one assistant turn must sit in the next user turn);
- ``tools`` (``type: function``) become ``{name, description, input_schema}``;
  ``tool_choice`` ``auto``/``required``/``none``/a named function become ``auto``/``any``/
  ``none``/``tool``;
- ``max_tokens`` is required by the API: the deployment's ``default_max_tokens`` when
  unset. ``stop`` becomes ``stop_sequences``, ``user`` becomes ``metadata.user_id``;
  ``response_format`` ``json_schema`` becomes ``output_format``; ``text`` is dropped;
  ``json_object`` (no schema-free JSON mode) and ``n > 1`` are refused;
  ``presence_penalty``, ``frequency_penalty`` and ``seed`` have no Messages equivalent and
  are not sent.

Responses: ``text`` blocks are the text, ``tool_use`` blocks the tool calls (``input``
re-serialised as the JSON arguments string), ``thinking`` blocks are not carried.
``stop_reason`` becomes an OpenAI ``finish_reason`` (:data:`FINISH_REASONS`). Usage:
``input_tokens`` of :class:`Usage` is the whole prompt (``input_tokens`` +
``cache_creation_input_tokens`` + ``cache_read_input_tokens``), with the cache reads in
``cached_tokens`` and the cache writes in ``cache_write_tokens``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rakka_provider_anthropic.errors import classify_stream_error
from rakka_runtime.provider import (
    ChatRequest,
    ChatResult,
    InvalidRequest,
    ProtocolError,
    SSEEvent,
    StreamInterrupted,
    TextBuffer,
    TokenChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
    decode_json,
    encode_json,
)

__all__ = [
    "FINISH_REASONS",
    "MessagesStream",
    "build_messages_body",
    "parse_message",
    "parse_usage",
]

FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
"""``stop_reason`` → ``finish_reason``; an unknown reason passes through unchanged."""


def finish_reason(stop_reason: object) -> str | None:
    if not isinstance(stop_reason, str) or not stop_reason:
        return None
    return FINISH_REASONS.get(stop_reason, stop_reason)


# --- requests ------------------------------------------------------------------------------


def _text_of(content: object, where: str) -> str:
    """A system message's content as one string."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            else:
                raise InvalidRequest(f"{where}: a system message takes text parts only")
        return "\n".join(texts)
    raise InvalidRequest(f"{where}: content must be a string or a list of parts")


def _image_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else None
    if not isinstance(url, str):
        raise InvalidRequest(f"{where}.image_url.url: a string is required")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[len("data:") :].split(";")[0]
        if ";base64" not in header or not media_type:
            raise InvalidRequest(f"{where}: a data: URL image must be base64 with a media type")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: object, where: str) -> list[dict[str, Any]]:
    """A user or assistant message's content as content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, Sequence):
        raise InvalidRequest(f"{where}: content must be a string or a list of parts")
    out: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            out.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "refusal":
            out.append({"type": "text", "text": str(part.get("refusal", ""))})
        elif kind == "image_url":
            out.append(_image_block(part, f"{where}[{j}]"))
        else:
            raise InvalidRequest(f"{where}[{j}].type: {kind!r} has no Messages API equivalent")
    return out


def _tool_use(call: object, where: str) -> dict[str, Any]:
    if not isinstance(call, Mapping):
        raise InvalidRequest(f"{where}: a tool call must be an object")
    function = call.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise InvalidRequest(f"{where}.function.name: a string is required")
    arguments = function.get("arguments") or "{}"
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError as exc:
        raise InvalidRequest(f"{where}.function.arguments: not JSON ({exc})") from exc
    if not isinstance(parsed, Mapping):
        raise InvalidRequest(f"{where}.function.arguments: must be a JSON object")
    return {
        "type": "tool_use",
        "id": str(call.get("id") or ""),
        "name": function["name"],
        "input": dict(parsed),
    }


def _tool_result(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"{where}.tool_call_id: a string is required")
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        block["content"] = content
    else:
        block["content"] = _blocks(content, f"{where}.content")
    return block


def translate_messages(
    messages: Sequence[Mapping[str, Any]],
) -> tuple[str | None, list[dict[str, Any]]]:
    """``(system, messages)`` of the Messages API for OpenAI-shaped ``messages``."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(message.get("content"), where))
            continue
        if role == "user":
            turn_role, blocks = "user", _blocks(message.get("content"), f"{where}.content")
        elif role == "assistant":
            blocks = _blocks(message.get("content"), f"{where}.content")
            for k, call in enumerate(message.get("tool_calls") or ()):
                blocks.append(_tool_use(call, f"{where}.tool_calls[{k}]"))
            turn_role = "assistant"
        elif role == "tool":
            turn_role, blocks = "user", [_tool_result(message, where)]
        else:
            raise InvalidRequest(f"{where}.role: {role!r} is not supported by the Messages API")
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    for turn in turns:  # a lone text block is sent the short way, as the docs show it
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]
    return ("\n\n".join(system) if system else None), turns


def _tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if tool.get("type", "function") == "function" else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"tools[{i}]: only function tools with a name are supported")
        entry: dict[str, Any] = {
            "name": function["name"],
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = function["description"]
        out.append(entry)
    return out


def _tool_choice(choice: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(choice, str):
        mapped = {"auto": "auto", "required": "any", "none": "none"}.get(choice)
        if mapped is None:
            raise InvalidRequest(f"tool_choice: {choice!r} is not auto, required or none")
        return {"type": mapped}
    function = choice.get("function")
    if choice.get("type") == "function" and isinstance(function, Mapping):
        return {"type": "tool", "name": str(function.get("name"))}
    raise InvalidRequest("tool_choice: expected a string or {type: function, function: {name}}")


def _response_format(fmt: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise InvalidRequest("response_format.json_schema.schema: an object is required")
        return {"type": "json_schema", "schema": schema}
    raise InvalidRequest(
        f"response_format: {kind!r} has no Messages API equivalent (use json_schema)"
    )


def build_messages_body(request: ChatRequest, *, model: str, default_max_tokens: int) -> bytes:
    """The JSON body of one ``POST /v1/messages`` for ``request``."""
    system, messages = translate_messages(request.messages)
    s = request.sampling
    if s.n is not None and s.n != 1:
        raise InvalidRequest("n: the Messages API returns one answer per request")
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": s.max_tokens if s.max_tokens is not None else default_max_tokens,
        "messages": messages,
    }
    if system is not None:
        body["system"] = system
    if s.temperature is not None:
        body["temperature"] = s.temperature
    if s.top_p is not None:
        body["top_p"] = s.top_p
    if s.stop is not None:
        body["stop_sequences"] = [s.stop] if isinstance(s.stop, str) else list(s.stop)
    if request.tools is not None:
        body["tools"] = _tools(request.tools)
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.response_format is not None:
        output_format = _response_format(request.response_format)
        if output_format is not None:
            body["output_format"] = output_format
    if request.user is not None:
        body["metadata"] = {"user_id": request.user}
    if request.stream:
        body["stream"] = True
    if request.extra_body:
        extra = request.extra_body
        if "stream" in extra and bool(extra["stream"]) is not request.stream:
            raise InvalidRequest(
                f"extra_body.stream: {extra['stream']!r} contradicts stream={request.stream}"
            )
        body.update(extra)
    try:
        return encode_json(body)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc


# --- responses -----------------------------------------------------------------------------


def _count(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ProtocolError(f"usage.{key} is not an integer: {value!r}")


def parse_usage(obj: object) -> Usage | None:
    """A Messages ``usage`` object as :class:`Usage` (see the module notes)."""
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise ProtocolError(f"usage is not an object: {type(obj).__name__}")
    written = _count(obj, "cache_creation_input_tokens")
    read = _count(obj, "cache_read_input_tokens")
    return Usage(
        input_tokens=_count(obj, "input_tokens") + written + read,
        output_tokens=_count(obj, "output_tokens"),
        cached_tokens=read,
        cache_write_tokens=written,
    )


def _arguments(value: object) -> str:
    if value is None or value == {}:
        return "{}"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parse_message(obj: Mapping[str, Any], request_id: str) -> ChatResult:
    """A non-streamed ``message`` object as a :class:`ChatResult`."""
    content = obj.get("content")
    if obj.get("type") != "message" or not isinstance(content, list):
        raise ProtocolError("response is not a Messages API message (no 'content' list)")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        if not isinstance(block, Mapping):
            raise ProtocolError("response content block is not an object")
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append(
                ToolCall(
                    id=str(block.get("id") or ""),
                    name=str(block.get("name") or ""),
                    arguments=_arguments(block.get("input")),
                )
            )
    return ChatResult(
        request_id=request_id,
        text="".join(texts),
        tool_calls=calls,
        finish_reason=finish_reason(obj.get("stop_reason")),
        usage=parse_usage(obj.get("usage")),
        model=obj.get("model") if isinstance(obj.get("model"), str) else None,
        response_id=obj.get("id") if isinstance(obj.get("id"), str) else None,
    )


class _ToolParts:
    __slots__ = ("args", "id", "name", "ordinal")

    def __init__(self, ordinal: int, call_id: str, name: str) -> None:
        self.ordinal = ordinal
        self.id = call_id
        self.name = name
        self.args: list[str] = []


class MessagesStream:
    """One streamed Messages response: ``message_start``, per block ``content_block_start``
    / ``content_block_delta`` / ``content_block_stop``, ``message_delta`` (stop reason,
    cumulative usage), ``message_stop``; ``ping`` anywhere, ``error`` anywhere.

    Tool input arrives as ``input_json_delta`` fragments of the block's ``index``; they are
    joined per block and surface as :class:`ToolCallDelta` values whose ``index`` counts
    tool calls (0, 1, ...), as OpenAI's do, not content blocks.
    """

    __slots__ = (
        "_finish",
        "_loads",
        "_model",
        "_request_id",
        "_response_id",
        "_text",
        "_tools",
        "_usage",
        "done",
    )

    def __init__(self, request_id: str) -> None:
        self._request_id = request_id
        self._loads = decode_json
        self._text = TextBuffer()
        self._tools: dict[int, _ToolParts] = {}  # by content block index
        self._usage: dict[str, int] = {}
        self._finish: str | None = None
        self._model: str | None = None
        self._response_id: str | None = None
        self.done = False

    def event(self, event: SSEEvent) -> TokenChunk | None:
        name = event.event
        if name == "ping":
            return None
        try:
            obj = self._loads(event.data)
        except ValueError as exc:
            raise ProtocolError(f"stream event is not JSON: {event.data[:80]!r}") from exc
        if not isinstance(obj, dict):
            raise ProtocolError(f"stream event is not an object: {type(obj).__name__}")
        kind = obj.get("type", name)
        try:
            if kind == "content_block_delta":
                return self._delta(obj)
            if kind == "content_block_start":
                return self._block_start(obj)
            if kind == "message_delta":
                return self._message_delta(obj)
            if kind == "message_start":
                message = obj["message"]
                self._model = message.get("model") or self._model
                self._response_id = message.get("id") or self._response_id
                self._merge_usage(message.get("usage"))
                return None
            if kind == "message_stop":
                self.done = True
                return None
            if kind == "error":
                raise classify_stream_error(obj, partial=self.partial())
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProtocolError(f"stream event {kind!r} is malformed: {exc!r}") from exc
        return None  # content_block_stop, ping, and event types added later

    def _delta(self, obj: dict[str, Any]) -> TokenChunk | None:
        delta = obj["delta"]
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta["text"]
            if not text:
                return None
            self._text.append(text)
            return TokenChunk(self._request_id, text_delta=text)
        if kind == "input_json_delta":
            parts = self._tools.get(obj["index"])
            if parts is None:
                raise ProtocolError("input_json_delta for a block that is not a tool_use")
            fragment = delta.get("partial_json") or ""
            if not fragment:
                return None
            parts.args.append(fragment)
            return TokenChunk(
                self._request_id,
                tool_call_delta=[ToolCallDelta(index=parts.ordinal, arguments=fragment)],
            )
        return None  # thinking_delta, signature_delta, citations_delta: not carried

    def _block_start(self, obj: dict[str, Any]) -> TokenChunk | None:
        block = obj["content_block"]
        kind = block.get("type")
        if kind == "text":
            text = block.get("text") or ""
            if text:
                self._text.append(text)
                return TokenChunk(self._request_id, text_delta=text)
            return None
        if kind != "tool_use":
            return None
        parts = _ToolParts(len(self._tools), str(block.get("id") or ""), str(block["name"]))
        self._tools[obj["index"]] = parts
        initial = block.get("input")
        if initial:  # the API sends {} and streams the input; take a whole one if sent
            parts.args.append(_arguments(initial))
        return TokenChunk(
            self._request_id,
            tool_call_delta=[
                ToolCallDelta(
                    index=parts.ordinal,
                    id=parts.id,
                    name=parts.name,
                    arguments="".join(parts.args),
                )
            ],
        )

    def _message_delta(self, obj: dict[str, Any]) -> TokenChunk:
        finish = finish_reason(obj.get("delta", {}).get("stop_reason"))
        if finish is not None:
            self._finish = finish
        self._merge_usage(obj.get("usage"))
        return TokenChunk(self._request_id, usage=self._current_usage(), finish_reason=finish)

    def _merge_usage(self, usage: object) -> None:
        # message_delta's counts are cumulative: a later value replaces an earlier one.
        if isinstance(usage, Mapping):
            for key, value in usage.items():
                if isinstance(value, int) and not isinstance(value, bool):
                    self._usage[key] = value

    def _current_usage(self) -> Usage | None:
        return parse_usage(self._usage) if self._usage else None

    def partial(self) -> ChatResult:
        calls = [
            ToolCall(id=parts.id, name=parts.name, arguments="".join(parts.args) or "{}")
            for parts in sorted(self._tools.values(), key=lambda p: p.ordinal)
        ]
        return ChatResult(
            request_id=self._request_id,
            text=self._text.text(),
            tool_calls=calls,
            finish_reason=self._finish,
            usage=self._current_usage(),
            model=self._model,
            response_id=self._response_id,
        )

    def finish(self) -> ChatResult:
        result = self.partial()
        if not self.done:
            raise StreamInterrupted("the stream ended before message_stop", partial=result)
        return result
