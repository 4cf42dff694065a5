"""Turn pydantic, Hydra, OmegaConf and YAML failures into one-line :class:`ConfigError`\\ s.

Every line names the dotted path, the offending value and what is accepted, e.g.
``deployment.retry.jitter: 'sometimes' is not one of none, equal, full``. Several problems
become one :class:`ConfigError` whose ``path`` is the first problem's and whose text has
one line per problem. Tracebacks of the libraries are never chained (``from None``): their
reprs can carry whole config nodes, secrets included.

Two conventions shared with :mod:`rakka_runtime.config.schema`:

- a location part that starts with :data:`SECRET_TAG_PREFIX` (``"from=env"``) is the
  discriminator tag of a secret reference: it is left out of the printed path, and no
  error at or below it ever prints the input value;
- the error type :data:`SECRET_REF_ERROR` (a value that is not a secret reference at
  all) never prints the input value either: it may be a key pasted in by mistake; nor
  does an error under a key whose name says it is secret (:func:`names_a_secret`).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

from rakka_runtime.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

__all__ = [
    "SECRET_REF_ERROR",
    "SECRET_TAG_PREFIX",
    "config_error",
    "from_hydra_error",
    "from_validation_error",
    "names_a_secret",
    "validation_problems",
]

SECRET_TAG_PREFIX = "from="
SECRET_REF_ERROR = "secret_ref"
# Our own error types whose message already quotes the value and says what is accepted.
_SELF_DESCRIBING = frozenset({"duration", "config", SECRET_REF_ERROR})
_MAX_VALUE_CHARS = 80
# pydantic reports an unknown key of a dataclass as an unexpected keyword argument.
_UNKNOWN_KEY = frozenset({"extra_forbidden", "unexpected_keyword_argument"})


_SECRET_KEYS = frozenset({"api_key", "password", "secret", "token"})
_SECRET_SUFFIXES = ("_api_key", "_password", "_secret", "_token")


def names_a_secret(key: str) -> bool:
    """Whether a config key's name says it holds a secret (``api_key``, ``*_token``...).

    Values under such keys are never printed, even when they are not secret references
    (a provider's own ``SecretStr`` field, or a key pasted in as a plain string).
    """
    return key in _SECRET_KEYS or key.endswith(_SECRET_SUFFIXES)


def config_error(problems: Sequence[tuple[str, str]]) -> ConfigError:
    """One :class:`ConfigError` for one or more ``(path, message)`` problems."""
    if not problems:
        raise ValueError("config_error() needs at least one problem")
    (path, message), rest = problems[0], problems[1:]
    lines = [message, *(f"{p}: {m}" if p else m for p, m in rest)]
    return ConfigError(path, "\n".join(lines))


# --- pydantic -------------------------------------------------------------------------


def from_validation_error(
    exc: ValidationError, *, model: Any = None, prefix: str = ""
) -> ConfigError:
    """Describe every error in ``exc``; ``model`` (the validated type) lets an unknown key
    list the keys that are allowed there; ``prefix`` is prepended to each path."""
    return config_error(validation_problems(exc, model=model, prefix=prefix))


def validation_problems(
    exc: ValidationError, *, model: Any = None, prefix: str = ""
) -> list[tuple[str, str]]:
    """``(path, message)`` for every error in ``exc`` (see :func:`from_validation_error`)."""
    return [_describe(error, model, prefix) for error in exc.errors()]


def _describe(error: ErrorDetails, model: Any, prefix: str) -> tuple[str, str]:
    loc = error["loc"]
    secret = error["type"] == SECRET_REF_ERROR or any(
        isinstance(part, str) and (part.startswith(SECRET_TAG_PREFIX) or names_a_secret(part))
        for part in loc
    )
    path = _dotted(prefix, loc)
    kind = error["type"]
    if kind == "missing":
        return path, "required key is missing"
    if kind in _UNKNOWN_KEY:
        allowed = _allowed_keys(model, loc[:-1])
        return path, f"unknown key (allowed: {', '.join(allowed)})" if allowed else "unknown key"
    shown = error["input"]
    if (isinstance(shown, Mapping) or dataclasses.is_dataclass(shown)) and kind not in (
        _SELF_DESCRIBING
    ):
        # A whole mapping failed (a model-level check): its message says why, and
        # printing the mapping would be noise that may include a secret reference's value.
        message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return path, f"{message[:1].lower()}{message[1:]}"
    value = "the value" if secret else _show(shown)
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        choices = _literal_choices(expected)
        return path, f"{value} is not one of {choices}"
    if kind in _SELF_DESCRIBING:
        # Duration messages quote the input themselves; secret paths must not.
        message = error["msg"]
        if secret and kind == "duration":
            message = "is not a duration"
        return path, message
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return path, f"{value} is invalid: {message[:1].lower()}{message[1:]}"


def _dotted(prefix: str, loc: Iterable[int | str]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(SECRET_TAG_PREFIX):
            continue
        else:
            path = f"{path}.{part}" if path else part
    return path


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _literal_choices(expected: str) -> str:
    # pydantic renders choices as "'none', 'equal' or 'full'"; print them bare.
    return expected.replace("'", "").replace(" or ", ", ")


def _allowed_keys(annotation: Any, loc: Sequence[int | str]) -> list[str]:
    """Keys a mapping at ``loc`` inside ``annotation`` may have; empty when unknown."""
    current = annotation
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    model = _as_model(current, None)
    if model is None:
        return []
    return list(_config_keys(model))


def _config_keys(model: type[Any]) -> dict[str, Any]:
    """Config key (the field's alias, else its name) → annotation, for a config class."""
    hints = typing.get_type_hints(model, include_extras=True)
    return {
        item.metadata.get("alias", item.name): hints[item.name]
        for item in dataclasses.fields(model)
    }


def _step(annotation: Any, part: int | str) -> Any:
    """The type found one location step below ``annotation``; None when unknown."""
    annotation, tags = _unwrap(annotation)
    if isinstance(part, str) and part.startswith(SECRET_TAG_PREFIX):
        return tags.get(part)
    model = _as_model(annotation, part)
    if model is not None:
        return _config_keys(model).get(part) if isinstance(part, str) else None
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    if origin in (list, tuple, Sequence) and args and isinstance(part, int):
        return args[0]
    return None


def _unwrap(annotation: Any) -> tuple[Any, dict[str, Any]]:
    """Strip ``Annotated`` and ``X | None``; a secret reference's union also gives the
    classes behind its ``from=...`` tags."""
    tags: dict[str, Any] = {}
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if typing.get_origin(annotation) in (Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            tags.update(_secret_tags(members))
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation, tags


def _secret_tags(members: list[Any]) -> dict[str, Any]:
    from rakka_runtime.config.schema import SECRET_MEMBERS

    if any(member in SECRET_MEMBERS.values() for member in members):
        return dict(SECRET_MEMBERS)
    return {}


def _as_model(annotation: Any, part: int | str | None) -> type[Any] | None:
    annotation, _ = _unwrap(annotation)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType) and part is not None:
        # A union of config classes: the first member that has the key.
        for member in typing.get_args(annotation):
            model = _as_model(member, None)
            if model is not None and part in _config_keys(model):
                return model
    return None


# --- Hydra / OmegaConf / YAML -----------------------------------------------------------


def from_hydra_error(exc: BaseException, overrides: Sequence[str] = ()) -> ConfigError:
    """Describe a failure raised while Hydra composed or OmegaConf resolved the config.

    Hydra and OmegaConf are imported here, not at module import, so that importing the
    config package stays cheap.
    """
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException
    from yaml import MarkedYAMLError, YAMLError

    if isinstance(exc, OverrideParseException):
        key = exc.override.split("=", 1)[0].lstrip("+~")
        return ConfigError(
            key, f"bad override {exc.override!r}: {_first_line(exc.message)} (see {_GRAMMAR})"
        )
    if isinstance(exc, MissingConfigException):
        missing = exc.missing_cfg_file or ""
        if "/" in missing and exc.options is not None:
            group, option = missing.rsplit("/", 1)
            return ConfigError(
                group,
                f"{option!r} is not a config option (available: {', '.join(exc.options)})",
            )
        return ConfigError("", _first_line(str(exc)))
    if isinstance(exc, MissingMandatoryValue):
        key = exc.full_key or ""
        return ConfigError(key, f"a value is required here (set it, e.g. {key}=...)")
    if isinstance(exc, OmegaConfBaseException):
        return ConfigError(exc.full_key or "", _first_line(exc.msg or str(exc)))
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({exc.context})" if exc.context else ""
        return ConfigError(
            mark.name if mark else "", f"invalid YAML{where}: {exc.problem}{context}"
        )
    if isinstance(exc, YAMLError):
        return ConfigError("", f"invalid YAML: {_first_line(str(exc))}")
    if isinstance(exc, ConfigCompositionException):
        return _from_composition_error(exc, overrides)
    return ConfigError("", f"{type(exc).__name__}: {_first_line(str(exc))}")


_GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def _from_composition_error(exc: BaseException, overrides: Sequence[str]) -> ConfigError:
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    cause = exc.__cause__
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and cause.full_key:
        # Hydra composes in struct mode: an override may only set keys that exist.
        key = cause.full_key
        override = _culprit(key, overrides)
        shown = f" in override {override!r}" if override else ""
        return ConfigError(
            key,
            f"unknown key{shown}; only keys already in the config can be set "
            f"(prefix the override with + to add one)",
        )
    if isinstance(cause, OmegaConfBaseException):
        return from_hydra_error(cause, overrides)
    taken = re.search(r"An item is already at '([^']+)'", str(exc))
    if taken:
        key = taken.group(1)
        return ConfigError(
            key, "already in the config; drop the + to set it (or use ++ to add or set)"
        )
    # e.g. "In 'deployment/listy': ConfigTypeError raised while composing config:\n
    # Cannot merge DictConfig with ListConfig\n    full_key: ..."
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("full_key:", "object_type="))]
    text = " ".join(lines) or type(exc).__name__
    where = re.match(r"In '([^']+)': (.*)", text)
    if where:
        return ConfigError(where.group(1), where.group(2))
    return ConfigError("", text)


def _culprit(key: str, overrides: Sequence[str]) -> str | None:
    """The override that set ``key``: the one naming it most precisely. A group choice
    (``deployment=mine``) is blamed only when no key override relates to ``key``."""
    related = [o for o in overrides if _related(key, _override_key(o))]
    settings = [o for o in related if "." in _override_key(o)]
    pool = settings or related
    if not pool:
        return None
    exact = [o for o in pool if _override_key(o) == key]
    return (exact or sorted(pool, key=lambda o: -len(_override_key(o))))[0]


def _related(a: str, b: str) -> bool:
    """Whether one dotted key is the other or lies under it."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
