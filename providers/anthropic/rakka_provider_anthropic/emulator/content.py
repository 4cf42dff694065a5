"""Deterministic answers: the same request always yields the same message.

Text: 5 to 15 words from a fixed vocabulary, picked by the SHA-256 of the last user text;
one output token per word, one ``text_delta`` per word when streamed.

Tools: when the request offers tools (and ``tool_choice`` is not ``none``) and its last
turn is not a ``tool_result``, the answer calls a tool (``tool_choice``'s named tool, else
the first) with ``{"query": <the last user text, 40 characters>, "count": <words>}``,
preceded by a short text block unless ``tool_choice`` forces the call (``any``/``tool``),
as the real API does. Otherwise the answer is text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

VOCABULARY = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliett", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
)  # fmt: skip


@dataclass(slots=True)
class Answer:
    """What the emulator says: content blocks, a stop reason and the token counts."""

    blocks: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return " ".join(
            str(block.get("text", ""))
            for block in content
            if isinstance(block, Mapping) and block.get("type") == "text"
        )
    return ""


def _is_tool_result(content: object) -> bool:
    return (
        isinstance(content, Sequence)
        and not isinstance(content, str)
        and any(
            isinstance(block, Mapping) and block.get("type") == "tool_result" for block in content
        )
    )


def count_input_tokens(body: Mapping[str, Any]) -> int:
    """About 4 characters a token over system, messages and tools, 3 more per message."""
    chars = len(_text(body.get("system")))
    messages = body.get("messages") or []
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        chars += len(_text(content)) if not _is_tool_result(content) else len(json.dumps(content))
    if body.get("tools"):
        chars += len(json.dumps(body["tools"]))
    return max(1, (chars + 3) // 4 + 3 * len(messages))


def answer(body: Mapping[str, Any], *, refusal: bool = False) -> Answer:
    messages = body["messages"]
    last = messages[-1]
    prompt = next(
        (
            _text(m.get("content"))
            for m in reversed(messages)
            if m.get("role") == "user" and not _is_tool_result(m.get("content"))
        ),
        "",
    )
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    words = [VOCABULARY[b % len(VOCABULARY)] for b in digest[1 : 1 + 5 + digest[0] % 11]]
    out = Answer(input_tokens=count_input_tokens(body))
    max_tokens = int(body["max_tokens"])
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    if tools and choice.get("type") != "none" and not _is_tool_result(last.get("content")):
        forced = choice.get("type") in ("any", "tool")
        name = choice.get("name") if choice.get("type") == "tool" else tools[0].get("name")
        arguments = {"query": prompt[:40], "count": len(words)}
        if not forced:
            out.blocks.append({"type": "text", "text": f"Calling {name}."})
            out.output_tokens += 2
        out.blocks.append(
            {
                "type": "tool_use",
                "id": "toolu_" + hashlib.sha256(digest + b"tool").hexdigest()[:24],
                "name": name,
                "input": arguments,
            }
        )
        out.output_tokens += (len(json.dumps(arguments)) + 3) // 4
        out.stop_reason = "tool_use"
        return out
    if refusal:
        words = words[: max(1, len(words) // 2)]
        out.stop_reason = "refusal"
    stops = body.get("stop_sequences") or []
    for i, word in enumerate(words):
        if word in stops:
            words = words[:i]
            out.stop_reason, out.stop_sequence = "stop_sequence", word
            break
    if len(words) > max_tokens:
        words = words[:max_tokens]
        out.stop_reason = "max_tokens"
    out.blocks.append({"type": "text", "text": " ".join(words)})
    out.output_tokens += len(words)
    return out
