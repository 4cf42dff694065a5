"""A secret value that never prints: the one type a key, password or token lives in.

Its own module (not :mod:`rakka_runtime.secrets`) because the config schema needs the type
and the resolver needs the schema.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn

__all__ = ["MASK", "Secret", "SecretHeader"]

MASK = "**********"


class Secret:
    """An immutable secret value that prints as ``**********``; :meth:`reveal` returns it."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, not {type(value).__name__}")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """The value, for the one place that must send it (an HTTP header)."""
        return self._value

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, format_spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        # Constant-time, so comparing a rotated key with the current one leaks no timing.
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        # Immutable slots defeat the default protocol; rebuild through __init__.
        return (Secret, (self._value,))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        # Config validation only (pydantic is imported there, never by this module): a
        # string becomes a Secret; a Secret passes through.
        from pydantic_core import core_schema

        wrap = core_schema.no_info_after_validator_function(cls, core_schema.str_schema())
        return core_schema.no_info_before_validator_function(_unwrap_secret, wrap)


def _unwrap_secret(value: object) -> object:
    return value.reveal() if isinstance(value, Secret) else value


class SecretHeader(str):
    """A header value that holds a secret (``Bearer <key>``, an ``api-key``): a ``str``
    that sends as itself but whose repr is a mask.

    Header dicts are reprs waiting to happen: an error reporter that records a frame's
    locals (``traceback.TracebackException(capture_locals=True)``, Sentry) reprs every
    dict the send path holds. With the value in this type every such dict shows
    ``'**********'``. ``str(value)`` and formatting still give the real text (for the
    one place that writes it to the socket), so never log those.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"'{MASK}'"

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        # A pickle is data, not a repr: it keeps the value (as Secret does), as a SecretHeader.
        return (SecretHeader, (str(self),))
