"""Built-in policy plugin `breaker` (being written)."""

from __future__ import annotations
