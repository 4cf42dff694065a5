"""A deployment's session: one connection pool plus an immutable credential snapshot.

The snapshot (credential and the auth headers derived from it) lives in a one-slot cell.
A request reads the cell once when it starts and keeps that snapshot to the end, so a
key rotation never changes the headers of a request in flight. Swapping is a single
attribute assignment (atomic under the GIL): no lock on the hot path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import urllib3

from rakka_runtime.secrets import Secret

HeaderBuilder = Callable[[Secret | None], Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """Immutable: the credential in force and the headers every request sends with it."""

    credential: Secret | None
    headers: Mapping[str, str] = field(repr=False)
    version: int = 0

    def __repr__(self) -> str:  # never show header values: they hold the key
        return f"SessionSnapshot(version={self.version}, headers={sorted(self.headers)})"


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
    """Per-deployment I/O state shared by every request: pool and credential cell."""

    def __init__(
        self,
        name: str,
        *,
        pool: urllib3.PoolManager,
        resolve_credential: Callable[[], Secret | None],
        build_headers: HeaderBuilder,
        on_swap: Callable[[str, SessionSnapshot, SessionSnapshot], None] | None = None,
    ) -> None:
        self.name = name
        self.pool = pool
        self._resolve = resolve_credential
        self._build_headers = build_headers
        self._on_swap = on_swap
        credential = resolve_credential()
        self.cell = SnapshotCell(
            SessionSnapshot(credential, MappingProxyType(dict(build_headers(credential))))
        )

    @property
    def snapshot(self) -> SessionSnapshot:
        return self.cell.current

    def refresh(self) -> bool:
        """Re-resolve the credential; swap the snapshot if it changed. Returns whether it did."""
        credential = self._resolve()
        current = self.cell.current
        if _same(credential, current.credential):
            return False
        headers = MappingProxyType(dict(self._build_headers(credential)))
        old = self.cell.swap(lambda prev: SessionSnapshot(credential, headers, prev.version + 1))
        if self._on_swap is not None:
            self._on_swap(self.name, old, self.cell.current)
        return True

    def close(self) -> None:
        self.pool.clear()


def _same(a: Secret | None, b: Secret | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.reveal() == b.reveal()
