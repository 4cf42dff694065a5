"""Notice that a secret file changed, however it was changed, and say so once per burst.

A watchdog observer watches the *directory* that holds each secret file, never the file:
editors and ``write tmp; os.replace`` put a new inode in place (a watch on the old one
would go silent), and Kubernetes never touches the file at all. A projected volume looks
like ``api-key -> ..data/api-key``, ``..data -> ..2026_11_27_10_00_00.123``; an update
writes a new timestamped directory, points a ``..data_tmp`` symlink at it and renames
that over ``..data``. So an event counts when it names the secret file or any ``..``
entry of the directory.

Events arrive in bursts (truncate, write, close; or mkdir, symlink, rename, rmdir), so
the callback runs once, ``debounce`` seconds after the last event of a burst (or at the
latest ``_MAX_DELAY_FACTOR`` debounces after the first, so a directory that never goes
quiet cannot starve it). What the callback does with the file (re-read it, keep the old
key when the new content is empty) is the session's business, not the watcher's.

watchdog is imported in :meth:`SecretWatcher.start`, so ``import rakka_runtime`` (and any
deployment without a file secret) never loads it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["SecretWatcher"]

logger = logging.getLogger("rakka_runtime.watch")

_MAX_DELAY_FACTOR = 10

# Reading the secret ourselves produces "opened" and "closed_no_write" events: reacting to
# them would re-read forever. Everything else (created, modified, moved, deleted, closed
# after a write, attribute changes such as a chmod that makes the file readable) counts.
_IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})


class SecretWatcher:
    """Calls ``on_change()`` after the files in ``paths`` may have changed.

    Two threads while running: watchdog's observer (which owns one emitter per directory)
    and a debounce worker that makes the call. :meth:`stop` joins all of them.
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike[str]],
        on_change: Callable[[], None],
        *,
        debounce: float = 0.1,
        name: str = "secret",
    ) -> None:
        # Not resolved: resolving would follow the symlinks we need to watch by name.
        files = [Path(os.path.abspath(Path(p).expanduser())) for p in paths]
        self._dirs = sorted({f.parent for f in files})
        self._names = frozenset(f.name for f in files)
        self._on_change = on_change
        self._debounce = max(0.0, debounce)
        self._name = name
        self._cond = threading.Condition()
        self._first: float | None = None  # when the pending burst started; None: idle
        self._last = 0.0
        self._stopping = False
        self._observer: Any = None
        self._worker: threading.Thread | None = None
        self.calls = 0
        """How many times ``on_change`` ran (one per debounced burst)."""

    @property
    def directories(self) -> list[Path]:
        return list(self._dirs)

    def start(self) -> SecretWatcher:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type not in _IGNORED_EVENTS and watcher._relevant(
                    event.src_path, event.dest_path
                ):
                    watcher._poke()

        observer = Observer()
        observer.name = f"rakka-secret-observer:{self._name}"
        observer.daemon = True
        handler = _Handler()
        try:
            for directory in self._dirs:
                observer.schedule(handler, str(directory), recursive=False)
            observer.start()
        except BaseException:
            observer.unschedule_all()
            raise
        self._observer = observer
        self._worker = threading.Thread(
            target=self._run, name=f"rakka-secret-watch:{self._name}", daemon=True
        )
        self._worker.start()
        return self

    def stop(self) -> None:
        """Stop watching and join every thread; a pending burst is dropped. Idempotent."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join()
        worker, self._worker = self._worker, None
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    # -- events -----------------------------------------------------------------------------

    def _relevant(self, *paths: bytes | str) -> bool:
        for path in paths:
            if not path:
                continue
            name = os.path.basename(os.fsdecode(path))
            if name in self._names or name.startswith(".."):
                return True
        return False

    def _poke(self) -> None:
        now = time.monotonic()
        with self._cond:
            if self._first is None:
                self._first = now
            self._last = now
            self._cond.notify()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while self._first is None and not self._stopping:
                    cond.wait()
                while not self._stopping:
                    assert self._first is not None
                    due = min(
                        self._last + self._debounce,
                        self._first + self._debounce * _MAX_DELAY_FACTOR,
                    )
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    cond.wait(left)
                if self._stopping:
                    return
                self._first = None
            try:
                self.calls += 1
                self._on_change()
            except Exception:
                # The callback reports its own failures; this only keeps the thread alive.
                logger.exception("secret watcher %s: the change handler failed", self._name)

    def __repr__(self) -> str:
        state = "running" if self._observer is not None else "stopped"
        return f"<SecretWatcher {self._name} {state} dirs={[str(d) for d in self._dirs]}>"
