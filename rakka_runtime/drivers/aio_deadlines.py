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
A wait whose bytes came in the same loop pass as its timer gets them (the cut waits a
pass). :meth:`Deadlines.leave` tells the waiting task whether the cancel was ours (then it
raises its own ``Timeout``) or someone else's (it goes on as a cancel), and how late the
timer ran: a loop too busy to run it on time may also have kept the task from the bytes
that came in time (:attr:`rakka_runtime.errors.Timeout.late_by`).
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
        # Tasks cancelled because their time was up -> (their cancel count when armed,
        # how long after their due time the timer ran).
        self._fired: dict[asyncio.Task[object], tuple[int, float]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf  # when the timer fires (time.monotonic)

    def arm(self, task: asyncio.Task[object], due: float) -> None:
        """``task`` is about to wait; cancel it at ``due`` (``time.monotonic()``)."""
        self._due[task] = due
        if cancelling := task.cancelling():
            self._cancelling[task] = cancelling
        if due < self._at:
            self._schedule(due)

    def leave(self, task: asyncio.Task[object]) -> float | None:
        """``task``'s wait ended: ``None``, or, when it ended because its time was up, how
        many seconds after its due time the timer ran (``0.0`` on a loop that keeps up).
        Then the cancel is withdrawn (unless the task was also cancelled by someone else),
        and the caller raises its timeout instead. A cancel that came from elsewhere while
        the task waited wins, as with ``asyncio.timeout``."""
        self._due.pop(task, None)
        if self._cancelling:
            self._cancelling.pop(task, None)
        if not self._fired:
            return None
        fired = self._fired.pop(task, None)
        if fired is None or task.uncancel() > fired[0]:
            return None
        return fired[1]

    def _schedule(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = due
        self._timer = self._loop.call_later(max(0.0, due - time.monotonic()), self._expire)

    def _expire(self) -> None:
        self._timer, self._at = None, math.inf
        now = time.monotonic()
        soonest = math.inf
        expired = []
        for task, due in self._due.items():
            if due <= now:
                expired.append((task, due))
            elif due < soonest:
                soonest = due
        if expired:
            # Cut on the loop's next pass, not this one. A loop busy past a due time finds
            # the bytes that came meanwhile and the timer ready in the same pass; the bytes
            # run first and wake their task with a callback that runs before this one, so
            # the task takes them and leaves rather than being cut with them unread.
            self._loop.call_soon(self._cut, expired, now)
        if soonest < math.inf:
            self._schedule(soonest)

    def _cut(self, expired: list[tuple[asyncio.Task[object], float]], fired_at: float) -> None:
        for task, due in expired:
            if self._due.get(task) != due:
                continue  # it left in time (or waits again, for a new due time)
            del self._due[task]
            if not task.done():
                self._fired[task] = (self._cancelling.get(task, 0), fired_at - due)
                task.cancel()
