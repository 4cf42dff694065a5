"""Names shared by tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable

from rakka_runtime.config.loader import load_config
from rakka_runtime.config.schema import RakkaConfig
from rakka_runtime.runtime import Runtime

EMULATOR_KEY = "sk-emulator-test-key"

# make_runtime(emulator, *overrides, azure=False, hooks=None) -> Runtime
RuntimeFactory = Callable[..., Runtime]


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
