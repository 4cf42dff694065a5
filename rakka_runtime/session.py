"""A deployment's session: one connection pool plus an immutable credential snapshot.

The snapshot (credential and the auth headers derived from it) lives in a one-slot cell.
A request reads the cell once when it starts and keeps that snapshot to the end, so a
key rotation never changes the headers of a request in flight. Swapping is a single
attribute assignment (atomic under the GIL): no lock on the hot path.

Writers (a file watcher, a 401 re-read, a token renewal) are serialised by one lock
around resolve → compare → swap, so two of them that read the same new key swap once.
A bearer token that is due for renewal but still valid is renewed on a background
thread while requests go on with it; only an expired token makes requests wait.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from rakka_runtime.errors import ConfigError, Unauthorized
from rakka_runtime.secret_value import SecretHeader
from rakka_runtime.secrets import Secret

if TYPE_CHECKING:
    from rakka_runtime.drivers.sync_transport import PoolManager
    from rakka_runtime.watch import SecretWatcher

__all__ = ["HeaderBuilder", "Session", "SessionSnapshot", "SnapshotCell"]

logger = logging.getLogger("rakka_runtime.session")

HeaderBuilder = Callable[[Secret | None], Mapping[str, str]]
SwapListener = Callable[[str, "SessionSnapshot", "SessionSnapshot"], None]

_RENEW_RETRY = 1.0
"""Seconds before a failed (or pointless) background token renewal is tried again, so a
provider that is down is not called on every request."""

_CLOSE_JOIN = 5.0
"""Longest :meth:`Session.close` waits for a token renewal in progress."""


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """Immutable: the credential in force and the headers every request sends with it.

    ``refresh_at``/``expires_at`` (monotonic seconds) are set for expiring bearer tokens
    only; ``version`` counts credential changes.
    """

    credential: Secret | None
    headers: Mapping[str, str] = field(repr=False)
    version: int = 0
    refresh_at: float | None = None
    expires_at: float | None = None

    def __repr__(self) -> str:  # never show header values: they hold the key
        return f"SessionSnapshot(version={self.version}, headers={sorted(self.headers)})"


SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})
"""Header names whose value is a credential whatever the provider put in it."""


def hide_secret_headers(headers: Mapping[str, str], credential: Secret | None) -> dict[str, str]:
    """``headers`` with each value that holds a secret (a credential header by name, or
    any value containing the credential) as a :class:`SecretHeader`, whose repr is a
    mask: a provider's header builder need not know about it."""
    value = credential.reveal() if credential is not None else ""
    return {
        name: SecretHeader(text)
        if name.lower() in SECRET_HEADERS or (value and value in text)
        else text
        for name, text in headers.items()
    }


def _make(credential: Secret | None, headers: Mapping[str, str], version: int) -> SessionSnapshot:
    return SessionSnapshot(
        credential,
        MappingProxyType(hide_secret_headers(headers, credential)),
        version,
        getattr(credential, "refresh_at", None),
        getattr(credential, "expires_at", None),
    )


class SnapshotCell:
    """Holds the current snapshot; readers never lock, writers serialise among themselves."""

    __slots__ = ("_lock", "current")

    def __init__(self, snapshot: SessionSnapshot) -> None:
        self.current = snapshot
        self._lock = threading.Lock()

    def swap(self, make: Callable[[SessionSnapshot], SessionSnapshot]) -> SessionSnapshot:
        """Replace the snapshot with ``make(old)``; returns the old one."""
        with self._lock:
            old = self.current
            self.current = make(old)
            return old


class Session:
    """Per-deployment I/O state shared by every request: pool, credential cell, watcher."""

    def __init__(
        self,
        name: str,
        *,
        pool: PoolManager,
        resolve_credential: Callable[[], Secret | None],
        build_headers: HeaderBuilder,
        on_swap: SwapListener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.pool = pool
        self._resolve = resolve_credential
        self._build_headers = build_headers
        self._on_swap = on_swap
        self._clock = clock
        self._refresh_lock = threading.Lock()
        self._renewing = threading.Lock()  # held from a renewal's start to its end
        self._renew_thread: threading.Thread | None = None
        self._renew_not_before = 0.0
        self._watcher: SecretWatcher | None = None
        self._swaps = 0
        self._closed = False
        self._previous: Secret | None = None  # the credential the last swap replaced
        credential = resolve_credential()
        self.cell = SnapshotCell(_make(credential, build_headers(credential), 0))

    # -- the hot path -----------------------------------------------------------------------

    @property
    def snapshot(self) -> SessionSnapshot:
        """The snapshot a request starting now uses (read it once per request)."""
        snap = self.cell.current
        refresh_at = snap.refresh_at
        if refresh_at is None or self._clock() < refresh_at:
            return snap
        return self._renew(snap)

    def snapshot_nowait(self) -> SessionSnapshot | None:
        """:attr:`snapshot`, or ``None`` when getting it would block (a bearer token that
        expired must be renewed first): an event loop then asks for it in a thread."""
        snap = self.cell.current
        refresh_at = snap.refresh_at
        if refresh_at is None or self._clock() < refresh_at:
            return snap
        if snap.expires_at is not None and self._clock() < snap.expires_at:
            return self._renew(snap)  # renews in the background, never waits
        return None

    def credentials(self) -> tuple[Secret, ...]:
        """The current credential and the one the last rotation replaced (a request in
        flight may still use it): what error text from the wire is redacted of."""
        current = self.cell.current.credential
        return tuple(c for c in (current, self._previous) if c is not None)

    @property
    def swaps(self) -> int:
        """How many times the credential changed since the session opened."""
        return self._swaps

    @property
    def watcher(self) -> SecretWatcher | None:
        return self._watcher

    # -- changing the credential ----------------------------------------------------------------

    def refresh(self) -> bool:
        """Re-resolve the credential; swap the snapshot if it changed. Returns whether it did.

        :raises ConfigError: when the credential cannot be resolved (the snapshot stays).
        """
        with self._refresh_lock:
            return self._refresh_locked()

    def reauthorize(self, used: SessionSnapshot) -> bool:
        """After a 401 sent with ``used``: is there a different credential to try now?

        True at once if the credential already changed since ``used`` was read (another
        request, or the watcher, got there first); otherwise re-resolve once (a file event
        may have been missed, a token revoked) and say whether that changed it.
        """
        with self._refresh_lock:
            if not _same(self.cell.current.credential, used.credential):
                return True
            try:
                return self._refresh_locked()
            except ConfigError as exc:
                logger.error("%s: re-reading the credential after a 401 failed: %s", self.name, exc)
                return False

    def _refresh_locked(self) -> bool:
        credential = self._resolve()
        current = self.cell.current
        if _same(credential, current.credential):
            if getattr(credential, "expires_at", None) != current.expires_at:
                # The same token with a later expiry: nothing to announce, but the renewal
                # times must move or every request would ask for a renewal again.
                self.cell.swap(
                    lambda prev: replace(
                        prev,
                        credential=credential,
                        refresh_at=getattr(credential, "refresh_at", None),
                        expires_at=getattr(credential, "expires_at", None),
                    )
                )
            return False
        headers = self._build_headers(credential)
        old = self.cell.swap(lambda prev: _make(credential, headers, prev.version + 1))
        new = self.cell.current
        self._swaps += 1
        self._previous = old.credential
        logger.info("%s: credential changed (snapshot version %d)", self.name, new.version)
        if self._on_swap is not None:
            try:
                self._on_swap(self.name, old, new)
            except Exception:
                # The swap has happened; a failing listener (metrics) must not undo it
                # or fail the request that triggered it.
                logger.exception("%s: a session_swapped listener failed", self.name)
        return True

    # -- expiring tokens --------------------------------------------------------------------

    def _renew(self, snap: SessionSnapshot) -> SessionSnapshot:
        now = self._clock()
        if snap.expires_at is not None and now < snap.expires_at:
            # Still valid: renew off the request path, and go on with this one meanwhile.
            if (
                not self._closed
                and now >= self._renew_not_before
                and self._renewing.acquire(blocking=False)
            ):
                self._start_renewal()
            return snap
        # Expired: nobody can use it. One request renews; the others queue on the lock and
        # find the fresh snapshot when they get it.
        with self._refresh_lock:
            current = self.cell.current
            if current.expires_at is None or self._clock() < current.expires_at:
                return current
            try:
                self._refresh_locked()
            except ConfigError as exc:
                raise Unauthorized(
                    f"the bearer token expired and renewing it failed: {exc}"
                ) from None
            return self.cell.current

    def _start_renewal(self) -> None:
        try:
            thread = threading.Thread(
                target=self._renew_in_background, name=f"rakka-token-renew:{self.name}", daemon=True
            )
            self._renew_thread = thread
            thread.start()
        except BaseException:
            self._renewing.release()
            raise

    def _renew_in_background(self) -> None:
        try:
            self.refresh()
        except Exception as exc:
            self._renew_not_before = self._clock() + _RENEW_RETRY
            logger.error(
                "%s: token renewal failed; the current token stays until it expires: %s",
                self.name,
                exc,
            )
        else:
            refresh_at = self.cell.current.refresh_at
            if refresh_at is not None and refresh_at <= self._clock():
                # The provider handed back a token already due (it caches with a longer
                # lead than ours): ask again later, not on every request.
                self._renew_not_before = self._clock() + _RENEW_RETRY
        finally:
            self._renewing.release()

    # -- watching files ---------------------------------------------------------------------

    def watch_files(self, paths: Iterable[str | os.PathLike[str]], *, debounce: float) -> None:
        """Re-read the credential whenever one of ``paths`` changes (until :meth:`close`)."""
        if self._closed or self._watcher is not None:
            raise RuntimeError(f"session {self.name!r} is closed or already watching")
        from rakka_runtime.watch import SecretWatcher

        self._watcher = SecretWatcher(
            paths, self._on_file_change, debounce=debounce, name=self.name
        ).start()
        # A rotation between the first read and the watch starting left no event to see.
        self._on_file_change()

    def _on_file_change(self) -> None:
        try:
            self.refresh()
        except ConfigError as exc:
            # Empty, half-written, unreadable or gone: never swap to that. The message names
            # the file, never its content.
            logger.error("%s: %s; keeping the current credential", self.name, exc)

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the watcher and any renewal thread, and close the pool. Idempotent."""
        self._closed = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        renewal = self._renew_thread
        if renewal is not None and renewal is not threading.current_thread():
            renewal.join(_CLOSE_JOIN)
            if renewal.is_alive():
                logger.warning("%s: a token renewal is still running after close()", self.name)
        self.pool.clear()

    def __repr__(self) -> str:
        return f"<Session {self.name} {self.cell.current!r} swaps={self._swaps}>"


def _same(a: Secret | None, b: Secret | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b  # Secret compares in constant time
