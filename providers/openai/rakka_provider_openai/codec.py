"""The codec of the ``openai`` and ``azure`` provider kinds: Chat Completions on the wire.

Sans-IO: it builds the request and reads what the drivers hand it (a whole body, or SSE
events one at a time). Hot path: the body is built once, one ``json.loads`` per event,
and each event becomes at most one ``TokenChunk``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from rakka_provider_openai.deployment import (
    AzureVariant,
    DirectVariant,
    chat_url,
    completion_limit_key,
)
from rakka_provider_openai.errors import classify_http_error, error_for_finish_reason
from rakka_provider_openai.wire import (
    ChatAggregate,
    build_chat_body,
    decode_stream_chunk,
    parse_completion,
)
from rakka_runtime.provider import (
    ChatRequest,
    ChatResult,
    DeploymentConfig,
    Feedback,
    HttpRequest,
    InferenceError,
    ProtocolError,
    SSEEvent,
    StreamInterrupted,
    TokenChunk,
    decode_json,
    estimate_input_tokens,
    header_count,
    json_object,
    parse_duration,
)

__all__ = ["OpenAICodec", "ratelimit_feedback"]

_DONE = "[DONE]"
_PREFIX = "x-ratelimit-"
_HEADER_NAMES = tuple(
    (dim, f"{_PREFIX}remaining-{dim}", f"{_PREFIX}limit-{dim}", f"{_PREFIX}reset-{dim}")
    for dim in ("requests", "tokens")
)


class OpenAICodec:
    """The :class:`~rakka_runtime.provider.ProviderCodec` of one OpenAI/Azure deployment."""

    def __init__(
        self,
        deployment: DeploymentConfig,
        variant: DirectVariant | AzureVariant,
        *,
        endpoint_override: str | None = None,
        on_close: object = None,
    ) -> None:
        self.deployment = deployment
        self.azure = isinstance(variant, AzureVariant)
        self.url = chat_url(variant, endpoint_override)
        self._limit_key = completion_limit_key(deployment)
        self._on_close = on_close

    def build_request(
        self, request: ChatRequest, model: str, headers: Mapping[str, str]
    ) -> HttpRequest:
        body = build_chat_body(
            request,
            model=model,
            stream=request.stream,
            azure=self.azure,
            limit_key=self._limit_key,
        )
        if request.extra_headers is not None:  # merged only when set: the common path copies
            headers = {**headers, **request.extra_headers}
        return HttpRequest("POST", self.url, headers, body)

    def decode_body(
        self, request: ChatRequest, status: int, headers: Mapping[str, str], body: bytes
    ) -> ChatResult:
        return parse_completion(json_object(body, status), request.request_id)

    def stream_decoder(self, request: ChatRequest) -> ChatStream:
        return ChatStream(request.request_id)

    def classify_error(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> InferenceError:
        return classify_http_error(status, body, headers)

    def check_result(self, result: ChatResult) -> InferenceError | None:
        return error_for_finish_reason(result.finish_reason, partial=result)

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        return headers.get("x-request-id") or headers.get("apim-request-id")

    def rate_limit_feedback(self, headers: Mapping[str, str]) -> Sequence[Feedback]:
        return _feedback(headers)

    def estimate_input_tokens(self, request: ChatRequest) -> int:
        return estimate_input_tokens(request.messages)

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if callable(on_close):
            on_close()


class ChatStream:
    """One streamed ``chat.completion.chunk`` sequence, ended by ``data: [DONE]``."""

    __slots__ = ("_aggregate", "_loads", "_request_id", "done")

    def __init__(self, request_id: str) -> None:
        self._request_id = request_id
        self._aggregate = ChatAggregate()
        self._loads = decode_json
        self.done = False

    def event(self, event: SSEEvent) -> TokenChunk | None:
        payload = event.data
        if payload == _DONE:
            self.done = True
            return None
        try:
            obj = self._loads(payload)
        except ValueError as exc:
            raise ProtocolError(f"stream event is not JSON: {payload[:80]!r}") from exc
        return decode_stream_chunk(obj, self._request_id, self._aggregate)

    def partial(self) -> ChatResult:
        return self._aggregate.result(self._request_id)

    def finish(self) -> ChatResult:
        result = self._aggregate.result(self._request_id)
        if not self.done and result.finish_reason is None:
            raise StreamInterrupted(
                "the stream ended before [DONE] or a finish_reason", partial=result
            )
        return result


def ratelimit_feedback(headers: Mapping[str, str]) -> tuple[Feedback, ...]:
    """``(dimension, remaining, limit, reset seconds)`` for each dimension OpenAI's
    ``x-ratelimit-*`` headers report (any key case). Reset durations are Go-style text
    (``1s``, ``6m0s``, ``20ms``); a value that does not parse is ignored, not trusted."""
    return _feedback({key.lower(): value for key, value in headers.items()})


def _feedback(lowered: Mapping[str, str]) -> tuple[Feedback, ...]:
    out: list[Feedback] = []
    for dimension, remaining_name, limit_name, reset_name in _HEADER_NAMES:
        remaining = header_count(lowered.get(remaining_name))
        if remaining is None:
            continue
        out.append(
            (
                dimension,
                remaining,
                header_count(lowered.get(limit_name)),
                _seconds(lowered.get(reset_name)),
            )
        )
    # A tuple: the state keeps it for the whole request, and the garbage collector stops
    # tracking a tuple of plain values (a list it would walk on every pass).
    return tuple(out)


@lru_cache(maxsize=256)  # providers repeat a handful of reset values ("1s", "6ms", ...)
def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError:
        return None
