"""Fault specs (``NAME;k=v;k=v``) of the ``x-emulator-fault`` request header.

Validated when parsed: a typo is a 400 naming the problem, never a silent success.

Error answers (Anthropic's ``{"type": "error", "error": {...}, "request_id": ...}``):

- ``overloaded`` 529 ``overloaded_error``; ``api_error`` 500 ``api_error``;
- ``rate_limit`` 429 ``rate_limit_error`` with ``retry-after`` (``retry_after=S``, default 1);
- ``authentication`` 401, ``permission`` 403, ``not_found`` 404 (``not_found_error``),
  ``request_too_large`` 413, ``invalid_request`` 400 (``invalid_request_error``);
- ``prompt_too_long;tokens=N;max=M`` 400 ``invalid_request_error``, "prompt is too long:
  N tokens > M maximum" (defaults 210000 and 200000).

Answer shaping and connection faults:

- ``refusal``: half the words, ``stop_reason: "refusal"``;
- ``stream_error;after=K``: K stream events, then an ``error`` event
  (``overloaded_error``) and the end of the body; a plain body answers 529;
- ``cut;after=K``: K stream events, then the connection closes (no ``message_stop``);
- ``malformed``: a plain body that is not JSON; a stream event that is not JSON;
- ``reset``: the connection closes before any byte; ``stall;seconds=S``: sleep, then answer.

Every fault takes ``retry_after=S``, ``should_retry=true|false`` (``x-should-retry``) and
``times=N;id=X`` (only the first N requests carrying id X get the fault).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

ERROR_FAULTS: Mapping[str, tuple[int, str, str]] = {
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "api_error": (500, "api_error", "Internal server error"),
    "rate_limit": (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per "
        "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
    ),
    "authentication": (401, "authentication_error", "invalid x-api-key"),
    "permission": (
        403,
        "permission_error",
        "Your API key does not have permission to use this resource.",
    ),
    "not_found": (404, "not_found_error", "model: claude-emulator-missing"),
    "request_too_large": (
        413,
        "request_too_large",
        "Request exceeds the maximum allowed number of bytes.",
    ),
    "invalid_request": (400, "invalid_request_error", "messages: at least one message is required"),
    "prompt_too_long": (400, "invalid_request_error", "prompt is too long"),
}
"""Faults answered with an error status: ``(status, error.type, message)``."""

SHAPING_FAULTS = frozenset({"refusal", "stream_error", "cut", "malformed", "reset", "stall"})

FAULT_NAMES = frozenset(ERROR_FAULTS) | SHAPING_FAULTS

_PARAMS: Mapping[str, frozenset[str]] = {
    "prompt_too_long": frozenset({"tokens", "max"}),
    "stream_error": frozenset({"after"}),
    "cut": frozenset({"after"}),
    "stall": frozenset({"seconds"}),
}
_COMMON = frozenset({"retry_after", "should_retry", "times", "id"})
_NUMERIC = frozenset({"tokens", "max", "after", "seconds", "retry_after", "times"})


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    params: Mapping[str, str]
    spec: str

    def number(self, key: str, default: float) -> float:
        value = self.params.get(key)
        return default if value is None else float(value)


def parse_fault(spec: str) -> Fault:
    """Parse ``NAME;k=v;...``; raises ``ValueError`` naming what is wrong."""
    name, *pairs = (part.strip() for part in spec.strip().split(";"))
    if name not in FAULT_NAMES:
        raise ValueError(
            f"unknown emulator fault {name!r}; known: {', '.join(sorted(FAULT_NAMES))}"
        )
    allowed = _PARAMS.get(name, frozenset()) | _COMMON
    params: dict[str, str] = {}
    for pair in pairs:
        if not pair:
            continue
        key, sep, value = (text.strip() for text in pair.partition("="))
        if not sep or key not in allowed:
            raise ValueError(f"fault {name!r} does not take parameter {pair!r}")
        if key in _NUMERIC:
            try:
                if float(value) < 0:
                    raise ValueError
            except ValueError:
                raise ValueError(f"fault {name!r}: {key}={value!r} is not a number >= 0") from None
        if key == "should_retry" and value.lower() not in ("true", "false"):
            raise ValueError(f"fault {name!r}: should_retry must be true or false")
        params[key] = value
    return Fault(name, params, spec.strip())


class FaultBudget:
    """Counts uses of faults that carry ``times=N``: the first N uses per id fire."""

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
        return used <= int(float(times))
