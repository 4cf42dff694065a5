"""Compose the configuration with Hydra's compose API, validate it, and show it safely.

Where config comes from
-----------------------
The built-in tree (``conf/`` in the repository, ``rakka_runtime/conf`` in the wheel) is
always on the search path. A user ``config_dir`` is searched *before* it, with Hydra's
usual first-match-wins rule, so:

- a user file with the same group and name as a built-in one **replaces it whole** (no
  key-by-key merge: ``<config_dir>/deployment/local.yaml`` is the ``local`` option),
  except an env file: ``<config_dir>/env/prod.yaml`` **extends** the built-in ``prod``
  (the built-in file is applied first, the user's on top), so its limits, deadline and
  negotiated prices are not lost silently;
- a new user file **adds an option** (``<config_dir>/deployment/mine.yaml`` →
  ``deployment=mine``), listed next to the built-in ones in error messages;
- a user ``config.yaml`` **replaces the built-in primary config**, i.e. its defaults list
  decides which options are chosen when no override names one. The built-in groups stay
  available to it, so ``defaults: [{policy: batch}, {deployment: openai},
  {pricing: published}, {env: prod}, _self_]`` is a complete user ``config.yaml``.

To change a few keys rather than a whole file, use an ``env/<name>.yaml`` (``# @package
_global_``) or command-line overrides; both are composed after everything else. An env file
needs only what it changes (``env.name`` defaults to the option's name); a new env extends
a built-in one with ``defaults: [prod, _self_]``.

Under every deployment the schema's defaults are composed first
(:mod:`rakka_runtime.config.defaults`), so any field with a default can be overridden
(``deployment.secret_watch.enabled=false``) on a deployment file that does not spell it.

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
from rakka_runtime.config.defaults import deployment_defaults, provider_deployment_model
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
_SCHEMA_CONFIG = "rakka_runtime_schema_defaults"
_ENV_BASE = "rakka_builtin_env"
_ENV_USER = "rakka_user_env"
_ENV_NAME_UNSET = "__rakka_env_name_unset__"
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
    shadowed: dict[str, tuple[Path, Path]] = {}
    if user is not None and user != builtin:
        hydra_overrides.append(f"hydra.searchpath=['{_file_url(builtin)}']")
        shadowed = _shadowed_envs(user, builtin)
    primary = user or builtin
    all_overrides = [*overrides, *hydra_overrides]

    with _compose_lock:
        try:
            composed = _compose_locked(
                primary, all_overrides, overrides, deployment_defaults(), shadowed
            )
        except ConfigError as exc:
            # An override of a provider's own field (organization, variant.api_version...)
            # needs that provider's defaults; which provider is known only once composed.
            defaults = _provider_defaults(exc, primary, all_overrides, overrides, shadowed)
            if defaults is None:
                raise
            composed = _compose_locked(primary, all_overrides, overrides, defaults, shadowed)
    composed.pop("hydra", None)
    return composed


def _provider_defaults(
    error: ConfigError,
    primary: Path,
    all_overrides: list[str],
    user_overrides: list[str],
    shadowed: Mapping[str, tuple[Path, Path]],
) -> dict[str, Any] | None:
    """The composed deployment's provider defaults, if ``error`` is an unknown deployment
    key they could make known; else None (the error stands)."""
    if not error.path.startswith("deployment.") or "unknown key" not in error.message:
        return None
    selecting = {"deployment.provider", "deployment.variant.kind", "deployment.auth.kind"}
    choices = [
        o
        for o in all_overrides
        if "." not in _key(o) or _key(o) in selecting or _key(o).startswith("hydra.")
    ]
    try:
        raw = _compose_locked(primary, choices, user_overrides, deployment_defaults(), shadowed)
    except ConfigError:
        return None
    deployment = raw.get("deployment")
    if not isinstance(deployment, Mapping):
        return None
    model = provider_deployment_model(deployment.get("provider"))
    if model is None:
        return None
    return deployment_defaults(model, deployment)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _shadowed_envs(user: Path, builtin: Path) -> dict[str, tuple[Path, Path]]:
    """Envs a user file names like a built-in one: ``name -> (built-in file, user file)``."""
    found: dict[str, tuple[Path, Path]] = {}
    for mine in sorted((user / "env").glob("*.yaml")):
        base = builtin / "env" / mine.name
        if base.is_file():
            found[mine.stem] = (base, mine)
    return found


def _env_node(path: Path) -> dict[str, Any]:
    """An env file's content as a node for the ConfigStore (its ``defaults`` list and the
    ``@package _global_`` header are the same for every env file)."""
    import yaml

    content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(content, dict):
        raise ConfigError(f"env/{path.stem}", f"{path} is not a mapping")
    content.pop("defaults", None)
    return content


def _compose_locked(
    primary: Path,
    all_overrides: list[str],
    user_overrides: list[str],
    deployment_schema: dict[str, Any],
    shadowed: Mapping[str, tuple[Path, Path]],
) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, open_dict

    store = ConfigStore.instance()
    # Schema defaults first: every file and override wins over them (see config.defaults).
    store.store(
        name=_SCHEMA_CONFIG,
        node={"deployment": deployment_schema, "env": {"name": _ENV_NAME_UNSET}},
        package="_global_",
    )
    root: list[Any] = [_SCHEMA_CONFIG, "config"]
    # The ConfigStore is process-wide: drop env copies an earlier composition stored (for
    # another config_dir), or they could extend an env this one does not shadow.
    for group in (_ENV_BASE, _ENV_USER):
        store.repo.pop(group, None)
    if shadowed:
        # A user env/<name>.yaml named like a built-in env extends it: the built-in one is
        # applied, then the user's again on top (merging the same file twice is a no-op).
        for name, (base, mine) in shadowed.items():
            store.store(group=_ENV_BASE, name=name, node=_env_node(base), package="_global_")
            store.store(group=_ENV_USER, name=name, node=_env_node(mine), package="_global_")
        root += [{f"optional {_ENV_BASE}": "${env}"}, {f"optional {_ENV_USER}": "${env}"}]
    store.store(name=_ROOT_CONFIG, node={"defaults": [*root, "_self_"]})
    outer = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    error: ConfigError | None = None
    container: Any = None
    try:
        with initialize_config_dir(config_dir=str(primary), job_name="rakka", version_base=None):
            cfg = compose(
                config_name=_ROOT_CONFIG, overrides=all_overrides, return_hydra_config=True
            )
        env_choice = cfg.hydra.runtime.choices.get("env")
        with open_dict(cfg):
            del cfg["hydra"]
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        env = container.get("env") if isinstance(container, dict) else None
        if isinstance(env, dict) and env.get("name") == _ENV_NAME_UNSET:
            # An env file need not repeat its own name: it is the option chosen.
            if env_choice:
                env["name"] = env_choice
            else:
                del env["name"]
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
