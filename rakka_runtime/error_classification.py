"""Classify what the wire says into the error tree of :mod:`rakka_runtime.errors`.

An HTTP error body and status, an error event inside a stream, or a finish reason become
one :class:`~rakka_runtime.errors.InferenceError` subclass, with the provider's request id,
its Retry-After hint and an excerpt of the body (secrets redacted, length bounded).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

from rakka_runtime.errors import (
    BadRequest,
    Conflict,
    ContentFiltered,
    ContextLengthExceeded,
    Forbidden,
    InferenceError,
    NotFound,
    ProtocolError,
    QuotaExceeded,
    RateLimited,
    ServerError,
    Timeout,
    Unauthorized,
)
from rakka_runtime.types import ChatResult

# The rules are rows of data, tried in order, first match wins; tests iterate over the rows
# so a new row cannot land without a wire example. Everything a row can look at is in
# ``ErrorFields``: the status, the error's ``type``/``code`` (OpenAI), Azure's inner code,
# and the message (only for context length, whose code some compatible servers omit).


@dataclass(frozen=True, slots=True)
class ErrorFields:
    """The parts of an error body the rules read, normalised to ``str | None``."""

    message: str | None = None
    type: str | None = None
    code: str | None = None
    inner_code: str | None = None


_NO_FIELDS = ErrorFields()


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """One row: when it applies and which class it yields.

    A row applies when the status is in ``statuses`` (``None``: any status, including none
    for stream errors) and, if it names any matcher, at least one matches: ``code`` or
    ``type`` in ``codes`` or starting with one of ``code_prefixes``, the Azure inner code in
    ``inner_codes``, or ``message`` found in the error message.
    """

    name: str
    error: type[InferenceError]
    statuses: frozenset[int] | None = None
    codes: frozenset[str] = frozenset()
    code_prefixes: tuple[str, ...] = ()
    inner_codes: frozenset[str] = frozenset()
    message: re.Pattern[str] | None = None
    # Extra constructor arguments of ``error`` (e.g. which limit a Timeout names).
    kwargs: tuple[tuple[str, Any], ...] = ()

    def matches(self, status: int | None, fields: ErrorFields) -> bool:
        if self.statuses is not None and status not in self.statuses:
            return False
        if not (self.codes or self.code_prefixes or self.inner_codes or self.message):
            return True
        labels = [label for label in (fields.code, fields.type) if label]
        return (
            any(label in self.codes for label in labels)
            or any(label.startswith(self.code_prefixes) for label in labels)
            or fields.inner_code in self.inner_codes
            or bool(self.message and fields.message and self.message.search(fields.message))
        )


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


def match_rule(
    rules: tuple[ErrorRule, ...], status: int | None, fields: ErrorFields
) -> ErrorRule | None:
    """The first row of ``rules`` that applies, or ``None``."""
    for rule in rules:
        if rule.matches(status, fields):
            return rule
    return None


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
        message=_label(error.get("message")),
        type=_label(error.get("type")),
        code=_label(error.get("code")),
        inner_code=_label(inner.get("code")) if isinstance(inner, Mapping) else None,
    )


def parse_error_body(body: bytes) -> ErrorFields | None:
    """``error_fields`` of a raw body; ``None`` when it is not JSON or not an error shape."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return error_fields(payload)


def _label(value: object) -> str | None:
    # Azure sends numeric codes as strings ("429"), compatible servers sometimes as ints.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """``headers[name]`` for a lower-case ``name``, whatever the case of the mapping's keys."""
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        # A plain dict keeps the sender's case; case-insensitive mappings answered above.
        for key, candidate in headers.items():
            if key.lower() == name:
                value = candidate
                break
    return value if isinstance(value, str) else None


_SECONDS = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def _seconds(value: str) -> float | None:
    # Digits only: float() would also take "nan", "inf", "-1" and "1_0".
    value = value.strip()
    return float(value) if _SECONDS.fullmatch(value) else None


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """Seconds the server asked us to wait, or ``None`` when it did not say (validly).

    ``retry-after-ms`` (OpenAI, Azure) is the more precise and wins; ``retry-after`` may be
    seconds (whole or fractional) or an HTTP-date, measured from ``now`` (epoch seconds,
    default the wall clock) and never negative.
    """
    millis = header(headers, "retry-after-ms")
    if millis is not None:
        seconds = _seconds(millis)
        if seconds is not None:
            return seconds / 1000.0
    value = header(headers, "retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP-dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_should_retry(headers: Mapping[str, str] | None) -> bool | None:
    """The ``x-should-retry`` hint: ``True``/``False``, or ``None`` when absent or unclear."""
    value = header(headers, "x-should-retry")
    if value is None:
        return None
    return {"true": True, "false": False}.get(value.strip().lower())


def provider_request_id(headers: Mapping[str, str] | None) -> str | None:
    """OpenAI's ``x-request-id``, else Azure API Management's ``apim-request-id``."""
    return header(headers, "x-request-id") or header(headers, "apim-request-id")


# Credentials that a misbehaving proxy might echo back in a body. Only values that look like
# real keys are masked, so the server's own prose ("Authorization: Bearer YOUR_KEY") stays.
_SECRETS = (
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/-]{20,}=*"), r"\1[redacted]"),
    (re.compile(r"\b(sk-)[A-Za-z0-9_-]{20,}"), r"\1[redacted]"),
    (
        re.compile(r"(?i)\b(api[-_]?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._-]{20,}"),
        r"\1[redacted]",
    ),
)
_MAX_MESSAGE = 1000
_MAX_EXCERPT = 200
_TAGS = re.compile(r"<[^>]{0,200}>")
_BLANKS = re.compile(r"[\s\x00-\x1f\x7f]+")


def _redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _excerpt(body: bytes) -> str:
    """A short, single-line, credential-free excerpt of a body we could not parse."""
    text = body[: _MAX_EXCERPT * 4].decode("utf-8", "replace")
    if text.lstrip().startswith("<"):
        text = _TAGS.sub(" ", text)  # proxies' HTML error pages: keep only the words
    return _clip(_redact(_BLANKS.sub(" ", text).strip()), _MAX_EXCERPT)


def _status_line(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


# Every published shape that carries numbers; the first pattern that finds a group wins.
# OpenAI / Azure:
#   "This model's maximum context length is 8192 tokens. However, you requested 5000 tokens
#    (4000 in the messages, 1000 in the completion)."  ("..., however you requested ...",
#    "... your messages resulted in M tokens.")
#   "Input tokens exceed the configured limit of 272000 tokens. Your messages resulted in
#    289650 tokens."  (gpt-5 family)
# OpenAI-compatible servers:
#   vLLM: "... maximum context length is 131072 tokens. However, you requested 128000 output
#    tokens and your prompt contains at least 3073 input tokens, for a total of at least
#    131073 tokens."  (the total, not the output tokens, is what was requested)
#   OpenRouter: "This endpoint's maximum context length is N tokens. However, you requested
#    about M tokens"
#   Anthropic-compatible: "input length and `max_tokens` exceed context limit: 199759 + 8192 >
#    200000"
#   Gemini-compatible: "The input token count (1066750) exceeds the maximum number of tokens
#    allowed (1048575)."
_N = r"([\d,]+)"
_MAX_CONTEXT = (
    re.compile(rf"maximum context length is {_N} tokens", re.IGNORECASE),
    re.compile(rf"exceed(?:s|ed)? the configured limit of {_N} tokens", re.IGNORECASE),
    re.compile(rf"context (?:limit|window)(?: of)?:? [^>]*> ?{_N}", re.IGNORECASE),
    re.compile(rf"maximum number of tokens allowed \({_N}\)", re.IGNORECASE),
    re.compile(rf"context (?:window|limit|length) (?:of|is) {_N} tokens", re.IGNORECASE),
)
_REQUESTED = (
    re.compile(rf"for a total of (?:at least )?{_N} tokens", re.IGNORECASE),
    re.compile(rf"(?:you requested|resulted in)(?: about)? {_N} tokens", re.IGNORECASE),
    re.compile(rf"input token count \({_N}\)", re.IGNORECASE),
)
# "A + B > LIMIT": the request is the sum of the prompt and the completion allowance.
_SUM_OVER_LIMIT = re.compile(rf"{_N} \+ {_N} > {_N}")


def _context_tokens(message: str) -> dict[str, int | None]:
    # "..., you requested 5000 tokens (4000 in the messages, 1000 in the completion)": the
    # first number after the verb is the total.
    def number(patterns: tuple[re.Pattern[str], ...]) -> int | None:
        for pattern in patterns:
            found = pattern.search(message)
            if found:
                return int(found.group(1).replace(",", ""))
        return None

    requested = number(_REQUESTED)
    if requested is None:
        summed = _SUM_OVER_LIMIT.search(message)
        if summed:
            requested = sum(int(summed.group(i).replace(",", "")) for i in (1, 2))
    return {"max_context_tokens": number(_MAX_CONTEXT), "requested_tokens": requested}


def _build(
    rule: ErrorRule,
    message: str,
    fields: ErrorFields,
    *,
    status: int | None,
    headers: Mapping[str, str] | None,
) -> InferenceError:
    kwargs: dict[str, Any] = dict(rule.kwargs)
    if issubclass(rule.error, ContextLengthExceeded):
        kwargs.update(_context_tokens(message))
    return rule.error(
        message,
        status=status,
        request_id=provider_request_id(headers),
        retry_after=parse_retry_after(headers),
        code=fields.code or fields.type,
        should_retry=parse_should_retry(headers),
        **kwargs,
    )


def _message(fields: ErrorFields) -> str | None:
    # The server's words only; headers never go into a message.
    return _clip(_redact(fields.message), _MAX_MESSAGE) if fields.message else None


def classify_http_error(status: int, body: bytes, headers: Mapping[str, str]) -> InferenceError:
    """Map a non-2xx response (status, raw body, headers) to the matching error class.

    Reads ``x-request-id``, ``x-should-retry``, ``retry-after-ms`` and ``retry-after``.
    """
    parsed = parse_error_body(body)
    fields = parsed or _NO_FIELDS
    # The last row matches every status, so the fallback is only for the type checker.
    rule = match_rule(HTTP_ERROR_RULES, status, fields) or HTTP_ERROR_RULES[-1]
    message = _message(fields)
    if message is None:
        excerpt = _excerpt(body)
        message = f"{_status_line(status)}: {excerpt}" if excerpt else _status_line(status)
    return _build(rule, message, fields, status=status, headers=headers)


def classify_stream_error(
    payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> InferenceError:
    """Map an ``{"error": {...}}`` object received inside an SSE stream."""
    fields = error_fields(payload) or _NO_FIELDS
    rule = match_rule(STREAM_ERROR_RULES, None, fields)
    if rule is None and fields.code and fields.code.isdigit() and 400 <= int(fields.code) < 600:
        # Azure puts the HTTP status it would have sent in ``code`` ("429", "500").
        rule = match_rule(HTTP_ERROR_RULES, int(fields.code), fields)
    rule = rule or STREAM_ERROR_FALLBACK
    message = _message(fields) or "the stream carried an error event without a message"
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
