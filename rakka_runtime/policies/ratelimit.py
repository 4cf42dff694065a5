"""Built-in policy plugin `ratelimit` (being written)."""

from __future__ import annotations
