"""What a chat-completions request asks for, refused the way the real API refuses it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .content import DEFAULT_COMPLETION_TOKENS, MAX_COMPLETION_TOKENS

_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
_MAX_CHOICES = 128
_USAGE_KEYS = frozenset({"cached_tokens", "reasoning_tokens", "prompt_tokens"})


class BadInput(Exception):
    """A request the real API would refuse with a 400; carries the ready error body."""

    def __init__(self, body: bytes) -> None:
        self.body = body


@dataclass(slots=True)
class ChatAsk:
    messages: list[dict[str, Any]]
    model: str
    limit: int | None
    """``max_completion_tokens`` or ``max_tokens`` (capped), if the request set one."""
    n: int
    tool: Mapping[str, Any] | None
    """The tool to call, or None to answer with text."""
    stream: bool
    include_usage: bool
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    prompt_tokens: int | None = None
    """Forced by ``x-emulator-usage``; otherwise computed from the messages."""
    logprobs: bool = False
    """``logprobs: true``: every content (or refusal) token comes with its log-probability."""

    @property
    def count(self) -> int:
        """Completion tokens (words) per text choice."""
        return DEFAULT_COMPLETION_TOKENS if self.limit is None else self.limit


# Azure api-versions before this one predate max_completion_tokens and refuse it.
_AZURE_MAX_COMPLETION_TOKENS_SINCE = "2024-09-01"


def parse_chat(
    raw: bytes,
    headers: Mapping[str, str],
    *,
    model: str | None,
    default_model: str,
    api_version: str | None = None,
) -> ChatAsk:
    """Validate a request body; ``model`` overrides the body's (Azure names a deployment).

    ``api_version`` is Azure's ``api-version`` (None on OpenAI routes): a dated version
    before 2024-09-01 refuses ``max_completion_tokens``, as Azure does.
    """
    try:
        # Decoding first skips json's encoding sniffing; the API only accepts UTF-8 anyway.
        body = json.loads(raw.decode("utf-8"))
    except ValueError:
        raise BadInput(errors.INVALID_JSON) from None
    if not isinstance(body, dict):
        raise BadInput(errors.INVALID_JSON)
    messages = _messages(body)
    if (
        api_version is not None
        and api_version[:1].isdigit()
        and api_version[:10] < _AZURE_MAX_COMPLETION_TOKENS_SINCE
        and "max_completion_tokens" in body
    ):
        raise BadInput(errors.unrecognized_argument("max_completion_tokens"))
    if model is None:
        requested = body.get("model")
        model = requested if isinstance(requested, str) and requested else default_model
    options = body.get("stream_options")
    ask = ChatAsk(
        messages=messages,
        model=model,
        limit=_completion_limit(body, model),
        n=_choices(body),
        tool=_chosen_tool(body),
        stream=body.get("stream") is True,
        include_usage=isinstance(options, Mapping) and options.get("include_usage") is True,
        logprobs=body.get("logprobs") is True,
    )
    raw_usage = headers.get("x-emulator-usage")
    if raw_usage:
        ask.cached_tokens, ask.reasoning_tokens, ask.prompt_tokens = _usage_overrides(raw_usage)
    return ask


def wants_stream(raw: bytes) -> bool:
    """``stream: true``, for fault handling that runs before the body is validated."""
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("stream") is True


def body_model(raw: bytes) -> str | None:
    try:
        model = json.loads(raw).get("model")
    except (ValueError, AttributeError):
        return None
    return model if isinstance(model, str) and model else None


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        raise BadInput(
            errors.bad_param(
                "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
            )
        )
    if not isinstance(messages, list):
        raise BadInput(
            errors.bad_param(
                f"Invalid type for 'messages': expected an array, but got"
                f" {type(messages).__name__} instead.",
                "messages",
                "invalid_type",
            )
        )
    if not messages:
        raise BadInput(errors.bad_param("[] is too short - 'messages'", "messages", "empty_array"))
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadInput(
                errors.bad_param(
                    f"Missing required parameter: 'messages[{i}].role'.",
                    f"messages[{i}].role",
                    "missing_required_parameter",
                )
            )
    return messages


def _completion_limit(body: Mapping[str, Any], model: str) -> int | None:
    if body.get("max_tokens") is not None and model.startswith(_REASONING_PREFIXES):
        raise BadInput(errors.max_tokens_unsupported())
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadInput(
                errors.bad_param(
                    f"Invalid '{name}': integer below minimum value. Expected a value >= 1, but got"
                    f" {value!r} instead.",
                    name,
                    "integer_below_min_value",
                )
            )
        return min(value, MAX_COMPLETION_TOKENS)
    return None


def _choices(body: Mapping[str, Any]) -> int:
    n = body.get("n", 1)
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= _MAX_CHOICES:
        raise BadInput(
            errors.bad_param(
                f"Invalid 'n': expected an integer within 1..{_MAX_CHOICES}, got {n!r}.",
                "n",
                "invalid_value",
            )
        )
    return n


def _chosen_tool(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    if isinstance(choice, Mapping):
        function = choice.get("function")
        wanted = function.get("name") if isinstance(function, Mapping) else None
        for tool in tools:
            if not isinstance(tool, Mapping):
                continue
            declared = tool.get("function")
            if isinstance(declared, Mapping) and declared.get("name") == wanted:
                return tool
        raise BadInput(
            errors.bad_param(
                f"Invalid value for 'tool_choice': no function named {wanted!r} was specified in"
                " the 'tools' parameter.",
                "tool_choice",
                "invalid_value",
            )
        )
    first = tools[0]
    return first if isinstance(first, Mapping) else None


def _usage_overrides(raw: str) -> tuple[int, int, int | None]:
    try:
        data = json.loads(raw)
        if (
            not isinstance(data, dict)
            or set(data) - _USAGE_KEYS
            or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in data.values()
            )
        ):
            raise ValueError
    except ValueError:
        raise BadInput(
            errors.emulator_error(
                "x-emulator-usage must be a JSON object of non-negative integers with keys"
                " cached_tokens, reasoning_tokens, prompt_tokens"
            )
        ) from None
    return data.get("cached_tokens", 0), data.get("reasoning_tokens", 0), data.get("prompt_tokens")
