"""``Annotated`` markers that give a config field a parse function, without importing pydantic.

The schema's classes are plain dataclasses so that a serving process can build them from
a compiled config without loading pydantic (see :mod:`rakka_runtime.config.compiled`).
pydantic still validates them: it reads constraints and aliases from ``field(metadata=...)``
and ``annotated_types``, and calls ``__get_pydantic_core_schema__`` on these markers, which
import ``pydantic_core`` only then. :mod:`rakka_runtime.config.plain` applies the same
functions when it rebuilds a compiled config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ParseBefore", "ParseInstead"]


class ParseBefore:
    """Run ``function`` on the raw value, then validate its result as the annotated type."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[[Any], Any]) -> None:
        self.function = function

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(self.function, handler(source))


class ParseInstead:
    """``function`` alone turns the raw value into the field's value (no type check after)."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[[Any], Any]) -> None:
        self.function = function

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(self.function)
