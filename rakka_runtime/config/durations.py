"""Durations: the one way a length of time is written in config and read from headers.

Config files say ``30s``, ``500ms``, ``2m``, ``1h``, ``1.5s`` or a plain number of seconds.
OpenAI's ``x-ratelimit-reset-*`` headers use Go's ``time.Duration`` text (``6m0s``,
``20ms``, ``1h2m3.5s``), so compound forms are accepted too: one parser serves both and
the two can never disagree. Everything becomes a float number of seconds.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from rakka_runtime.config.markers import ParseBefore

__all__ = [
    "ACCEPTED_DURATIONS",
    "MAX_CONFIG_DURATION",
    "Duration",
    "PositiveDuration",
    "format_duration",
    "parse_duration",
]

ACCEPTED_DURATIONS = "use 30s, 500ms, 2m or a number of seconds"

# Go also writes microseconds as "µs" (U+00B5) and some servers send "μs" (U+03BC).
_UNIT_SECONDS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# Longest units first so "ms" is never read as "m" followed by garbage.
_UNIT = "|".join(sorted(map(re.escape, _UNIT_SECONDS), key=len, reverse=True))
_COMPONENT = re.compile(rf"({_NUMBER})({_UNIT})")
_COMPOUND = re.compile(rf"(?:{_NUMBER}(?:{_UNIT}))+")
_PLAIN_NUMBER = re.compile(rf"{_NUMBER}(?:[eE][+-]?\d+)?")


def parse_duration(text: str | float | int) -> float:
    """Return ``text`` as a number of seconds.

    Accepts a non-negative number, a numeric string (``"30"``, ``"1.5"``), a single unit
    (``"30s"``, ``"500ms"``, ``"2m"``, ``"1h"``) or a Go-style compound
    (``"1h2m3.5s"``, ``"6m0s"``). Units: ns, us/µs, ms, s, m, h.

    :raises ValueError: for negatives, non-finite numbers and anything else; the message
        quotes the value and says what is accepted.
    """
    if isinstance(text, bool):
        # bool is an int subclass; "retry: true" in a duration slot is a mistake, not 1s.
        raise ValueError(f"{text!r} is not a duration ({ACCEPTED_DURATIONS})")
    if isinstance(text, int | float):
        return _check_number(float(text), text)
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration ({ACCEPTED_DURATIONS})")
    stripped = text.strip()
    if stripped.startswith("-") and _is_duration(stripped[1:]):
        raise ValueError(f"{text!r} is negative; a duration must be 0 or more")
    if _PLAIN_NUMBER.fullmatch(stripped):
        return _check_number(float(stripped), text)
    if stripped and _COMPOUND.fullmatch(stripped):
        return sum(
            float(number) * _UNIT_SECONDS[unit] for number, unit in _COMPONENT.findall(stripped)
        )
    raise ValueError(f"{text!r} is not a duration ({ACCEPTED_DURATIONS})")


def _is_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


def _check_number(seconds: float, original: object) -> float:
    if not math.isfinite(seconds):
        raise ValueError(f"{original!r} is not a duration ({ACCEPTED_DURATIONS})")
    if seconds < 0:
        raise ValueError(f"{original!r} is negative; a duration must be 0 or more")
    return seconds


def format_duration(seconds: float) -> str:
    """Shortest readable form of ``seconds`` that :func:`parse_duration` reads back."""
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    if 0 < seconds < 1 and (seconds * 1000).is_integer():
        return f"{int(seconds * 1000)}ms"
    # Fixed point, never an exponent: the parser does not read "1e-05s".
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


# pydantic_core is imported only to report a bad value: a compiled config's rebuild calls
# these on valid values without loading it.


MAX_CONFIG_DURATION = 7 * 24 * 3600.0
"""Longest duration a config may set (one week): anything longer is a typo, and values
like ``1e300`` overflow the platform's timeouts (``OverflowError`` deep in a wait)."""


def _validate_duration(value: Any) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        from pydantic_core import PydanticCustomError

        # A custom error type keeps pydantic from prefixing "Value error, " and lets the
        # config error formatter print the message unchanged.
        raise PydanticCustomError("duration", str(exc)) from None
    if seconds > MAX_CONFIG_DURATION:
        from pydantic_core import PydanticCustomError

        raise PydanticCustomError(
            "duration", f"{value!r} is longer than a week (168h); {ACCEPTED_DURATIONS}"
        )
    return seconds


def _validate_positive_duration(value: Any) -> float:
    seconds = _validate_duration(value)
    if seconds == 0:
        from pydantic_core import PydanticCustomError

        # A zero timeout or open duration would fail or flap every call; say so up front.
        raise PydanticCustomError(
            "duration", f"{value!r} is not more than 0 (use e.g. 30s, 500ms or 2m)"
        )
    return seconds


Duration = Annotated[float, ParseBefore(_validate_duration)]
"""A length of time in seconds (0 or more); config may write ``30s``, ``500ms``, ``2m``."""

PositiveDuration = Annotated[float, ParseBefore(_validate_positive_duration)]
"""Like :data:`Duration` but more than 0: for timeouts and waits that must elapse."""
