"""Helpers of the Anthropic provider's tests: configs aimed at its emulator."""

from __future__ import annotations

import copy
import dataclasses
import functools

from rakka_runtime.config.loader import load_config
from rakka_runtime.config.schema import RakkaConfig

KEY_ENV = "RAKKA_ANTHROPIC_TEST_KEY"
KEY = "sk-ant-emulator-test-key-0123456789"


@functools.cache
def _base() -> RakkaConfig:
    return load_config(["deployment=anthropic", f"deployment.api_key.name={KEY_ENV}"])


def anthropic_config(url: str, **deployment: object) -> RakkaConfig:
    """The ``anthropic`` deployment aimed at ``url``, with deployment keys replaced.

    Composed once (Hydra per test would dominate the run time); the runtime validates the
    mapping as usual.
    """
    base = _base()
    node = copy.deepcopy(base.deployment)
    assert isinstance(node, dict)
    node["endpoint"] = url
    for key, value in deployment.items():
        *parents, leaf = key.split("__")
        target = node
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return dataclasses.replace(base, deployment=node)
