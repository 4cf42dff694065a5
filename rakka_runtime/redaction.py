"""Scrub secret values out of errors whose text came from the wire.

A server (a gateway, a proxy) may echo the bare key in its error message. The error is
copied into ``--json``, batch records, logs and tracebacks, so the values of the
credentials a request may have used (the current one and, during a rotation, the one it
replaces) are replaced by :data:`REDACTED` (as the pattern-based scrubbing of
:mod:`rakka_runtime.error_classification` writes) in every text field of the error
before it leaves the attempt: the message (and ``args``), the code, the request id, and
the partial output (text and tool-call arguments).

Called once, where an exchange's error is caught (``DeploymentCore.exchange_failed``, for
both drivers): every layer above (retry, breaker, batch, CLI) sees the redacted error only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rakka_runtime.secret_value import Secret, SecretHeader

if TYPE_CHECKING:
    from rakka_runtime.errors import InferenceError
    from rakka_runtime.session import Session

__all__ = ["MIN_REDACTED", "REDACTED", "redact_error", "redact_text", "session_secrets"]

REDACTED = "[redacted]"

MIN_REDACTED = 8
"""Shorter values are not redacted: replacing every "abc" in a message would mangle it
and protect nothing (real keys and tokens are far longer)."""


def session_secrets(session: Session | None) -> tuple[str, ...]:
    """The credential values ``session`` may have sent: the current one and, after a
    rotation, the one it replaced."""
    if session is None:
        return ()
    # As SecretHeader: a frame holding them (this module's, if it ever failed) reprs masked.
    return tuple(
        SecretHeader(secret.reveal())
        for secret in session.credentials()
        if isinstance(secret, Secret)
    )


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (of at least :data:`MIN_REDACTED`
    characters) replaced by :data:`REDACTED`; the longest first, so one secret inside another
    leaves no tail."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_REDACTED and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_error(error: InferenceError, secrets: Iterable[str]) -> InferenceError:
    """Scrub ``secrets`` from every text field of ``error`` in place; returns it."""
    values = [secret for secret in secrets if len(secret) >= MIN_REDACTED]
    if not values:
        return error
    error.message = redact_text(error.message, values)
    error.args = tuple(
        redact_text(arg, values) if isinstance(arg, str) else arg for arg in error.args
    )
    if error.code is not None:
        error.code = redact_text(error.code, values)
    if error.request_id is not None:
        error.request_id = redact_text(error.request_id, values)
    partial = error.partial
    if partial is not None:
        partial.text = redact_text(partial.text, values)
        for call in partial.tool_calls:
            call.arguments = redact_text(call.arguments, values)
    return error
