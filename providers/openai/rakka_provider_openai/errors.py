"""OpenAI and Azure OpenAI error shapes, as rows of the core's rule engine.

An HTTP error body and status, an ``{"error": ...}`` event inside a stream, or a finish
reason become one :class:`~rakka_runtime.errors.InferenceError` subclass, with the
provider's request id (``x-request-id``, Azure APIM's ``apim-request-id``), its
``retry-after`` hint, its ``x-should-retry`` verdict and a bounded, credential-free message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from rakka_runtime.provider import (
    NO_FIELDS,
    BadRequest,
    ChatResult,
    Conflict,
    ContentFiltered,
    ContextLengthExceeded,
    ErrorFields,
    ErrorRule,
    Forbidden,
    InferenceError,
    NotFound,
    ProtocolError,
    QuotaExceeded,
    RateLimited,
    ServerError,
    Timeout,
    Unauthorized,
    build_error,
    error_message,
    excerpt,
    header,
    label,
    match_rule,
    parse_retry_after,
    status_line,
)

__all__ = [
    "CONTENT_FILTER_RULE",
    "FINISH_REASON_ERRORS",
    "HTTP_ERROR_RULES",
    "STREAM_ERROR_FALLBACK",
    "STREAM_ERROR_RULES",
    "classify_http_error",
    "classify_stream_error",
    "error_fields",
    "error_for_finish_reason",
    "parse_error_body",
    "parse_should_retry",
    "provider_request_id",
]

# Servers that send the message without the ``context_length_exceeded`` code (vLLM, proxies).
_CONTEXT_LENGTH_MESSAGE = re.compile(
    r"maximum context length|exceeds? the configured limit of \d|exceeds the context window"
    r"|exceed context limit",
    re.IGNORECASE,
)

# OpenAI puts "content_filter" in type or code; Azure in code, and always names its policy
# in innererror.code. Any status: it is usually 400, but the code is what decides.
CONTENT_FILTER_RULE = ErrorRule(
    "content_filter",
    ContentFiltered,
    code_prefixes=("content_filter",),
    inner_codes=frozenset({"ResponsibleAIPolicyViolation"}),
)

HTTP_ERROR_RULES: tuple[ErrorRule, ...] = (
    CONTENT_FILTER_RULE,
    # Out of credit: waiting does not help, so it must not be mistaken for a rate limit.
    ErrorRule(
        "insufficient_quota",
        QuotaExceeded,
        frozenset({429}),
        codes=frozenset({"insufficient_quota"}),
    ),
    ErrorRule("rate_limited", RateLimited, frozenset({429})),
    ErrorRule(
        "context_length_exceeded",
        ContextLengthExceeded,
        frozenset({400}),
        codes=frozenset({"context_length_exceeded"}),
        message=_CONTEXT_LENGTH_MESSAGE,
    ),
    ErrorRule("bad_request", BadRequest, frozenset({400, 422})),
    ErrorRule("unauthorized", Unauthorized, frozenset({401})),
    ErrorRule("forbidden", Forbidden, frozenset({403})),
    ErrorRule("not_found", NotFound, frozenset({404})),
    ErrorRule("timeout", Timeout, frozenset({408}), kwargs=(("limit", "server"),)),
    ErrorRule("conflict", Conflict, frozenset({409})),
    ErrorRule("server_error", ServerError, frozenset(range(500, 600))),
    ErrorRule("other_4xx", BadRequest, frozenset(range(400, 500))),
    # 1xx/3xx/6xx reaching the classifier: not an answer the API gives.
    ErrorRule("unexpected_status", ProtocolError),
)

# An ``{"error": ...}`` event inside a 200 stream has no status of its own: only labels.
STREAM_ERROR_RULES: tuple[ErrorRule, ...] = (
    CONTENT_FILTER_RULE,
    ErrorRule("insufficient_quota", QuotaExceeded, codes=frozenset({"insufficient_quota"})),
    ErrorRule(
        "context_length_exceeded",
        ContextLengthExceeded,
        codes=frozenset({"context_length_exceeded"}),
        message=_CONTEXT_LENGTH_MESSAGE,
    ),
    # OpenAI's rate-limit errors have type "requests" or "tokens", code "rate_limit_exceeded".
    ErrorRule(
        "rate_limited",
        RateLimited,
        codes=frozenset({"requests", "tokens"}),
        code_prefixes=("rate_limit",),
    ),
    ErrorRule("server_error", ServerError, codes=frozenset({"server_error"})),
    ErrorRule("bad_request", BadRequest, codes=frozenset({"invalid_request_error"})),
)

# A stream error nothing above recognises (and whose code is not an HTTP status, as Azure
# codes often are): the server broke mid-answer, so treat it as the server's failure.
STREAM_ERROR_FALLBACK = ErrorRule("unknown", ServerError)

# finish_reason values that mean the answer must not be taken as a success.
FINISH_REASON_ERRORS: Mapping[str, tuple[type[InferenceError], str]] = {
    "content_filter": (
        ContentFiltered,
        "the model's output was filtered by the content filter (finish_reason=content_filter)",
    ),
}


def error_fields(payload: object) -> ErrorFields | None:
    """Read a decoded error body; ``None`` when it is not an error shape we know.

    Accepts OpenAI's and Azure's ``{"error": {...}}`` (Azure's inner error spelt
    ``innererror`` on the wire, ``inner_error`` in its spec), ``{"error": "text"}``, and the
    flat ``{"message": ..., "type"/"code"/"statusCode": ...}`` of vLLM and Azure APIM.
    """
    if not isinstance(payload, Mapping):
        return None
    error = payload.get("error")
    if isinstance(error, str):
        return ErrorFields(message=error)
    if not isinstance(error, Mapping):
        if isinstance(payload.get("message"), str):
            error = payload
        else:
            return None
    inner = error.get("innererror", error.get("inner_error"))
    return ErrorFields(
        message=label(error.get("message")),
        type=label(error.get("type")),
        code=label(error.get("code")),
        inner_code=label(inner.get("code")) if isinstance(inner, Mapping) else None,
    )


def parse_error_body(body: bytes) -> ErrorFields | None:
    """``error_fields`` of a raw body; ``None`` when it is not JSON or not an error shape."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return error_fields(payload)


def parse_should_retry(headers: Mapping[str, str] | None) -> bool | None:
    """The ``x-should-retry`` hint: ``True``/``False``, or ``None`` when absent or unclear."""
    value = header(headers, "x-should-retry")
    if value is None:
        return None
    return {"true": True, "false": False}.get(value.strip().lower())


def provider_request_id(headers: Mapping[str, str] | None) -> str | None:
    """OpenAI's ``x-request-id``, else Azure API Management's ``apim-request-id``."""
    return header(headers, "x-request-id") or header(headers, "apim-request-id")


def _build(
    rule: ErrorRule,
    message: str,
    fields: ErrorFields,
    *,
    status: int | None,
    headers: Mapping[str, str] | None,
) -> InferenceError:
    return build_error(
        rule,
        message,
        fields,
        status=status,
        request_id=provider_request_id(headers),
        retry_after=parse_retry_after(headers),
        should_retry=parse_should_retry(headers),
    )


def classify_http_error(status: int, body: bytes, headers: Mapping[str, str]) -> InferenceError:
    """Map a non-2xx response (status, raw body, headers) to the matching error class.

    Reads ``x-request-id``, ``x-should-retry``, ``retry-after-ms`` and ``retry-after``.
    """
    parsed = parse_error_body(body)
    fields = parsed or NO_FIELDS
    # The last row matches every status, so the fallback is only for the type checker.
    rule = match_rule(HTTP_ERROR_RULES, status, fields) or HTTP_ERROR_RULES[-1]
    message = error_message(fields)
    if message is None:
        text = excerpt(body)
        message = f"{status_line(status)}: {text}" if text else status_line(status)
    return _build(rule, message, fields, status=status, headers=headers)


def classify_stream_error(
    payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> InferenceError:
    """Map an ``{"error": {...}}`` object received inside an SSE stream."""
    fields = error_fields(payload) or NO_FIELDS
    rule = match_rule(STREAM_ERROR_RULES, None, fields)
    code = fields.code
    if rule is None and code and code.isascii() and code.isdigit() and 400 <= int(code) < 600:
        # Azure puts the HTTP status it would have sent in ``code`` ("429", "500").
        rule = match_rule(HTTP_ERROR_RULES, int(code), fields)
    rule = rule or STREAM_ERROR_FALLBACK
    message = error_message(fields) or "the stream carried an error event without a message"
    return _build(rule, message, fields, status=None, headers=headers)


def error_for_finish_reason(
    finish_reason: str | None,
    *,
    partial: ChatResult | None = None,
    request_id: str | None = None,
) -> InferenceError | None:
    """The error a finish_reason stands for (``content_filter``), or ``None`` for success."""
    entry = FINISH_REASON_ERRORS.get(finish_reason) if finish_reason else None
    if entry is None:
        return None
    error, message = entry
    return error(message, code=finish_reason, request_id=request_id, partial=partial)
