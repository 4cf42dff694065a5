"""The README's two Python examples run as written, on the bundled emulator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("From Python") : text.index("A long-running service")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_async_and_the_thread_example_run_on_the_emulator() -> None:
    examples = python_examples()
    assert len(examples) == 2 and "AsyncRuntime" in examples[0] and "Runtime" in examples[1]
    for code in examples:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.split()) >= 5, done.stdout  # the haiku was printed
