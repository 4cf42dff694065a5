"""Names shared by tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import pytest

from rakka_runtime.config.loader import load_config
from rakka_runtime.config.schema import RakkaConfig
from rakka_runtime.runtime import Runtime

EMULATOR_KEY = "sk-emulator-test-key"

# make_runtime(emulator, *overrides, azure=False, hooks=None) -> Runtime
RuntimeFactory = Callable[..., Runtime]


class Calls:
    """How many times a method was called (see :func:`count_calls`)."""

    count = 0


def count_calls(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> Calls:
    """Count the calls of ``target.name`` from now on; it still does what it did."""
    calls = Calls()
    method = getattr(target, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.count += 1
        return method(*args, **kwargs)

    monkeypatch.setattr(target, name, counted)
    return calls


@functools.cache
def _base_config() -> RakkaConfig:
    return load_config(["deployment=openai", "deployment.api_key.name=RAKKA_TEST_KEY"])


def config_at(url: str, *overrides: str) -> RakkaConfig:
    """The ``openai`` deployment aimed at ``url``, with ``deployment.a.b=value`` overrides.

    Hydra composes once per module; the overrides are set on the composed mapping and
    validated by the runtime as usual (composing per test would dominate its run time).
    """
    base = _base_config()
    deployment = copy.deepcopy(base.deployment)
    deployment["variant"]["endpoint"] = f"{url}/v1"
    for override in overrides:
        path, _, value = override.partition("=")
        *parents, leaf = path.removeprefix("deployment.").split(".")
        node = deployment
        for key in parents:
            node = node[key]
        node[leaf] = value
    return dataclasses.replace(base, deployment=deployment)
