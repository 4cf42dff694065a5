"""``python -m rakka_provider_openai.emulator``: the same as ``rakka emulator``."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
