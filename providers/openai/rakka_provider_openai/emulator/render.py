"""Completion bodies and SSE events in OpenAI's and Azure OpenAI's wire shapes.

Azure differs from OpenAI in three visible ways reproduced here: responses carry
``prompt_filter_results`` and per-choice ``content_filter_results``, and a stream opens with
a chunk that has no choices (and empty ``id``/``model``/``object``) but the prompt filter
results.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import dumps

FINGERPRINT = "fp_emulator"
DONE_EVENT = b"data: [DONE]\n\n"

_SAFE = {"filtered": False, "severity": "safe"}
_CHOICE_SAFE: dict[str, Any] = {
    "hate": _SAFE,
    "self_harm": _SAFE,
    "sexual": _SAFE,
    "violence": _SAFE,
}
_CHOICE_FILTERED: dict[str, Any] = {
    **_CHOICE_SAFE,
    "violence": {"filtered": True, "severity": "medium"},
}
PROMPT_FILTER_RESULTS: list[dict[str, Any]] = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            **_CHOICE_SAFE,
            "jailbreak": {"filtered": False, "detected": False},
        },
    }
]
_AZURE_FIRST_EVENT = (
    b"data: "
    + dumps(
        {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": PROMPT_FILTER_RESULTS,
        }
    )
    + b"\n\n"
)
_SAFE_JSON = dumps(_CHOICE_SAFE).decode()
_TOOL_FRAGMENT_HEAD = '{"tool_calls":[{"index":0,"function":{"arguments":'


# Not frozen: a frozen dataclass pays an object.__setattr__ per field, on the hot path here.
@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    fragments: tuple[str, ...]


@dataclass(slots=True)
class Choice:
    pieces: tuple[str, ...]
    """Content, one piece per completion token (empty for a tool call)."""
    tool_call: ToolCall | None
    finish_reason: str
    refusal: bool = False
    """The pieces are a refusal (``message.refusal``), not content."""


@dataclass(slots=True)
class Completion:
    id: str
    created: int
    model: str
    choices: tuple[Choice, ...]
    usage: Mapping[str, Any]
    azure: bool
    logprobs: bool = False
    """The request asked for ``logprobs``: one entry per content or refusal token."""


def token_logprob(piece: str, position: int) -> dict[str, Any]:
    """A deterministic ``ChatCompletionTokenLogprob`` for one emitted token."""
    logprob = -round(0.01 * (position % 7 + 1), 4)
    return {"token": piece, "logprob": logprob, "bytes": list(piece.encode()), "top_logprobs": []}


def _logprobs(choice: Choice, pieces: tuple[str, ...], first: int) -> dict[str, Any]:
    entries = [token_logprob(piece, first + i) for i, piece in enumerate(pieces)]
    if choice.refusal:
        return {"content": None, "refusal": entries}
    return {"content": entries, "refusal": None}


def _filter_results(choice: Choice) -> dict[str, Any]:
    if choice.finish_reason == "content_filter":
        return _CHOICE_FILTERED
    return {} if choice.tool_call is not None else _CHOICE_SAFE


def completion_body(c: Completion) -> bytes:
    choices = []
    for index, choice in enumerate(c.choices):
        message: dict[str, Any] = {"role": "assistant"}
        if choice.refusal:
            message["content"] = None
        elif choice.tool_call is None:
            message["content"] = "".join(choice.pieces)
        else:
            call = choice.tool_call
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
            ]
        message["refusal"] = "".join(choice.pieces) if choice.refusal else None
        message["annotations"] = []
        logprobs = (
            _logprobs(choice, choice.pieces, 0) if c.logprobs and choice.tool_call is None else None
        )
        item: dict[str, Any] = {
            "index": index,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": choice.finish_reason,
        }
        if c.azure:
            item["content_filter_results"] = _filter_results(choice)
        choices.append(item)
    body: dict[str, Any] = {
        "id": c.id,
        "object": "chat.completion",
        "created": c.created,
        "model": c.model,
        "choices": choices,
        "usage": c.usage,
        "system_fingerprint": FINGERPRINT,
    }
    if c.azure:
        body["prompt_filter_results"] = PROMPT_FILTER_RESULTS
    else:
        body["service_tier"] = "default"
    return dumps(body)


def stream_events(c: Completion, *, include_usage: bool) -> list[bytes]:
    """Every SSE event of the stream, ``data: [DONE]`` last."""
    head = (
        f'data: {{"id":{json.dumps(c.id)},"object":"chat.completion.chunk",'
        f'"created":{c.created},"model":{json.dumps(c.model)},'
        f'"system_fingerprint":"{FINGERPRINT}",'
        + ("" if c.azure else '"service_tier":"default",')
        + '"choices":['
    ).encode()
    tail = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
    safe = f',"content_filter_results":{_SAFE_JSON}' if c.azure else ""
    empty = ',"content_filter_results":{}' if c.azure else ""

    events: list[bytes] = [_AZURE_FIRST_EVENT] if c.azure else []
    for index, choice in enumerate(c.choices):
        delta: dict[str, Any] = {"role": "assistant"}
        if choice.refusal:
            delta["content"] = None
        elif choice.tool_call is None:
            delta["content"] = ""
        else:
            call = choice.tool_call
            delta["content"] = None
            delta["tool_calls"] = [
                {
                    "index": 0,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
            ]
        delta["refusal"] = "" if choice.refusal else None
        events.append(head + _choice(index, dumps(delta).decode(), "null", empty) + tail)
    longest = max(len(ch.tool_call.fragments if ch.tool_call else ch.pieces) for ch in c.choices)
    for step in range(longest):
        for index, choice in enumerate(c.choices):
            if choice.tool_call is None:
                if step < len(choice.pieces):
                    piece = choice.pieces[step]
                    key = '{"refusal":' if choice.refusal else '{"content":'
                    delta_json = key + json.dumps(piece) + "}"
                    lp = dumps(_logprobs(choice, (piece,), step)).decode() if c.logprobs else "null"
                    events.append(head + _choice(index, delta_json, "null", safe, lp) + tail)
            elif step < len(choice.tool_call.fragments):
                fragment = json.dumps(choice.tool_call.fragments[step])
                delta_json = _TOOL_FRAGMENT_HEAD + fragment + "}}]}"
                events.append(head + _choice(index, delta_json, "null", empty) + tail)
    for index, choice in enumerate(c.choices):
        finish_filter = (
            ',"content_filter_results":' + dumps(_filter_results(choice)).decode()
            if c.azure and choice.finish_reason == "content_filter"
            else empty
        )
        events.append(
            head + _choice(index, "{}", f'"{choice.finish_reason}"', finish_filter) + tail
        )
    if include_usage:
        events.append(head + b'],"usage":' + dumps(c.usage) + b"}\n\n")
    events.append(DONE_EVENT)
    return events


def _choice(index: int, delta_json: str, finish: str, extra: str, logprobs: str = "null") -> bytes:
    return (
        f'{{"index":{index},"delta":{delta_json},"logprobs":{logprobs},'
        f'"finish_reason":{finish}{extra}}}'
    ).encode()
