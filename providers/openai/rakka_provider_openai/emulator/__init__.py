"""The bundled OpenAI / Azure OpenAI compatible emulator: the runtime's default endpoint and
the target of its tests and benchmarks.

Standard library only (PyYAML for scenario files): it must never import ``rakka_runtime``,
so that it measures and tests the runtime from the outside.

Routes: ``POST /v1/chat/completions`` (and ``/chat/completions``), ``GET /v1/models``, and
Azure's ``POST /openai/deployments/{deployment}/chat/completions?api-version=...``.
Request headers that steer it:

- ``x-emulator-fault: NAME;k=v;...``: inject a fault (see :mod:`.faults`); it takes
  precedence over the scenario (see :mod:`.scenario`).
- ``x-emulator-usage: {"cached_tokens": C, "reasoning_tokens": R, "prompt_tokens": P}``:
  set those usage counts (any subset); reasoning tokens are added to ``completion_tokens``,
  and ``prompt_tokens`` is raised to at least ``cached_tokens``.

Content is deterministic (see :mod:`.content`): the same last user message always yields
the same words, one completion token per word and per stream chunk.
"""

from __future__ import annotations

from .cli import main
from .faults import FAULT_NAMES
from .server import Emulator

__all__ = ["FAULT_NAMES", "Emulator", "main"]
