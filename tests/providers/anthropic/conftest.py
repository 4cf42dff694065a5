"""Fixtures of the Anthropic provider's tests: its emulator, and a key for the configs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from anthropic_support import KEY, KEY_ENV
from driver_clients import client_for  # noqa: F401 - the provider-agnostic driver fixture

from rakka_provider_anthropic.emulator import Emulator


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def anthropic_emulator() -> Iterator[Emulator]:
    with Emulator(keys=[KEY]) as emu:
        yield emu
