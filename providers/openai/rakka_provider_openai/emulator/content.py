"""Deterministic completion content and token counts.

Same prompt, same answer, every time and in both streamed and non-streamed form: tests can
compare the two, and benchmarks measure a fixed amount of work per request.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

WORDS: tuple[str, ...] = (
    "alpha",
    "amber",
    "anchor",
    "apple",
    "arrow",
    "autumn",
    "basil",
    "beacon",
    "birch",
    "breeze",
    "bridge",
    "candle",
    "canyon",
    "cedar",
    "cinder",
    "clover",
    "comet",
    "copper",
    "coral",
    "crystal",
    "delta",
    "dune",
    "ember",
    "falcon",
    "fern",
    "forest",
    "garnet",
    "glacier",
    "harbor",
    "hazel",
    "horizon",
    "island",
    "ivory",
    "jasper",
    "juniper",
    "lagoon",
    "lantern",
    "maple",
    "meadow",
    "meteor",
    "nectar",
    "oasis",
    "orbit",
    "pebble",
    "pine",
    "prairie",
    "quartz",
    "raven",
    "ridge",
    "river",
    "saffron",
    "sage",
    "shadow",
    "sierra",
    "spruce",
    "summit",
    "tide",
    "timber",
    "valley",
    "velvet",
    "willow",
    "winter",
    "zenith",
    "zephyr",
)

MAX_COMPLETION_TOKENS = 4096
DEFAULT_COMPLETION_TOKENS = 16


def message_text(message: Mapping[str, Any]) -> str:
    """The text a message carries: string content, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def prompt_seed(messages: Sequence[Any]) -> int:
    """A stable hash of the last user message's text (0 when there is none)."""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return zlib.crc32(message_text(message).encode("utf-8"))
    return 0


def prompt_tokens(messages: Sequence[Any]) -> int:
    """Prompt tokens: the sum over messages of ``ceil(len(text) / 4) + 4``.

    ``text`` is the message's text content (see :func:`message_text`) plus, for assistant
    messages, each tool call's function name and arguments. Four characters per token is
    OpenAI's rule of thumb; the +4 stands for the role and framing tokens of each message.
    """
    total = 0
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        size = len(message_text(message))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping):
                size += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
        total += math.ceil(size / 4) + 4
    return total


@lru_cache(maxsize=4096)
def completion_pieces(seed: int, count: int) -> tuple[str, ...]:
    """``count`` words, one per token, each but the first with its leading space.

    A linear congruential walk over :data:`WORDS` from ``seed``; cached because benchmarks
    send the same prompt over and over.
    """
    pieces = []
    state = seed & 0x7FFFFFFF
    for i in range(count):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        word = WORDS[(state >> 16) % len(WORDS)]
        pieces.append(word if i == 0 else " " + word)
    return tuple(pieces)


def tool_arguments(tool: Mapping[str, Any], seed: int) -> str:
    """A small JSON object filling the tool's declared properties with deterministic values."""
    function = tool.get("function")
    parameters = function.get("parameters") if isinstance(function, Mapping) else None
    properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
    args: dict[str, Any] = {}
    if isinstance(properties, Mapping):
        for i, (name, schema) in enumerate(properties.items()):
            args[str(name)] = _value_for(schema if isinstance(schema, Mapping) else {}, seed + i)
    return json.dumps(args, separators=(",", ":"))


def _value_for(schema: Mapping[str, Any], seed: int) -> Any:
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[seed % len(enum)]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer":
        return seed % 100
    if kind == "number":
        return (seed % 1000) / 10
    if kind == "boolean":
        return seed % 2 == 0
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return WORDS[seed % len(WORDS)]


def fragments(text: str) -> list[str]:
    """Split streamed tool arguments the way the API does: small pieces, at least three."""
    size = max(1, min(4, len(text) // 3))
    return [text[i : i + size] for i in range(0, len(text), size)]


def unfinished_turn(messages: Sequence[Any]) -> str | None:
    """The text of a final assistant message (an answer to continue), else None."""
    if not messages:
        return None
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "assistant" or last.get("tool_calls"):
        return None
    text = message_text(last)
    return text or None


def continued(pieces: tuple[str, ...], partial: str | None) -> tuple[str, ...]:
    """The rest of the answer ``pieces`` after ``partial``, the part already given.

    The answer depends only on the last user message, so the same request with the first
    part of its answer appended as an unfinished assistant turn gets exactly the words
    that were missing (the first keeps its leading space); ``max_tokens`` counts the whole
    answer. A partial that is not a prefix of the answer is continued after as many words
    as it holds.
    """
    if partial is None:
        return pieces
    taken, size = 0, 0
    while taken < len(pieces) and partial.startswith(pieces[taken], size):
        size += len(pieces[taken])
        taken += 1
    if size != len(partial):
        taken = min(len(pieces), len(partial.split()))
    return pieces[taken:]
