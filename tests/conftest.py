"""Shared fixtures: a real emulator on loopback and runtimes pointed at it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from driver_clients import client_at  # noqa: F401 - fixtures, for every test folder
from hypothesis import settings
from raw_http import raw_server  # noqa: F401

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.config.loader import load_config
from rakka_runtime.runtime import Runtime
from rakka_testing import EMULATOR_KEY, RuntimeFactory

# Property tests check behaviour, not speed: a loaded 2-core CI machine must not fail them
# on Hypothesis' per-example deadline.
settings.register_profile("rakka", deadline=None)
settings.load_profile("rakka")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(keys=[EMULATOR_KEY]) as emu:
        yield emu


@pytest.fixture
def make_runtime(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[RuntimeFactory]:
    """Build runtimes aimed at an emulator; every runtime built is closed at the end."""
    monkeypatch.setenv("RAKKA_TEST_KEY", EMULATOR_KEY)
    opened: list[Runtime] = []

    def make(emu: Emulator, *overrides: str, azure: bool = False, **kw: Any) -> Runtime:
        base: Sequence[str]
        if azure:
            base = [
                "deployment=azure",
                f"deployment.variant.endpoint={emu.url}",
                # Replace the file reference with an env one (Hydra: delete, then add).
                "~deployment.api_key",
                "+deployment.api_key={from: env, name: RAKKA_TEST_KEY}",
            ]
        else:
            base = [
                "deployment=openai",
                f"deployment.variant.endpoint={emu.url}/v1",
                "deployment.api_key.name=RAKKA_TEST_KEY",
            ]
        runtime = Runtime(load_config([*base, *overrides]), **kw)
        opened.append(runtime)
        return runtime

    yield make
    for runtime in opened:
        runtime.close()
