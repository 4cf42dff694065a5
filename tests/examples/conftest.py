"""The examples are imported from the repository root (``examples.serve_sse``), which is on
``sys.path`` under ``python -m pytest`` but not under a bare ``pytest``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
