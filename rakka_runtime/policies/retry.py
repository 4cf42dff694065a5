"""Built-in policy plugin `retry` (being written)."""

from __future__ import annotations
