"""Bearer tokens that expire (Azure Entra ID): fetching one and knowing when to renew it.

A plugin registers a token source through ``rakka_token_provider``; the runtime calls it
for the first token and again ahead of each expiry (see :class:`rakka_runtime.session.Session`
for who waits and who does not). Expiry arrives as Unix seconds, the way identity
libraries report it, and is converted to ``time.monotonic()`` at once, so a wall-clock
jump cannot make a valid token look expired or an expired one valid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rakka_runtime.errors import ConfigError
from rakka_runtime.secrets import Secret, header_unsafe

__all__ = ["BearerToken", "TokenProvider", "fetch_token"]

TokenProvider = Callable[[], Any]
"""Returns ``(token, expires_at)`` with ``expires_at`` in Unix seconds (an
``azure.identity`` ``AccessToken`` unpacks the same way)."""


class BearerToken(Secret):
    """A :class:`Secret` that expires. ``expires_at`` and ``refresh_at`` are monotonic
    seconds: from ``refresh_at`` on the token is renewed, while still sent until
    ``expires_at``."""

    __slots__ = ("expires_at", "refresh_at")
    expires_at: float
    refresh_at: float

    def __init__(self, value: str, *, expires_at: float, refresh_at: float) -> None:
        super().__init__(value)
        object.__setattr__(self, "expires_at", expires_at)
        object.__setattr__(self, "refresh_at", min(refresh_at, expires_at))

    def __repr__(self) -> str:
        return f"BearerToken('{self}', expires_at={self.expires_at:.3f})"

    def __reduce__(self) -> Any:
        # Monotonic times mean nothing in another process: unpickle as a plain Secret.
        return (Secret, (self.reveal(),))


def fetch_token(
    provider: TokenProvider,
    *,
    name: str,
    refresh_before: float,
    path: str = "deployment.auth.token_provider",
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> BearerToken:
    """Call ``provider`` once and check what it returned.

    Renewal starts ``refresh_before`` seconds ahead of expiry, or halfway through the
    token's lifetime when that is shorter than twice ``refresh_before`` (a one-minute test
    token would otherwise be renewed on every request).

    :raises ConfigError: when the provider fails or returns something else than a
        non-empty token with an expiry in the future. The message never holds the token.
    """
    what = f"token provider {name!r}"
    try:
        token, expires_on = provider()
    except Exception as exc:
        # The provider's own words may help (e.g. "no managed identity"); it is trusted
        # code, and it has no token yet to leak.
        raise ConfigError(path, f"{what} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(token, str) or not token.strip():
        raise ConfigError(path, f"{what} returned no token (expected a non-empty string)")
    why = header_unsafe(token.strip())
    if why is not None:
        raise ConfigError(path, f"{what} returned a token that {why}")
    if isinstance(expires_on, bool) or not isinstance(expires_on, int | float):
        raise ConfigError(
            path,
            f"{what} returned expires_at of type {type(expires_on).__name__}, not Unix seconds",
        )
    now = clock()
    lifetime = float(expires_on) - wall()
    if lifetime <= 0:
        raise ConfigError(path, f"{what} returned a token that expired {-lifetime:.0f}s ago")
    lead = min(refresh_before, lifetime / 2)
    return BearerToken(token.strip(), expires_at=now + lifetime, refresh_at=now + lifetime - lead)
