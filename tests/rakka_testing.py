"""Names shared by tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from collections.abc import Callable

from rakka_runtime.runtime import Runtime

EMULATOR_KEY = "sk-emulator-test-key"

# make_runtime(emulator, *overrides, azure=False, hooks=None) -> Runtime
RuntimeFactory = Callable[..., Runtime]
