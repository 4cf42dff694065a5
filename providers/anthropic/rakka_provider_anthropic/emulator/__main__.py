"""``python -m rakka_provider_anthropic.emulator``."""

from __future__ import annotations

from . import main

raise SystemExit(main())
