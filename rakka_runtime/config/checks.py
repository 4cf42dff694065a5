"""Parse functions for config values that pydantic's types let through but the runtime
cannot use: a bool where a number goes, an infinite price, a header value with a line
break, an endpoint that is not an http(s) URL.

Each is a :class:`~rakka_runtime.config.markers.ParseBefore` function: it raises a
``PydanticCustomError`` of type ``config`` whose message quotes the value and says what is
accepted (the config error formatter prints it under the field's dotted path), and
returns the value otherwise. pydantic_core is imported only to report a bad value, so a
compiled config's rebuild (which calls these on valid values) never loads it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit

from rakka_runtime.config.markers import ParseBefore

__all__ = [
    "Endpoint",
    "HeaderText",
    "Number",
    "RedisUrl",
    "header_text_problem",
    "http_url_problem",
    "no_bool",
    "quote_value",
]

_SHOWN = 60  # longest part of a bad value quoted in a message


def _fail(message: str) -> NoReturn:
    from pydantic_core import PydanticCustomError

    raise PydanticCustomError("config", message)


def quote_value(value: object) -> str:
    """``repr(value)``, shortened, with a URL's password masked."""
    if isinstance(value, str):
        from rakka_runtime.config.schema import URL_PASSWORD
        from rakka_runtime.secret_value import MASK

        value = URL_PASSWORD.sub(rf"\1{MASK}@", value)  # a URL's password never shows
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def no_bool(value: Any) -> Any:
    """Refuse a bool (``true`` is not 1) and a non-finite number where a number goes."""
    if isinstance(value, bool):
        _fail(f"{value!r} is not a number")
    if isinstance(value, str):
        try:
            parsed = float(value)
        except ValueError:
            return value  # pydantic says what it expected
        if not math.isfinite(parsed):
            _fail(f"{quote_value(value)} is not a finite number")
    if isinstance(value, float) and not math.isfinite(value):
        _fail(f"{value!r} is not a finite number")
    return value


Number = ParseBefore(no_bool)
"""Put in ``Annotated[int | float, Number, ...]``: no bools, no infinities, no NaN."""


def header_text_problem(value: str) -> str | None:
    """Why ``value`` cannot be an HTTP header value (printable ASCII only), or None."""
    for char in value:
        if char in "\r\n":
            return "holds a line break"
        if not " " <= char <= "~":
            return "holds a control or non-ASCII character"
    return None


def _header_text(value: Any) -> Any:
    if isinstance(value, str):
        why = header_text_problem(value)
        if why is not None:
            _fail(
                f"{quote_value(value)} {why}; it is sent as an HTTP header value: use printable "
                "ASCII only"
            )
    return value


HeaderText = Annotated[str, ParseBefore(_header_text)]
"""A string sent as an HTTP header value (``OpenAI-Organization``...)."""


def http_url_problem(value: str) -> str | None:
    """Why ``value`` is not a usable http(s) endpoint URL, or None."""
    if any(not " " < char <= "~" for char in value):
        return "holds a space, a control or a non-ASCII character"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:  # a port that is not a number, or out of range
        return f"has a bad port ({exc})"
    if parts.scheme not in ("http", "https"):
        return "is not an http:// or https:// URL"
    if not parts.hostname:
        return "has no host"
    if port == 0:
        return "has port 0"
    if parts.query or parts.fragment:
        return "has a query or fragment (only scheme, host, port and path are used)"
    return None


def _endpoint(value: Any) -> Any:
    if isinstance(value, str):
        why = http_url_problem(value)
        if why is not None:
            _fail(f"{quote_value(value)} {why}; expected e.g. https://api.openai.com/v1")
    return value


Endpoint = Annotated[str, ParseBefore(_endpoint)]
"""An http(s) base URL with a host and a valid port."""


def _redis_url(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith("unix://"):
        try:
            urlsplit(value).port  # noqa: B018 - read for the ValueError it raises
        except ValueError as exc:
            _fail(f"{quote_value(value)} has a bad port ({exc}); expected redis://HOST:PORT/DB")
    return value


RedisUrl = Annotated[str, ParseBefore(_redis_url)]
"""A ``redis://``/``rediss://``/``unix://`` URL whose port, if any, is a valid number."""
