"""Routed runtimes over several emulators, on either driver (``routed_at``)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from driver_clients import DRIVERS, AsyncClient, Client, SyncClient

from rakka_runtime.config.schema import ModelGroup, RakkaConfig
from rakka_runtime.config.validation import validate_config
from rakka_runtime.plugins import PluginHooks
from rakka_runtime.runtime import Runtime
from rakka_testing import EMULATOR_KEY, config_at

# Fast policies for routing tests: no retry backoff to sit through unless a test asks.
FAST = {"retry": {"max_retries": 0}}


def routed_config(
    endpoints: Mapping[str, str],
    groups: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    **top: Any,
) -> RakkaConfig:
    """A routed config: one named ``openai`` deployment per endpoint (``{url}/v1``), each
    deep-merged with ``settings[name]`` (and :data:`FAST`), and ``groups`` as model groups."""
    base = config_at("http://127.0.0.1:1")
    template: dict[str, Any] = copy.deepcopy(base.deployment)  # type: ignore[arg-type]
    named: dict[str, Any] = {}
    for name, url in endpoints.items():
        item = _merged(template, FAST)
        item = _merged(item, (settings or {}).get(name, {}))
        item["name"] = name
        item["variant"]["endpoint"] = f"{url}/v1"
        named[name] = item
    raw = {
        "deployment": template,
        "pricing": dataclasses.asdict(base.pricing),
        "env": {"name": "test"},
        "deployments": named,
        "model_groups": {name: dict(group) for name, group in groups.items()},
        **top,
    }
    raw["pricing"]["as_of"] = str(base.pricing.as_of)
    return validate_config(raw)


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture(params=DRIVERS)
def routed_at(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Client]]:
    """``routed_at(endpoints, groups, settings=None, hooks=None, **top)``: a client of the
    parametrised driver over a routed runtime."""
    monkeypatch.setenv("RAKKA_TEST_KEY", EMULATOR_KEY)
    opened: list[tuple[Runtime, AsyncClient | None]] = []

    def make(
        endpoints: Mapping[str, str],
        groups: Mapping[str, Mapping[str, Any]],
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        hooks: PluginHooks | None = None,
        **top: Any,
    ) -> Client:
        runtime = Runtime(routed_config(endpoints, groups, settings, **top), hooks=hooks)
        if request.param == "sync":
            opened.append((runtime, None))
            return SyncClient(runtime)
        client = AsyncClient(runtime)
        opened.append((runtime, client))
        return client

    yield make
    for runtime, client in opened:
        try:
            if client is not None:
                client.close()
        finally:
            runtime.close()


__all__ = ["FAST", "ModelGroup", "routed_config"]
