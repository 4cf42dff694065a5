"""The layering holds: the core knows no provider, and a provider knows only the published
provider interface (``rakka_runtime.provider``, or the package root's public API)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_SPECIFIC = ("rakka_provider_", "openai", "anthropic")


def imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_no_core_module_imports_anything_provider_specific() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "rakka_runtime").rglob("*.py"))
        for name in imports(path)
        if name.split(".")[0].startswith(PROVIDER_SPECIFIC)
    ]
    assert offenders == []


@pytest.mark.parametrize("package", ["providers/openai/rakka_provider_openai"])
def test_a_provider_imports_only_the_provider_interface(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imports(path)
        if name.startswith("rakka_runtime")
        and name not in ("rakka_runtime", "rakka_runtime.provider")
    ]
    assert offenders == []
