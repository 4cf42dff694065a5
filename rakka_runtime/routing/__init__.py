"""Routing over many deployments: model groups, strategies, health and fallbacks.

:mod:`.router` decides (sans-IO); the driver loops are ``run_routed`` in
:mod:`rakka_runtime.drivers.sync` and :mod:`rakka_runtime.drivers.aio`.
"""

from __future__ import annotations
