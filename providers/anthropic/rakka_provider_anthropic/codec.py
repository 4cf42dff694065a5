"""The codec of the ``anthropic`` provider kind: the Messages API on the wire.

Sans-IO, like every codec: it builds the request and reads what the drivers hand it.

Rate limits. Anthropic reports ``anthropic-ratelimit-{requests,tokens,input-tokens,
output-tokens}-{limit,remaining,reset}`` with RFC 3339 reset times. The core's limiter has
two dimensions, ``requests`` and ``tokens`` (one bucket charged with input + output), so:

- ``requests`` is ``anthropic-ratelimit-requests-*``;
- ``tokens`` is ``anthropic-ratelimit-tokens-*`` when sent: Anthropic defines it as the
  most restrictive token limit currently in effect, which is what one bucket can honour;
- without it, ``tokens`` is whichever of ``input-tokens`` / ``output-tokens`` has the
  smaller remaining count (the one that will run out first). Input + output are charged
  against it, so the limiter errs on the side of waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from rakka_provider_anthropic.deployment import AnthropicDeployment, messages_url
from rakka_provider_anthropic.errors import classify_http_error, reset_seconds
from rakka_provider_anthropic.wire import MessagesStream, build_messages_body, parse_message
from rakka_runtime.provider import (
    ChatRequest,
    ChatResult,
    ContentFiltered,
    Feedback,
    HttpRequest,
    InferenceError,
    header_count,
    json_object,
)

__all__ = ["AnthropicCodec", "estimate_input_tokens", "ratelimit_feedback"]

_PREFIX = "anthropic-ratelimit-"


class AnthropicCodec:
    """The :class:`~rakka_runtime.provider.ProviderCodec` of one Anthropic deployment."""

    def __init__(
        self,
        deployment: AnthropicDeployment,
        *,
        endpoint_override: str | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.deployment = deployment
        self.url = messages_url(deployment, endpoint_override)
        self._default_max_tokens = deployment.default_max_tokens
        self._on_close = on_close

    def build_request(
        self, request: ChatRequest, model: str, headers: Mapping[str, str]
    ) -> HttpRequest:
        body = build_messages_body(
            request, model=model, default_max_tokens=self._default_max_tokens
        )
        if request.extra_headers is not None:
            headers = {**headers, **request.extra_headers}
        return HttpRequest("POST", self.url, headers, body)

    def decode_body(
        self, request: ChatRequest, status: int, headers: Mapping[str, str], body: bytes
    ) -> ChatResult:
        return parse_message(json_object(body, status), request.request_id)

    def stream_decoder(self, request: ChatRequest) -> MessagesStream:
        return MessagesStream(request.request_id)

    def classify_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> InferenceError:
        return classify_http_error(status, headers, body)

    def check_result(self, result: ChatResult) -> InferenceError | None:
        if result.finish_reason == "content_filter":
            return ContentFiltered(
                "the model refused to answer (stop_reason=refusal)",
                code="refusal",
                partial=result,
            )
        return None

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("request-id")

    def rate_limit_feedback(self, headers: Mapping[str, str]) -> Sequence[Feedback]:
        return ratelimit_feedback(headers)

    def estimate_input_tokens(self, request: ChatRequest) -> int:
        return estimate_input_tokens(request)

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


def _dimension(
    headers: Mapping[str, str], name: str, now: float
) -> tuple[int, int | None, float | None] | None:
    remaining = header_count(headers.get(f"{_PREFIX}{name}-remaining"))
    if remaining is None:
        return None
    return (
        remaining,
        header_count(headers.get(f"{_PREFIX}{name}-limit")),
        reset_seconds(headers.get(f"{_PREFIX}{name}-reset"), now),
    )


def ratelimit_feedback(headers: Mapping[str, str], now: float | None = None) -> list[Feedback]:
    """``(dimension, remaining, limit, reset seconds)`` from lower-cased ``headers`` (see the
    module notes for how four Anthropic limits become two dimensions)."""
    now = time.time() if now is None else now
    out: list[Feedback] = []
    requests = _dimension(headers, "requests", now)
    if requests is not None:
        out.append(("requests", *requests))
    tokens = _dimension(headers, "tokens", now)
    if tokens is None:
        candidates = [
            found
            for found in (
                _dimension(headers, "input-tokens", now),
                _dimension(headers, "output-tokens", now),
            )
            if found is not None
        ]
        tokens = min(candidates, key=lambda found: found[0]) if candidates else None
    if tokens is not None:
        out.append(("tokens", *tokens))
    return out


def estimate_input_tokens(request: ChatRequest) -> int:
    """A tokenizer-free estimate (about 4 characters a token, a few per message and tool);
    the reported usage replaces it afterwards."""
    total = 3
    for message in request.messages:
        total += 4
        content = message.get("content")
        if isinstance(content, str):
            total += (len(content) + 3) // 4
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping):
                    if part.get("type") == "image_url":
                        total += 1600  # Anthropic: about (width * height) / 750
                    else:
                        total += (len(str(part.get("text", ""))) + 3) // 4
        for call in message.get("tool_calls") or ():
            function = call.get("function", {}) if isinstance(call, Mapping) else {}
            total += (len(str(function.get("arguments", ""))) + 3) // 4 + 4
    for tool in request.tools or ():
        total += (len(str(tool)) + 3) // 4
    return total
