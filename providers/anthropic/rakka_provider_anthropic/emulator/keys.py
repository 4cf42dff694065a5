"""Which API keys the emulator accepts, including a key file that rotates underneath it.

The key file is checked with one ``os.stat`` per request (following symlinks, so a Kubernetes
``..data`` symlink swap is seen as a change) and re-read only when it changes. After a
rotation the previous key keeps working for a grace period, as real providers let an old
key drain while clients pick up the new one. (The same rules as the OpenAI emulator's.)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

_RECENT_WRITE = 2.0
"""Seconds during which a file is re-read even if its stat looks unchanged: mtime ticks are
coarse (a few ms on ext4, 1 s on some filesystems), so two same-size writes in one tick would
otherwise go unnoticed."""


class KeyRing:
    def __init__(
        self,
        keys: Iterable[str] | None = None,
        key_file: str | os.PathLike[str] | None = None,
        *,
        grace: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.open = keys is None and key_file is None
        """No keys configured: any key, or none, is accepted."""
        self._static = frozenset(keys or ())
        self._path = None if key_file is None else os.fspath(key_file)
        self._grace = grace
        self._clock = clock
        self._lock = threading.Lock()
        self._signature: tuple[int, int, int, int] | None = None
        self._current: str | None = None
        self._previous: dict[str, float] = {}  # old key -> monotonic deadline
        if self._path is not None:
            self._refresh()

    def accepts(self, key: str | None) -> bool:
        if self.open:
            return True
        if key is None:
            return False
        if key in self._static:
            return True
        if self._path is None:
            return False
        self._refresh()
        if key == self._current:
            return True
        deadline = self._previous.get(key)
        return deadline is not None and self._clock() < deadline

    def current_file_key(self) -> str | None:
        if self._path is not None:
            self._refresh()
        return self._current

    def _refresh(self) -> None:
        assert self._path is not None
        try:
            st = os.stat(self._path)
        except OSError:
            return  # a missing file keeps the last good key, as an unreadable one does
        signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == self._signature and time.time() - st.st_mtime > _RECENT_WRITE:
            return
        with self._lock:
            try:
                with open(self._path, encoding="utf-8") as fh:
                    text = fh.read().strip()
            except (OSError, UnicodeDecodeError):
                return
            self._signature = signature
            if not text or text == self._current:
                return
            now = self._clock()
            if self._current is not None:
                self._previous[self._current] = now + self._grace
            self._previous = {k: d for k, d in self._previous.items() if d > now and k != text}
            self._current = text
