"""The core imports nothing provider-specific, and the provider imports only the interface."""

from __future__ import annotations

import ast
from pathlib import Path

import rakka_provider_anthropic
import rakka_runtime

FORBIDDEN_IN_CORE = ("rakka_provider_", "openai", "anthropic")
INTERFACE = ("rakka_runtime.provider", "rakka_runtime")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def package_files(package: object) -> list[Path]:
    root = Path(package.__file__).parent  # type: ignore[attr-defined]
    files = sorted(root.rglob("*.py"))
    assert files
    return files


def test_no_core_module_imports_a_provider_or_an_sdk() -> None:
    offenders = {
        f"{path.relative_to(Path(rakka_runtime.__file__).parent)}: {name}"
        for path in package_files(rakka_runtime)
        for name in imported_modules(path)
        if name.split(".")[0].startswith(FORBIDDEN_IN_CORE)
    }
    assert offenders == set()


def test_the_anthropic_provider_imports_only_the_provider_interface_from_the_core() -> None:
    offenders = set()
    for path in package_files(rakka_provider_anthropic):
        for name in imported_modules(path):
            # The interface module, or the package root's public API (provider.py's rule).
            if name.startswith("rakka_runtime") and name not in INTERFACE:
                offenders.add(f"{path.name}: {name}")
            if name.split(".")[0] in ("rakka_provider_openai", "anthropic", "openai"):
                offenders.add(f"{path.name}: {name}")
    assert offenders == set()


def test_the_emulator_is_standard_library_only() -> None:
    root = Path(rakka_provider_anthropic.__file__).parent / "emulator"
    import sys

    for path in sorted(root.glob("*.py")):
        for name in imported_modules(path):
            assert name.split(".")[0] in sys.stdlib_module_names, f"{path.name}: {name}"
