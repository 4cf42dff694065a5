"""Config objects ⇄ plain JSON-able data, without pydantic.

- :func:`to_plain` writes a config object the way config files write it: aliases
  (``from``), a plugin secret reference flat, paths as text, dates in ISO form.
- :func:`from_plain` rebuilds config objects from such data *without validating it*: for
  data that validation produced, i.e. a compiled config whose digest checks out
  (:mod:`rakka_runtime.config.compiled`). It follows the classes' type hints, applies
  their parse markers (which only convert valid values) and runs their ``__post_init__``
  checks; anything it does not expect is a ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from rakka_runtime.config.markers import ParseBefore, ParseInstead
from rakka_runtime.config.schema import (
    PluginSecret,
    SecretRefUnion,
    collect_plugin_params,
    secret_ref_class,
)
from rakka_runtime.secret_value import MASK, Secret

__all__ = ["from_plain", "to_plain"]

_T = TypeVar("_T")


def _mask(_: Secret) -> str:
    return MASK


def to_plain(value: Any, *, on_secret: Callable[[Secret], Any] = _mask) -> Any:
    """``value`` as dicts, lists and scalars; a :class:`Secret` becomes ``on_secret(it)``
    (the mask by default)."""
    if isinstance(value, PluginSecret):
        return to_plain(value.as_config(), on_secret=on_secret)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            key: to_plain(getattr(value, name), on_secret=on_secret)
            for name, key, _ in _fields(type(value))
        }
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, on_secret=on_secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item, on_secret=on_secret) for item in value]
    if isinstance(value, Secret):
        return on_secret(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def from_plain(cls: type[_T], data: Mapping[str, Any]) -> _T:
    """Rebuild the config class ``cls`` from data :func:`to_plain` wrote (see the module
    docstring: this trusts ``data``).

    :raises ValueError: for data the classes do not describe.
    """
    built: _T = _build(cls, data)
    return built


_FIELDS: dict[type[Any], tuple[tuple[str, str, Any], ...]] = {}


def _fields(cls: type[Any]) -> tuple[tuple[str, str, Any], ...]:
    """``(name, config key, annotation)`` of each field of a config class."""
    found = _FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        found = _FIELDS[cls] = tuple(
            (item.name, item.metadata.get("alias", item.name), hints[item.name])
            for item in dataclasses.fields(cls)
        )
    return found


def _build(annotation: Any, value: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *markers = typing.get_args(annotation)
        for marker in markers:
            if isinstance(marker, ParseInstead):
                return marker.function(value)
            if isinstance(marker, SecretRefUnion):
                return _build_secret_ref(value)
        for marker in markers:
            if isinstance(marker, ParseBefore):
                value = marker.function(value)
        return _build(base, value)
    if origin in (Union, types.UnionType):
        return _build_union(typing.get_args(annotation), value)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _build_class(annotation, value)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return [_build(item, v) for v in _expect(value, list)]
    if origin is dict:
        _, item = typing.get_args(annotation)
        return {str(k): _build(item, v) for k, v in _expect(value, Mapping).items()}
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise ValueError(f"{value!r} is not one of {typing.get_args(annotation)}")
        return value
    return _build_scalar(annotation, value)


def _build_scalar(annotation: Any, value: Any) -> Any:
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is Path:
        return Path(_expect(value, str))
    if annotation is date:
        return date.fromisoformat(_expect(value, str))
    if annotation is Secret:
        return Secret(_expect(value, str))
    if annotation in (str, int, bool) and type(value) is annotation:
        return value
    raise ValueError(f"{value!r} is not a {getattr(annotation, '__name__', annotation)}")


def _build_union(members: tuple[Any, ...], value: Any) -> Any:
    if value is None and type(None) in members:
        return None
    candidates = [m for m in members if m is not type(None)]
    if len(candidates) == 1:
        return _build(candidates[0], value)
    # A union of config classes (auth, variant): the one whose Literal tags match.
    for member in candidates:
        if isinstance(member, type) and dataclasses.is_dataclass(member):
            if isinstance(value, Mapping) and _matches(member, value):
                return _build_class(member, value)
        else:
            try:
                return _build(member, value)
            except ValueError:
                continue
    raise ValueError(f"{value!r} matches none of {members}")


def _matches(cls: type[Any], value: Mapping[str, Any]) -> bool:
    keys = {key: annotation for _, key, annotation in _fields(cls)}
    if not set(value) <= set(keys):
        return False
    return all(
        value[key] in typing.get_args(annotation)
        for key, annotation in keys.items()
        if typing.get_origin(annotation) is Literal and key in value
    )


def _build_secret_ref(value: Any) -> Any:
    member = secret_ref_class(value)
    if member is None:
        raise ValueError("not a secret reference")
    return _build_class(member, collect_plugin_params(value))


def _build_class(cls: type[Any], value: Any) -> Any:
    # Keys as to_plain writes them (aliases: "from"); a missing one keeps its default.
    data = _expect(value, Mapping)
    fields = _fields(cls)
    unknown = set(data) - {key for _, key, _ in fields}
    if unknown:
        raise ValueError(f"{cls.__name__} has no field {sorted(unknown)[0]!r}")
    kwargs = {
        name: _build(annotation, data[key]) for name, key, annotation in fields if key in data
    }
    return cls(**kwargs)


def _expect(value: Any, kind: Any) -> Any:
    if not isinstance(value, kind):
        raise ValueError(f"{value!r} is not a {getattr(kind, '__name__', kind)}")
    return value
