"""Anthropic error bodies and events as the runtime's error tree.

The wire shape is ``{"type": "error", "error": {"type": ..., "message": ...},
"request_id": ...}``, in an HTTP error body and in a stream's ``error`` event alike. The
``error.type`` decides (:data:`ERROR_TYPES`); the status decides only when the type is
missing or unknown (:func:`_by_status`). ``invalid_request_error`` whose message says the
prompt is too long becomes ``context_length_exceeded`` with the two numbers it names.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from rakka_runtime.provider import (
    BadRequest,
    ChatResult,
    ContextLengthExceeded,
    Forbidden,
    InferenceError,
    NotFound,
    ProtocolError,
    QuotaExceeded,
    RateLimited,
    ServerError,
    Unauthorized,
)

__all__ = ["ERROR_TYPES", "classify_http_error", "classify_stream_error", "parse_retry_after"]

ERROR_TYPES: Mapping[str, type[InferenceError]] = {
    "invalid_request_error": BadRequest,  # 400 (prompt too long: context_length_exceeded)
    "authentication_error": Unauthorized,  # 401
    "billing_error": QuotaExceeded,  # 402: waiting does not help
    "permission_error": Forbidden,  # 403
    "not_found_error": NotFound,  # 404
    "request_too_large": BadRequest,  # 413: the same request will never fit
    "rate_limit_error": RateLimited,  # 429, with retry-after
    "api_error": ServerError,  # 500
    "timeout_error": ServerError,  # 504
    "overloaded_error": ServerError,  # 529
}
"""``error.type`` → error class (retried: ``rate_limited`` and ``server_error``)."""

# "prompt is too long: 208310 tokens > 200000 maximum"
_PROMPT_TOO_LONG = re.compile(
    r"prompt is too long:\s*([\d,]+)\s*tokens?\s*>\s*([\d,]+)", re.IGNORECASE
)
_KEYS = re.compile(r"\b(sk-ant-[a-z0-9]*-?)[A-Za-z0-9_-]{16,}")
_MAX_MESSAGE = 1000


def _by_status(status: int | None) -> type[InferenceError]:
    if status == 401:
        return Unauthorized
    if status == 403:
        return Forbidden
    if status == 404:
        return NotFound
    if status == 429:
        return RateLimited
    if status is None or 500 <= status < 600:
        return ServerError  # a stream error nobody named: the server broke mid-answer
    if 400 <= status < 500:
        return BadRequest
    return ProtocolError


def _clean(message: str) -> str:
    message = _KEYS.sub(r"\1[redacted]", message)
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "\u2026"


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    return None if not headers else headers.get(name)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """``retry-after`` in seconds (digits, or an HTTP-date); ``None`` when absent or bad."""
    value = _header(headers, "retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None


def _should_retry(headers: Mapping[str, str] | None) -> bool | None:
    value = _header(headers, "x-should-retry")
    return None if value is None else {"true": True, "false": False}.get(value.strip().lower())


def _error_object(payload: object) -> tuple[str | None, str | None, str | None]:
    """``(type, message, request_id)`` of an error body or event."""
    if not isinstance(payload, Mapping):
        return None, None, None
    error = payload.get("error")
    request_id = payload.get("request_id")
    request_id = request_id if isinstance(request_id, str) else None
    if not isinstance(error, Mapping):
        return None, None, request_id
    kind = error.get("type")
    message = error.get("message")
    return (
        kind if isinstance(kind, str) else None,
        message if isinstance(message, str) else None,
        request_id,
    )


def _build(
    kind: str | None,
    message: str,
    *,
    status: int | None,
    headers: Mapping[str, str] | None,
    request_id: str | None,
    partial: ChatResult | None = None,
) -> InferenceError:
    error = ERROR_TYPES.get(kind) if kind else None
    error = error or _by_status(status)
    common: dict[str, Any] = {
        "status": status,
        "request_id": _header(headers, "request-id") or request_id,
        "retry_after": parse_retry_after(headers),
        "code": kind,
        "should_retry": _should_retry(headers),
        "partial": partial,
    }
    if error is BadRequest and kind in (None, "invalid_request_error"):
        found = _PROMPT_TOO_LONG.search(message)
        if found:
            return ContextLengthExceeded(
                message,
                requested_tokens=int(found.group(1).replace(",", "")),
                max_context_tokens=int(found.group(2).replace(",", "")),
                **common,
            )
    return error(message, **common)


def classify_http_error(status: int, headers: Mapping[str, str], body: bytes) -> InferenceError:
    """A non-2xx response as the matching error (``request-id``, ``retry-after``)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        payload = None
    kind, message, request_id = _error_object(payload)
    if message is None:
        excerpt = " ".join(body[:200].decode("utf-8", "replace").split())
        message = f"HTTP {status}: {excerpt}" if excerpt else f"HTTP {status}"
    return _build(kind, _clean(message), status=status, headers=headers, request_id=request_id)


def classify_stream_error(
    payload: Mapping[str, Any], *, partial: ChatResult | None = None
) -> InferenceError:
    """A stream's ``error`` event (no status of its own: the type decides)."""
    kind, message, request_id = _error_object(payload)
    text = _clean(message) if message else "the stream carried an error event without a message"
    return _build(kind, text, status=None, headers=None, request_id=request_id, partial=partial)


def reset_seconds(value: str | None, now: float) -> float | None:
    """An RFC 3339 reset time as seconds from ``now`` (epoch), never negative."""
    if value is None:
        return None
    epoch = _epoch(value)
    return None if epoch is None else max(0.0, epoch - now)


_EPOCHS: dict[str, float | None] = {}


def _epoch(value: str) -> float | None:
    # Responses within one window repeat the same reset text: parse each text once.
    cached = _EPOCHS.get(value, -1.0)
    if cached != -1.0:
        return cached
    try:
        parsed = datetime.fromisoformat(value.strip())
        epoch: float | None = parsed.timestamp() if parsed.tzinfo is not None else None
    except ValueError:
        epoch = None
    if len(_EPOCHS) >= 512:
        _EPOCHS.clear()
    _EPOCHS[value] = epoch
    return epoch
