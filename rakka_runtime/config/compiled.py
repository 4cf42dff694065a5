"""Compiled configs: compose and validate once, run many times without Hydra or pydantic.

``rakka config compile [OVERRIDES] -o rakka.json`` composes ``conf/`` with Hydra,
validates it (the deployment with its provider's class) and writes the result, every
default filled in, as JSON with a digest. ``Runtime.from_compiled("rakka.json")`` rebuilds
the config objects from it with :func:`~rakka_runtime.config.plain.from_plain`: a serving
process then never imports Hydra, OmegaConf or pydantic (about 20 MiB of RSS and most of
the start-up time; see docs/benchmarks.md).

The digest (SHA-256 over the format, the rakka version and the config) is what allows
skipping validation: it proves the content is what validation produced, by this version.
A file whose digest does not match (edited by hand) or that another rakka version wrote
is validated in full with pydantic instead, with a warning; it is never trusted blindly.
The digest guards against edits and version drift, not against an attacker who can
write the file (who could as well point the endpoint elsewhere).

A compiled file holds no secret: secret references stay references, and compiling
refuses an inline secret, a password in a URL, or a plain string under a key that names
a secret (anything ``rakka config show`` would mask).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rakka_runtime import __version__
from rakka_runtime.config.plain import from_plain, to_plain
from rakka_runtime.config.schema import (
    DeploymentConfig,
    EnvConfig,
    ModelGroup,
    PricingTable,
    RakkaConfig,
)
from rakka_runtime.errors import ConfigError

if TYPE_CHECKING:
    from rakka_runtime.plugins import PluginHooks
    from rakka_runtime.secret_value import Secret

__all__ = ["FORMAT", "compile_config", "load_compiled", "write_compiled"]

FORMAT = "rakka-compiled-config/1"
logger = logging.getLogger("rakka_runtime.config")


def compile_config(
    config: RakkaConfig,
    deployment: DeploymentConfig,
    named: Mapping[str, DeploymentConfig] | None = None,
) -> dict[str, Any]:
    """The compiled form of a validated config, its validated deployment and (a routed
    config) its validated named deployments.

    :raises ConfigError: the config holds a secret value (see the module docstring).
    """
    from rakka_runtime.config.loader import redacted

    plain: dict[str, Any] = {
        "deployment": to_plain(deployment, on_secret=_refuse_inline_secret),
        "pricing": to_plain(config.pricing),
        "env": to_plain(config.env),
    }
    if named:
        plain["deployments"] = {
            name: to_plain(item, on_secret=_refuse_inline_secret) for name, item in named.items()
        }
    if config.model_groups:
        plain["model_groups"] = to_plain(config.model_groups)
    if config.default_model is not None:
        plain["default_model"] = config.default_model
    shown = redacted(plain)
    if shown != plain:
        path = _first_difference(plain, shown)
        raise ConfigError(
            path,
            "holds a secret (it would be masked by `rakka config show`); a compiled config "
            "must not: use a secret reference ({from: env} or {from: file})",
        )
    body: dict[str, Any] = {"format": FORMAT, "rakka_version": __version__, "config": plain}
    return {**body, "digest": _digest(body)}


def write_compiled(compiled: Mapping[str, Any], path: str | Path) -> None:
    """Write a compiled config atomically (a reader never sees half a file)."""
    target = Path(path)
    text = json.dumps(compiled, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_compiled(path: str | Path, hooks: PluginHooks) -> RakkaConfig:
    """Read a compiled config; its deployment is built with the provider class ``hooks``
    registered for its ``provider`` kind.

    :raises ConfigError: the file is unreadable, not a compiled config, or (when it has to
        be validated in full) invalid.
    """
    where = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        _fail(where, f"cannot read the compiled config: {exc.strerror or exc}")
    except ValueError as exc:
        _fail(where, f"not JSON: {exc}")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        _fail(where, f'not a compiled config (expected "format": {FORMAT!r})')
    raw = data.get("config")
    if not isinstance(raw, dict) or not isinstance(raw.get("deployment"), dict):
        _fail(where, 'a compiled config needs a "config" object with a "deployment"')
    body = {key: data.get(key) for key in ("format", "rakka_version", "config")}
    provider = hooks.providers.get(str(raw["deployment"].get("provider")))
    if provider is None:
        # Not installed (or blocked): validation passes the raw deployment on, and the
        # runtime names the unknown kind and the installed ones.
        from rakka_runtime.config.validation import validate_config

        return validate_config(raw)
    if data.get("digest") == _digest(body) and data.get("rakka_version") == __version__:
        built = _rebuild(raw, provider.config_model, hooks)
        if built is not None:
            return built
        reason = "its classes changed since it was compiled"
    elif data.get("rakka_version") != __version__:
        reason = f"it was compiled by rakka {data.get('rakka_version')}, this is {__version__}"
    else:
        reason = "it was edited after it was compiled (the digest does not match)"
    logger.warning("compiled config %s: %s; validating it in full", where, reason)
    from rakka_runtime.config.validation import validate_config

    return validate_config(raw)


def _rebuild(
    raw: Mapping[str, Any], model: type[DeploymentConfig], hooks: PluginHooks
) -> RakkaConfig | None:
    try:
        named: dict[str, dict[str, Any] | DeploymentConfig] = {}
        for name, item in dict(raw.get("deployments") or {}).items():
            provider = hooks.providers.get(str(item.get("provider")))
            if provider is None:
                return None  # validation names the unknown kind
            named[name] = from_plain(provider.config_model, item)
        return RakkaConfig(
            deployment=from_plain(model, raw["deployment"]),
            pricing=from_plain(PricingTable, raw.get("pricing", {})),
            env=from_plain(EnvConfig, raw.get("env", {})),
            deployments=named,
            model_groups={
                name: from_plain(ModelGroup, group)
                for name, group in dict(raw.get("model_groups") or {}).items()
            },
            default_model=raw.get("default_model"),
        )
    except (TypeError, ValueError, AttributeError):
        # The provider's class gained a required field or lost one: validate instead.
        return None


def _digest(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _refuse_inline_secret(_: Secret) -> NoReturn:
    raise ConfigError(
        "deployment.api_key",
        "an inline secret cannot be compiled (the file would hold it); use {from: env} or "
        "{from: file}",
    )


def _first_difference(plain: Any, shown: Any, path: str = "") -> str:
    if isinstance(plain, Mapping) and isinstance(shown, Mapping):
        for key, value in plain.items():
            if shown.get(key) != value:
                return _first_difference(value, shown.get(key), f"{path}.{key}" if path else key)
    if isinstance(plain, list) and isinstance(shown, list):
        for index, (a, b) in enumerate(zip(plain, shown, strict=False)):
            if a != b:
                return _first_difference(a, b, f"{path}[{index}]")
    return path


def _fail(path: str, message: str) -> NoReturn:
    raise ConfigError(path, message)
