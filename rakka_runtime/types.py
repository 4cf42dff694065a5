"""Value types on the request path.

Hot-path types (``TokenChunk``, ``Usage``) are slotted dataclasses: no validation per
chunk, one attribute slot per field. Messages stay in OpenAI's wire shape (plain dicts)
because that is what users already hold and what the wire wants; they are checked once
when a request is built (:func:`check_messages`), never per chunk.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

Message = Mapping[str, Any]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_PART_TYPES = frozenset({"text", "image_url", "input_audio", "file", "refusal"})
_request_counter = itertools.count(1)
_pid_prefix = f"req-{os.getpid():x}-"


def new_request_id() -> str:
    """A process-unique id for one logical request (kept across its retries)."""
    return f"{_pid_prefix}{next(_request_counter)}"


def check_messages(messages: Sequence[Message]) -> None:
    """Reject messages the API would refuse, before anything is sent.

    Raises ``ValueError`` naming the index and what is accepted.
    """
    if not messages:
        raise ValueError("messages: at least one message is required")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"messages[{i}]: expected an object, got {type(message).__name__}")
        role = message.get("role")
        if role not in _ROLES:
            raise ValueError(
                f"messages[{i}].role: {role!r} is not one of {', '.join(sorted(_ROLES))}"
            )
        content = message.get("content")
        if content is None:
            if role == "assistant" and message.get("tool_calls"):
                continue
            raise ValueError(f"messages[{i}].content: required for role {role!r}")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise ValueError(f"messages[{i}].content: expected a string or a list of content parts")
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind not in _PART_TYPES:
                raise ValueError(
                    f"messages[{i}].content[{j}].type: {kind!r} is not one of "
                    f"{', '.join(sorted(_PART_TYPES))}"
                )
            if kind == "text" and not isinstance(part.get("text"), str):
                raise ValueError(f"messages[{i}].content[{j}].text: a string is required")
            if kind == "image_url":
                image = part.get("image_url")
                if not isinstance(image, Mapping) or not isinstance(image.get("url"), str):
                    raise ValueError(
                        f"messages[{i}].content[{j}].image_url.url: a string is required"
                    )


@dataclass(slots=True, frozen=True)
class SamplingParams:
    """Sampling fields sent as-is when set (``None`` means "leave it to the API")."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    n: int | None = None


@dataclass(slots=True, frozen=True)
class ChatRequest:
    """One chat request, immutable: running it never changes it, so it can be run again.

    ``model`` overrides the deployment's model. ``timeout`` (seconds, counted from when
    the request starts) and ``deadline`` (an absolute ``time.monotonic()`` value) bound the
    whole request, attempts and waits included; the earlier of the two wins, and so does a
    deployment's own ``timeouts.deadline``. ``extra_headers`` are added to the session's
    headers (and win over them).
    """

    messages: Sequence[Message]
    model: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stream: bool = True
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    request_id: str = field(default_factory=new_request_id)
    deadline: float | None = None
    extra_body: dict[str, Any] | None = None
    # Sent on top of the session's headers (e.g. tracing, or an emulator fault in tests).
    extra_headers: Mapping[str, str] | None = None
    timeout: float | None = None


ExecuteBatch = ChatRequest
"""The seed crate's name for :class:`ChatRequest`, kept for existing callers."""


@dataclass(slots=True)
class Usage:
    """Token usage as the API reports it. ``output_tokens`` includes reasoning tokens.

    ``input_tokens`` counts the whole prompt; ``cached_tokens`` (read from a prompt cache)
    and ``cache_write_tokens`` (written to one, billed at the cache-write rate where a
    provider charges one, as Anthropic does) are parts of it, not additions to it.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        out = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }
        if self.cache_write_tokens:  # only when a provider reports it: the shape stays
            out["cache_write_tokens"] = self.cache_write_tokens
        return out


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of one tool call; fragments with the same ``index`` are joined."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    type: str = "function"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": self.arguments},
        }


class TopLogprob(TypedDict):
    """One alternative token at a position (``top_logprobs``), in the API's wire shape."""

    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TypedDict):
    """One output token's log-probability, as the API sends it (``logprobs.content[i]``).

    Kept in the wire shape, like messages: no conversion per token on the hot path.
    """

    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


@dataclass(slots=True)
class TokenChunk:
    """One decoded stream event, as the caller sees it.

    ``refusal_delta`` is a piece of the model's refusal (``delta.refusal``): a refusal comes
    instead of text, with ``finish_reason: "stop"``, and is not an error.
    ``logprobs`` / ``refusal_logprobs`` are this event's token log-probabilities of the text
    and of the refusal, present only when the request asked for ``logprobs``.
    """

    request_id: str
    text_delta: str = ""
    tool_call_delta: list[ToolCallDelta] | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    refusal_delta: str = ""
    logprobs: list[TokenLogprob] | None = None
    refusal_logprobs: list[TokenLogprob] | None = None


@dataclass(slots=True)
class Attempt:
    """What one attempt did: kept on results and errors so retries are visible."""

    kind: str  # "ok" or an error kind
    status: int | None = None
    wait: float = 0.0  # seconds slept before the next attempt


@dataclass(slots=True)
class DeploymentAttempt:
    """One deployment's part in a routed request: what it answered (``kind`` ``ok`` or an
    error kind), how long it took, what it used and cost at its own price."""

    deployment: str
    group: str | None
    model: str | None = None
    status: int | None = None
    kind: str = "ok"
    latency_ms: float = 0.0
    usage: Usage | None = None
    cost_usd: float | None = None
    cost_estimated: bool = False
    # Continued the partial answer of the deployment before it (stream_failover: continue).
    continued: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "group": self.group,
            "model": self.model,
            "status": self.status,
            "kind": self.kind,
            "latency_ms": round(self.latency_ms, 3),
            "usage": None if self.usage is None else self.usage.as_dict(),
            "cost_usd": self.cost_usd,
            "cost_estimated": self.cost_estimated,
            "continued": self.continued,
        }


@dataclass(slots=True)
class ChatResult:
    """The aggregate of one request, streamed or not."""

    request_id: str
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    provider_request_id: str | None = None
    cost_usd: float | None = None
    cost_estimated: bool = False
    attempts: int = 1
    attempt_history: list[Attempt] = field(default_factory=list)
    latency_ms: float | None = None
    ttft_ms: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The completion's own ``id`` (chatcmpl-...) and ``created`` (epoch seconds), as sent.
    response_id: str | None = None
    created: int | None = None
    # The model's refusal message (``message.refusal``), or None. A refusal is an answer, not
    # an error: ``text`` is empty and ``finish_reason`` is usually "stop"; test
    # ``result.refusal is not None`` to tell it from an empty reply.
    refusal: str | None = None
    # Token log-probabilities of ``text`` and of ``refusal`` (``logprobs.content`` /
    # ``logprobs.refusal``), when the request asked for ``logprobs``; else None.
    logprobs: list[TokenLogprob] | None = None
    refusal_logprobs: list[TokenLogprob] | None = None
    # A routed request: the deployment that answered, and every deployment tried, in order.
    deployment: str | None = None
    deployment_attempts: list[DeploymentAttempt] = field(default_factory=list)
