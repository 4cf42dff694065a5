"""Resolve a secret reference to its value, and keep that value out of every printout.

A reference (:data:`~rakka_runtime.config.schema.SecretRef`) says where a secret lives;
:func:`resolve_secret` reads it and wraps it in :class:`Secret`, whose str, repr and format
are a mask. Error messages name the reference (variable, file path, plugin source) and
the config path, never the content, and never chain an exception that holds the content.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import NoReturn

from rakka_runtime.config.schema import (
    EnvSecret,
    FileSecret,
    InlineSecret,
    PluginSecret,
    SecretRef,
)
from rakka_runtime.errors import ConfigError
from rakka_runtime.secret_value import MASK, Secret

__all__ = ["MASK", "PluginResolver", "Secret", "header_unsafe", "resolve_secret"]

logger = logging.getLogger("rakka_runtime.secrets")

PluginResolver = Callable[[PluginSecret], str | None]
"""Resolves a plugin secret reference; None means "not mine"."""


def resolve_secret(
    ref: SecretRef,
    *,
    path: str = "deployment.api_key",
    plugin_resolver: PluginResolver | None = None,
    header: bool = True,
) -> Secret:
    """Read the secret ``ref`` points at.

    - ``env``: the variable's value, surrounding whitespace stripped;
    - ``file``: the file's UTF-8 text (a BOM is dropped), surrounding whitespace stripped
      (one file per secret, as Kubernetes mounts them); ``~`` is expanded and a relative
      path is relative to the working directory;
    - ``inline``: the value in the config, with a warning that it is for tests only;
    - any other source: ``plugin_resolver(ref)`` (the ``rakka_secret_source`` hook).

    :param path: the config path of the reference, named in every error.
    :param header: the value goes into an HTTP header (an API key): characters beyond
        Latin-1 are refused too. Otherwise (a Redis password) only line breaks and other
        control characters are.
    :raises ConfigError: when the secret is missing, unreadable or empty, holds a line
        break or a character a header cannot carry, or no plugin resolves it. The message
        never contains the secret.
    """
    if isinstance(ref, EnvSecret):
        raw = os.environ.get(ref.name)
        if raw is None:
            _fail(path, f"environment variable {ref.name} is not set")
        return _checked(raw, path, f"environment variable {ref.name}", header)
    if isinstance(ref, FileSecret):
        return _checked(_read_file(ref, path), path, f"secret file '{ref.path}'", header)
    if isinstance(ref, InlineSecret):
        logger.warning(
            "%s: inline secrets are for tests only; use {from: env, name: ...} or "
            "{from: file, path: ...} in real deployments",
            path,
        )
        return _checked(ref.value.reveal(), path, "inline secret", header)
    if isinstance(ref, PluginSecret):
        value = _from_plugin(ref, path, plugin_resolver)
        return _checked(value, path, _plugin_name(ref), header)
    raise TypeError(f"not a secret reference: {type(ref).__name__}")


def _read_file(ref: FileSecret, path: str) -> str:
    file = ref.path.expanduser()
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        _fail(path, f"secret file '{file}' does not exist")
    except IsADirectoryError:
        _fail(path, f"secret file '{file}' is a directory")
    except PermissionError:
        _fail(path, f"secret file '{file}' is not readable (permission denied)")
    except OSError as exc:
        _fail(path, f"secret file '{file}' cannot be read ({exc.strerror or type(exc).__name__})")
    text: str | None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None:
        # Raised out here, not in the except block: the decode error holds the bytes and
        # would ride along as __context__.
        _fail(path, f"secret file '{file}' is not UTF-8 text")
    return text


def _from_plugin(ref: PluginSecret, path: str, resolver: PluginResolver | None) -> str:
    value = None
    if resolver is not None:
        try:
            value = resolver(ref)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                path, f"{_plugin_name(ref)} failed: {type(exc).__name__}: {exc}"
            ) from exc
    if value is None:
        _fail(path, f"no plugin resolves secret source {ref.source!r}")
    if not isinstance(value, str):
        _fail(path, f"{_plugin_name(ref)} returned a {type(value).__name__}, not a string")
    return value


def _plugin_name(ref: PluginSecret) -> str:
    return f"secret source {ref.source!r}"


def header_unsafe(value: str, *, header: bool = True) -> str | None:
    """Why ``value`` (already stripped) cannot be used as a secret, or ``None``.

    The reason never quotes the value, nor says where in it the fault is.
    """
    for char in value:
        code = ord(char)
        if char in "\r\n\u2028\u2029\x85":
            return "holds a line break (a secret is one line: a two-line file?)"
        if code < 0x20 or 0x7F <= code < 0xA0:
            return "holds a control character"
        if header and code > 0xFF:
            return "holds a character beyond Latin-1, which an HTTP header cannot carry"
    return None


def _checked(value: str, path: str, what: str, header: bool) -> Secret:
    stripped = value.strip()
    if not stripped:
        _fail(path, f"{what} is empty")
    why = header_unsafe(stripped, header=header)
    if why is not None:
        _fail(path, f"{what} {why}")
    return Secret(stripped)


def _fail(path: str, message: str) -> NoReturn:
    raise ConfigError(path, message) from None
