"""Schema defaults as a Hydra node, so that every defaulted field can be overridden.

Hydra composes in struct mode: an override may only set a key that some file already put
in the config. A user's deployment file that spells only what it changes would otherwise
refuse ``deployment.secret_watch.enabled=false`` or ``deployment.base_model=gpt-4o``. The
loader composes :func:`deployment_defaults` under every deployment (first, so files and
overrides win over it), which makes every field with a default a key that exists.

Fields typed as a union told apart by a discriminator (``auth``, a provider's ``variant``)
are filled only once the member is known (the ``kind`` the composed deployment names, or
the field's default): merging one member's defaults under another's keys would mix them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rakka_runtime.config.plain import to_plain
from rakka_runtime.config.schema import DeploymentConfig

__all__ = ["deployment_defaults", "provider_deployment_model"]


def _member_for(value: object, chosen: Mapping[str, Any] | None) -> object | None:
    """The default of a discriminated field, if the composed value names the same kind."""
    kind = getattr(value, "kind", None)
    if kind is None:
        return None
    if chosen is None or chosen.get("kind", kind) == kind:
        return value
    return None


def deployment_defaults(
    model: type[DeploymentConfig] = DeploymentConfig,
    composed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Plain defaults of every field of ``model`` that has one.

    :param composed: the deployment as composed without these defaults; when given,
        discriminated fields are filled with their default only if it is of the kind the
        composed deployment names (or names none).
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(model):
        if f.default is not dataclasses.MISSING:
            value: object = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue  # required: the deployment file must say it
        if "discriminator" in f.metadata:
            if composed is None:
                continue
            raw = composed.get(f.name)
            value = _member_for(value, raw if isinstance(raw, Mapping) else None)
            if value is None:
                continue
        out[f.name] = to_plain(value)
    return out


def provider_deployment_model(kind: object) -> type[DeploymentConfig] | None:
    """The deployment class of an installed provider kind, or None (unknown, or plugins
    could not be loaded: validation reports that later, with a better message)."""
    try:
        from rakka_runtime.plugins import PluginHooks

        provider = PluginHooks().providers.get(str(kind))
    except Exception:  # a broken plugin is reported when the runtime loads it
        return None
    return provider.config_model if provider is not None else None
