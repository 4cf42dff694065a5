"""Time limits on the waits of many tasks, with one event-loop timer for them all.

``asyncio.timeout()`` gives every wait its own timer: a ``Timeout``, a ``TimerHandle`` and
a copied ``Context``, pushed on the loop's heap (compared in Python) and cancelled again;
aiohttp's ``sock_read`` reschedules one on every ``data_received``. Measured on this
project's bench host, that is 9 µs and four objects the garbage collector walks per
request wait, and 5 µs per stream chunk. With thousands of requests in flight the
collector's passes over those objects cost as much again (docs/benchmarks.md).

:class:`Deadlines` keeps each armed wait as one entry of a dict (task -> due time) and
arms one loop timer, for the earliest due time. Arming a wait that is not the earliest
costs a dict store, leaving it a dict pop. When the timer fires it cancels every task
whose time is up, as ``asyncio.timeout`` would, and arms itself for the next one.
:meth:`Deadlines.leave` tells the waiting task whether the cancel was ours (then it
raises its own ``Timeout``) or someone else's (it goes on as a cancel).
"""

from __future__ import annotations

import asyncio
import math
import time

__all__ = ["Deadlines"]


class Deadlines:
    """The due times of the waits of one event loop's tasks (one armed wait per task)."""

    __slots__ = ("_at", "_cancelling", "_due", "_fired", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: dict[asyncio.Task[object], float] = {}
        # Armed tasks that were already being cancelled -> their cancel count then (most
        # are not: an entry only when there is one, as asyncio.timeout records it).
        self._cancelling: dict[asyncio.Task[object], int] = {}
        # Tasks cancelled because their time was up -> their cancel count when armed.
        self._fired: dict[asyncio.Task[object], int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf  # when the timer fires (time.monotonic)

    def arm(self, task: asyncio.Task[object], due: float) -> None:
        """``task`` is about to wait; cancel it at ``due`` (``time.monotonic()``)."""
        self._due[task] = due
        if cancelling := task.cancelling():
            self._cancelling[task] = cancelling
        if due < self._at:
            self._schedule(due)

    def leave(self, task: asyncio.Task[object]) -> bool:
        """``task``'s wait ended; whether it ended because its time was up. Then the
        cancel is withdrawn (unless the task was also cancelled by someone else), and the
        caller raises its timeout instead. A cancel that came from elsewhere while the
        task waited wins, as with ``asyncio.timeout``."""
        self._due.pop(task, None)
        if self._cancelling:
            self._cancelling.pop(task, None)
        if not self._fired:
            return False
        before = self._fired.pop(task, None)
        return before is not None and task.uncancel() <= before

    def _schedule(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = due
        self._timer = self._loop.call_later(max(0.0, due - time.monotonic()), self._expire)

    def _expire(self) -> None:
        self._timer, self._at = None, math.inf
        now = time.monotonic()
        soonest = math.inf
        expired = [task for task, due in self._due.items() if due <= now]
        for task in expired:
            del self._due[task]
            if not task.done():
                self._fired[task] = self._cancelling.get(task, 0)
                task.cancel()
        for due in self._due.values():
            if due < soonest:
                soonest = due
        if soonest < math.inf:
            self._schedule(soonest)
