"""What a failed deployment means for a routed request: try the next deployment of the
group, stop, or go to another group (by error kind).

The table is the issue's defaults merged with the group's ``fallbacks``; the decision is
a lookup, the same for both drivers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rakka_runtime.config.schema import FALLBACK_NEXT, FALLBACK_STOP, ModelGroup

__all__ = ["DEFAULT_FALLBACKS", "ERROR_KINDS", "FallbackTable"]

DEFAULT_FALLBACKS: Mapping[str, str] = {
    # The deployment cannot take the request now: another one may.
    "rate_limited": FALLBACK_NEXT,
    "server_error": FALLBACK_NEXT,
    "timeout": FALLBACK_NEXT,
    "network": FALLBACK_NEXT,
    "circuit_open": FALLBACK_NEXT,
    "backpressure": FALLBACK_NEXT,
    "quota_exceeded": FALLBACK_NEXT,
    # Where the issue is silent: failures of the deployment, not of the request.
    "stream_interrupted": FALLBACK_NEXT,
    "protocol": FALLBACK_NEXT,
    "conflict": FALLBACK_NEXT,
    "budget_exceeded": FALLBACK_NEXT,
    # The request itself is wrong: every deployment would refuse it.
    "bad_request": FALLBACK_STOP,
    "unauthorized": FALLBACK_STOP,
    "forbidden": FALLBACK_STOP,
    "not_found": FALLBACK_STOP,
    "invalid_request": FALLBACK_STOP,
    # Unless the group names a group for them (context_fallback, content_filter_fallback).
    "context_length_exceeded": FALLBACK_STOP,
    "content_filtered": FALLBACK_STOP,
    # Never routed on: the caller's own doing, or a bug.
    "cancelled": FALLBACK_STOP,
    "plugin_error": FALLBACK_STOP,
    "inference_error": FALLBACK_STOP,
}

ERROR_KINDS = frozenset(DEFAULT_FALLBACKS)
"""Every error kind a group's ``fallbacks`` may name."""

_NEVER = frozenset({"cancelled", "plugin_error"})


@dataclass(frozen=True, slots=True)
class FallbackTable:
    """One group's table: error kind → ``next``, ``stop`` or a group name."""

    actions: Mapping[str, str]

    @classmethod
    def for_group(cls, group: ModelGroup) -> FallbackTable:
        actions = dict(DEFAULT_FALLBACKS)
        if group.context_fallback is not None:
            actions["context_length_exceeded"] = group.context_fallback
        if group.content_filter_fallback is not None:
            actions["content_filtered"] = group.content_filter_fallback
        actions.update(group.fallbacks)
        for kind in _NEVER:
            actions[kind] = FALLBACK_STOP
        return cls(actions)

    def action(self, kind: str) -> str:
        return self.actions.get(kind, FALLBACK_STOP)
