"""The bundled Anthropic Messages API emulator: the ``anthropic`` provider's embedded
default and the target of its tests (and of the official ``anthropic`` SDK in them).

Standard library only; it never imports ``rakka_runtime``. See :mod:`.server` for what it
checks and answers, :mod:`.content` for the deterministic answers and :mod:`.faults` for
the ``x-emulator-fault`` header.
"""

from __future__ import annotations

from .cli import main
from .faults import FAULT_NAMES
from .server import Emulator

__all__ = ["FAULT_NAMES", "Emulator", "main"]
