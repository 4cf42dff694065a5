"""Regenerate the trimmed spec files in this folder from the full published specs.

    python tests/providers/openai/specs/trim.py OPENAPI_YAML AZURE_INFERENCE_YAML

Keeps ``openapi``, ``info`` and the ``components.schemas`` the contract tests name (see
ROOTS) with every schema they reference, transitively; each kept schema is copied as
published. See SOURCE.md for where the inputs come from.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
PREFIX = "#/components/schemas/"
ROOTS = {
    "openai.yaml": [
        "CreateChatCompletionRequest",
        "CreateChatCompletionResponse",
        "CreateChatCompletionStreamResponse",
    ],
    "azure-2024-10-21.yaml": [
        "createChatCompletionRequest",
        "createChatCompletionResponse",
        "createChatCompletionStreamResponse",
        "chatCompletionsRequestCommon",
    ],
}


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(PREFIX):
                found.add(value[len(PREFIX) :])
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


def trim(source: Path, roots: list[str]) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with source.open(encoding="utf-8") as f:
        document = yaml.load(f, Loader=loader)
    schemas = document["components"]["schemas"]
    keep: list[str] = []
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.append(name)
        todo.extend(sorted(_refs(schemas[name]) - set(keep)))
    ordered = [name for name in schemas if name in keep]  # the published order
    return {
        "openapi": document["openapi"],
        "info": document["info"],
        "components": {"schemas": {name: schemas[name] for name in ordered}},
    }


def main(openai_spec: str, azure_spec: str) -> None:
    for target, source in (("openai.yaml", openai_spec), ("azure-2024-10-21.yaml", azure_spec)):
        trimmed = trim(Path(source), ROOTS[target])
        header = (
            f"# Trimmed from {Path(source).name} by trim.py (see SOURCE.md): only the schemas\n"
            "# the contract tests use, with everything they reference, copied as published.\n"
        )
        text = yaml.safe_dump(trimmed, sort_keys=False, allow_unicode=True, width=100)
        (HERE / target).write_text(header + text, encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
