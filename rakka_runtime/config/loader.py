"""Compose the configuration with Hydra's compose API, validate it, and show it safely.

Where config comes from
-----------------------
The built-in tree (``conf/`` in the repository, ``rakka_runtime/conf`` in the wheel) is
always on the search path. A user ``config_dir`` is searched *before* it, with Hydra's
usual first-match-wins rule, so:

- a user file with the same group and name as a built-in one **replaces it whole** (no
  key-by-key merge: ``<config_dir>/deployment/local.yaml`` is the ``local`` option);
- a new user file **adds an option** (``<config_dir>/deployment/mine.yaml`` →
  ``deployment=mine``), listed next to the built-in ones in error messages;
- a user ``config.yaml`` **replaces the built-in primary config**, i.e. its defaults list
  decides which options are chosen when no override names one. The built-in groups stay
  available to it, so ``defaults: [{policy: batch}, {deployment: openai},
  {pricing: published}, {env: prod}, _self_]`` is a complete user ``config.yaml``.

To change a few keys rather than a whole file, use an ``env/<name>.yaml`` (``# @package
_global_``) or command-line overrides; both are composed after everything else.

How
---
Hydra reads the primary config from the first search-path directory *before* it applies
``hydra.searchpath``, so a user directory without ``config.yaml`` could not fall back to
the built-in one. The primary config is therefore a one-line node registered in Hydra's
ConfigStore (``defaults: [config]``), which picks up ``config.yaml`` through the full
search path. Hydra keeps its state in a process-wide singleton (``GlobalHydra``), so each
composition runs under a lock with that singleton cleared, and an application's own Hydra
state (if it runs under ``@hydra.main``) is put back afterwards.

Hydra and OmegaConf are imported inside the functions: ``import rakka_runtime`` must not
pay for them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import rakka_runtime
from rakka_runtime.config.errors import from_hydra_error, names_a_secret
from rakka_runtime.config.plain import to_plain
from rakka_runtime.config.schema import PLUGIN_LOCATORS, URL_PASSWORD, RakkaConfig
from rakka_runtime.config.validation import validate_config
from rakka_runtime.errors import ConfigError
from rakka_runtime.secret_value import MASK

__all__ = [
    "builtin_conf_dir",
    "compose_config",
    "dump_config_yaml",
    "load_config",
    "redacted",
]

_ROOT_CONFIG = "rakka_runtime_root"
# GlobalHydra is process-wide: one composition at a time.
_compose_lock = threading.Lock()


def builtin_conf_dir() -> Path:
    """The built-in conf tree: inside the installed wheel, else the repository's."""
    packaged = Path(rakka_runtime.__file__).parent / "conf"
    if packaged.is_dir():
        return packaged
    # Editable install: rakka_runtime/config/loader.py → repository root.
    return Path(__file__).resolve().parents[2] / "conf"


def compose_config(
    overrides: Sequence[str] = (), config_dir: str | Path | None = None
) -> dict[str, Any]:
    """Compose the built-in tree (overlaid by ``config_dir``) with Hydra overrides.

    :param overrides: Hydra override strings, e.g. ``["deployment=azure",
        "deployment.retry.max_retries=5"]``; they win over every file.
    :param config_dir: a user directory searched before the built-in tree (see the
        module docstring for what its files replace and add).
    :returns: the resolved config as plain dicts and lists, without a ``hydra`` key.
    :raises ConfigError: for an unknown option, a bad override, invalid YAML, an
        unresolvable interpolation or a missing (``???``) value.
    """
    overrides = [str(item) for item in overrides]
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            raise ConfigError(key, f"{override!r}: Hydra's own settings cannot be overridden here")
    builtin = builtin_conf_dir()
    user = _user_dir(config_dir)
    hydra_overrides = []
    if user is not None and user != builtin:
        hydra_overrides.append(f"hydra.searchpath=['{_file_url(builtin)}']")
    primary = user or builtin

    with _compose_lock:
        composed = _compose_locked(primary, [*overrides, *hydra_overrides], overrides)
    composed.pop("hydra", None)
    return composed


def _compose_locked(
    primary: Path, all_overrides: list[str], user_overrides: list[str]
) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name=_ROOT_CONFIG, node={"defaults": ["config", "_self_"]})
    outer = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    error: ConfigError | None = None
    container: Any = None
    try:
        with initialize_config_dir(config_dir=str(primary), job_name="rakka", version_base=None):
            cfg = compose(config_name=_ROOT_CONFIG, overrides=all_overrides)
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as exc:
        # Whatever Hydra, OmegaConf or PyYAML raise here is a problem in the user's
        # files or overrides.
        error = from_hydra_error(exc, user_overrides)
    finally:
        # initialize_config_dir put back the (cleared) instance it found; restore the
        # application's own Hydra, if it had one.
        GlobalHydra.instance().clear()
        if outer is not None:
            GlobalHydra.instance().initialize(outer)
    if error is not None:
        # Raised here, not in the except block: the library's exception holds config
        # nodes (secrets included) and must not ride along as __context__.
        raise error
    if not isinstance(container, dict):
        raise ConfigError("", f"the composed config is a {type(container).__name__}, not a mapping")
    return {str(key): value for key, value in container.items()}


def _user_dir(config_dir: str | Path | None) -> Path | None:
    if config_dir is None:
        return None
    path = Path(config_dir).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError("config_dir", f"{str(config_dir)!r} is not a directory")
    return path


def _file_url(path: Path) -> str:
    # Quoted for Hydra's override grammar, where only quotes need escaping; as_posix()
    # keeps Windows backslashes away from the closing quote.
    return "file://" + path.as_posix().replace("'", "\\'")


def load_config(overrides: Sequence[str] = (), config_dir: str | Path | None = None) -> RakkaConfig:
    """Compose (see :func:`compose_config`) and validate (see :func:`validate_config`)."""
    return validate_config(compose_config(overrides, config_dir))


# --- Showing a config -------------------------------------------------------------------




def dump_config_yaml(config: object) -> str:
    """YAML for ``rakka config show``: secret references appear as references
    (``{from: env, name: ...}``), an inline value as ``'**********'``; never a value."""
    import yaml

    return yaml.safe_dump(
        redacted(to_plain(config)), sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def _redacted_reference(source: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """A secret reference with everything under it masked but what locates the secret:
    ``name`` of ``env``, ``path`` of ``file``, the :data:`PLUGIN_LOCATORS` of a plugin
    source (plain strings or numbers only). An inline value is always masked."""
    shown = {"env": ("name",), "file": ("path",), "inline": ()}.get(source, PLUGIN_LOCATORS)
    out: dict[str, Any] = {}
    for k, v in value.items():
        key = str(k)
        if key == "from":
            out[key] = v
        elif key in shown and isinstance(v, str | int | float) and not isinstance(v, bool):
            out[key] = redacted(v, key)
        else:
            out[key] = MASK
    return out


def redacted(value: Any, key: str | None = None) -> Any:
    """``value`` (plain data) with everything that is or may be a secret masked."""
    if isinstance(value, Mapping):
        source = value.get("from")
        if isinstance(source, str) and source:
            return _redacted_reference(source, value)
        return {str(k): redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(item) for item in value]
    if isinstance(value, str):
        # A plain string under a key that names a secret is a key pasted in by mistake.
        if key is not None and names_a_secret(key):
            return MASK
        # A URL's userinfo password (redis://:pass@host) is a secret too.
        return URL_PASSWORD.sub(rf"\1{MASK}@", value)
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else shows as its str(); for a Secret that is the mask.
    return str(value)
