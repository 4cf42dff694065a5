"""The README's examples run as a new user runs them: no key, no network (the emulator)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("index", [0, 1], ids=["asyncio", "threads"])
def test_the_first_python_examples_run_on_the_emulator(tmp_path: Path, index: int) -> None:
    example = _python_blocks()[index]
    assert ("AsyncRuntime" in example) == (index == 0) and "Runtime" in example
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    out = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Usage(" in out.stdout and "$" in out.stdout
    assert len(out.stdout.split()) > 10  # the streamed haiku, then the summary line


def test_batch_output_order_is_documented() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "the output is in **completion order**, not input order" in text


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """CI proves what the README promises only if it runs the same command."""
    text = README.read_text(encoding="utf-8")
    section = text.split("Run the whole test suite", 1)[1]
    command = re.search(r"```sh\n(.*?)\n```", section, re.S)
    assert command is not None, "the README's test command block is gone"
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[-1] == command.group(1).strip()
    assert "redis-server" in command.group(1)  # the shared-policy tests need one
