"""Fault specs (``NAME;k=v;k=v``): parsing, validation and the ``times``/``id`` budget.

A spec is validated when it is parsed, so a typo in a test's header or a scenario file fails
loudly (a 400 naming the problem) instead of silently serving a success.

Error answers (OpenAI body shapes unless noted):

- ``rate_limit`` 429, type ``requests``, code ``rate_limit_exceeded``; ``shape=azure`` for
  Azure's ``{"error": {"code": "429", ...}}``.
- ``insufficient_quota`` 429, type and code ``insufficient_quota``.
- ``server_error;status=500..599`` (default 500), type ``server_error``; ``shape=azure``.
- ``http_error;status=400..499`` (default 400): 403, 404, 408, 409 have the real bodies;
  ``shape=azure``.
- ``context_length`` 400, code ``context_length_exceeded``.
- ``content_filter`` 400: OpenAI shape on OpenAI routes, Azure's ``innererror`` shape on
  Azure routes; ``shape=openai|azure`` forces one.

Connection and timing:

- ``reset``: RST before any byte. ``stall;seconds=S`` (default 1): sleep, then answer.
- ``stall_mid;after=K;seconds=S`` (defaults 1, 1): K stream events, a pause, the rest; a
  plain body pauses between head and body.
- ``cut;after=K`` (default 2): K stream events then close, no last chunk, no ``[DONE]``; a
  plain body stops at half its ``Content-Length``.
- ``drip;delay_ms=N`` (default 50): N ms between stream events; a plain body in 8 pieces.

Answer shaping:

- ``content_filter_finish``: half the words, ``finish_reason: "content_filter"``.
- ``refusal``: the model refuses: ``content: null`` and ``message.refusal`` (streamed as
  ``delta.refusal`` pieces), ``finish_reason: "stop"``, as OpenAI answers a refused
  structured-output request.
- ``malformed;after=K``: a plain body that is not JSON; in a stream, one non-JSON event
  after the first chunk, or after K content chunks (the rest follows).
- ``stream_error``: one chunk, then an ``{"error": ...}`` event and the end of the body
  (no ``[DONE]``); on a non-streamed request, a 500.

Every fault takes ``should_retry=true|false`` (``x-should-retry``), ``retry_after=S``
(``retry-after``, the text as given), ``retry_after_ms=N`` (``retry-after-ms``),
``retry_after_date=1`` (``retry-after`` as an HTTP-date ``retry_after`` seconds ahead,
default 1) and ``times=N;id=X`` (only the first N requests carrying id X get the fault; the
id defaults to the spec text).

Faults apply to authenticated chat-completion requests only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

ERROR_FAULTS = frozenset(
    {
        "rate_limit",
        "insufficient_quota",
        "server_error",
        "http_error",
        "context_length",
        "content_filter",
    }
)
"""Faults answered with an error status instead of a completion."""

STREAM_FAULTS = frozenset(
    {
        "content_filter_finish",
        "refusal",
        "stall_mid",
        "cut",
        "drip",
        "malformed",
        "stream_error",
    }
)
"""Faults that shape an otherwise normal answer while it is written."""

FAULT_NAMES = ERROR_FAULTS | STREAM_FAULTS | {"reset", "stall"}

COMMON_PARAMS = frozenset(
    {
        "should_retry",
        "retry_after",
        "retry_after_ms",
        "retry_after_date",
        "times",
        "id",
    }
)


def _number(value: str) -> None:
    if float(value) < 0:
        raise ValueError("must not be negative")


def _count(value: str) -> None:
    if int(value) < 0:
        raise ValueError("must not be negative")


def _status_in(low: int, high: int) -> Callable[[str], None]:
    def check(value: str) -> None:
        if not low <= int(value) <= high:
            raise ValueError(f"must be within {low}..{high}")

    return check


def _choice(*allowed: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value.lower() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")

    return check


_FLAG = _choice("1", "0", "true", "false", "yes", "no")

_COMMON_CHECKS: dict[str, Callable[[str], None]] = {
    "should_retry": _FLAG,
    "retry_after": _number,
    "retry_after_ms": _number,
    "retry_after_date": _FLAG,
    "times": _count,
    "id": lambda value: None,
}

_CHECKS: dict[str, dict[str, Callable[[str], None]]] = {
    "rate_limit": {"shape": _choice("openai", "azure")},
    "insufficient_quota": {},
    "server_error": {"status": _status_in(500, 599), "shape": _choice("openai", "azure")},
    "http_error": {"status": _status_in(400, 499), "shape": _choice("openai", "azure")},
    "context_length": {},
    "content_filter": {"shape": _choice("openai", "azure")},
    "content_filter_finish": {},
    "refusal": {},
    "reset": {},
    "stall": {"seconds": _number},
    "stall_mid": {"after": _count, "seconds": _number},
    "cut": {"after": _count},
    "drip": {"delay_ms": _number},
    "malformed": {"after": _count},
    "stream_error": {},
}


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    params: Mapping[str, str]
    spec: str
    """The text the fault was parsed from; the default budget id for ``times``."""

    def number(self, key: str, default: float) -> float:
        value = self.params.get(key)
        return default if value is None else float(value)

    def count(self, key: str, default: int) -> int:
        value = self.params.get(key)
        return default if value is None else int(value)

    def flag(self, key: str) -> bool | None:
        value = self.params.get(key)
        return None if value is None else value.lower() in ("1", "true", "yes")


def parse_fault(spec: str) -> Fault:
    """Parse ``NAME;k=v;...``; raises ``ValueError`` naming what is wrong."""
    name, *pairs = (part.strip() for part in spec.strip().split(";"))
    if name not in FAULT_NAMES:
        known = ", ".join(sorted(FAULT_NAMES))
        raise ValueError(f"unknown emulator fault {name!r}; known: {known}")
    checks = _CHECKS[name]
    params: dict[str, str] = {}
    for pair in pairs:
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        check = checks.get(key) or _COMMON_CHECKS.get(key)
        if not sep or check is None:
            raise ValueError(f"fault {name!r} does not take parameter {pair!r}")
        try:
            check(value)
        except ValueError as exc:
            raise ValueError(f"fault {name!r}: bad {key}={value!r}: {exc}") from None
        params[key] = value
    return Fault(name, params, spec.strip())


class FaultBudget:
    """Counts uses of faults that carry ``times=N``: the first N uses per id fire, later don't.

    This is what lets a retry test say "fail twice, then succeed" with one header value.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[str, int] = {}

    def admit(self, fault: Fault) -> bool:
        times = fault.params.get("times")
        if times is None:
            return True
        key = fault.params.get("id", fault.spec)
        with self._lock:
            used = self._used.get(key, 0) + 1
            self._used[key] = used
        return used <= int(times)
