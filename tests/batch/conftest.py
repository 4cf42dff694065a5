"""Fixtures of the batch tests: emulators (in-process and as a process) and runtimes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from batch_support import KEY, KEY_ENV, EmulatorProcess, endpoint_overrides

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.runtime import Runtime


@pytest.fixture
def batch_emulator() -> Iterator[Callable[..., Emulator]]:
    """Start in-process emulators (``scenario=`` as the Emulator takes it); stopped at the end."""
    started: list[Emulator] = []

    def start(**kw: Any) -> Emulator:
        # Limits far above any test's rate: the client-side limiter follows what it reports.
        kw.setdefault("requests_per_minute", 100_000_000)
        kw.setdefault("tokens_per_minute", 10_000_000_000)
        emulator = Emulator(**kw).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture
def batch_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Runtime]]:
    monkeypatch.setenv(KEY_ENV, KEY)
    opened: list[Runtime] = []

    def make(emulator: Emulator, *overrides: str) -> Runtime:
        runtime = Runtime.from_overrides(endpoint_overrides(emulator.url, *overrides))
        opened.append(runtime)
        return runtime

    yield make
    for runtime in opened:
        runtime.close()


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[Callable[..., EmulatorProcess]]:
    """Start ``rakka emulator`` processes; ``scenario`` is written to a JSON file."""
    started: list[EmulatorProcess] = []

    def start(scenario: dict[str, Any] | None = None, *extra: str) -> EmulatorProcess:
        path = None
        if scenario is not None:
            path = tmp_path / f"scenario-{len(started)}.json"
            path.write_text(json.dumps(scenario))
        limits = ("--rpm", "100000000", "--tpm", "10000000000")
        process = EmulatorProcess(scenario=path, extra=(*limits, *extra))
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
