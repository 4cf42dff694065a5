"""The generic engine providers classify wire errors with; no provider's tables live here.

A provider reads an error body into :class:`ErrorFields`, runs its own rows
(:class:`ErrorRule`, first match wins) through :func:`match_rule`, and builds the
:class:`~rakka_runtime.errors.InferenceError` with :func:`build_error`. The helpers every
provider needs are here too: RFC 9110 ``retry-after`` parsing (``retry-after-ms`` first),
context-length numbers from the message shapes the APIs publish, and bounded, credential-
free messages and excerpts. The OpenAI/Azure tables are in ``rakka_provider_openai.errors``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

from rakka_runtime.errors import (
    ContextLengthExceeded,
    InferenceError,
)

# Rules are rows of data, tried in order, first match wins; a provider's tests iterate over
# its rows so a new row cannot land without a wire example. Everything a row can look at
# is in ``ErrorFields``: the status, the error's type and code, an inner code (Azure), and
# the message (for errors whose code some servers omit).


@dataclass(frozen=True, slots=True)
class ErrorFields:
    """The parts of an error body the rules read, normalised to ``str | None``."""

    message: str | None = None
    type: str | None = None
    code: str | None = None
    inner_code: str | None = None


NO_FIELDS = ErrorFields()


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


def match_rule(
    rules: tuple[ErrorRule, ...], status: int | None, fields: ErrorFields
) -> ErrorRule | None:
    """The first row of ``rules`` that applies, or ``None``."""
    for rule in rules:
        if rule.matches(status, fields):
            return rule
    return None


def label(value: object) -> str | None:
    """A code or type as text (servers send numeric codes as strings or as ints)."""
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


def redact_credentials(text: str) -> str:
    """``text`` with anything that looks like a real key masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def excerpt(body: bytes) -> str:
    """A short, single-line, credential-free excerpt of a body we could not parse."""
    text = body[: _MAX_EXCERPT * 4].decode("utf-8", "replace")
    if text.lstrip().startswith("<"):
        text = _TAGS.sub(" ", text)  # proxies' HTML error pages: keep only the words
    return clip(redact_credentials(_BLANKS.sub(" ", text).strip()), _MAX_EXCERPT)


def status_line(status: int) -> str:
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


def context_tokens(message: str) -> dict[str, int | None]:
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


def build_error(
    rule: ErrorRule,
    message: str,
    fields: ErrorFields,
    *,
    status: int | None,
    request_id: str | None = None,
    retry_after: float | None = None,
    should_retry: bool | None = None,
) -> InferenceError:
    """The error a matched row stands for; context-length errors get their numbers."""
    kwargs: dict[str, Any] = dict(rule.kwargs)
    if issubclass(rule.error, ContextLengthExceeded):
        kwargs.update(context_tokens(message))
    return rule.error(
        message,
        status=status,
        request_id=request_id,
        retry_after=retry_after,
        code=fields.code or fields.type,
        should_retry=should_retry,
        **kwargs,
    )


def error_message(fields: ErrorFields) -> str | None:
    """The server's words only (credentials masked, length bounded); headers never go
    into a message."""
    return clip(redact_credentials(fields.message), _MAX_MESSAGE) if fields.message else None
