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
timer ran (:attr:`rakka_runtime.errors.Timeout.late_by`).

**A wait the process could not watch gets that time back, once.** A timer that runs more
than :data:`~rakka_runtime.errors.LATE` after its due time means the loop was busy
elsewhere: what the wait was for may have happened meanwhile and not been seen yet (a
connection the kernel completed takes the loop several passes to hand over). So the wait
is not cut then but given as long again as the timer was late, never past its ``cap``
(the request's deadline); when that runs out too, it is cut. A busy process thus stops
failing requests that a healthy server answered in time, and a server that really did not
answer still fails, after at most twice its limit.
"""

from __future__ import annotations

import asyncio
import math
import time

from rakka_runtime.errors import LATE

__all__ = ["Deadlines"]


class Deadlines:
    """The due times of the waits of one event loop's tasks (one armed wait per task)."""

    __slots__ = ("_at", "_cancelling", "_caps", "_due", "_fired", "_graced", "_loop", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: dict[asyncio.Task[object], float] = {}
        # Armed tasks that were already being cancelled -> their cancel count then (most
        # are not: an entry only when there is one, as asyncio.timeout records it).
        self._cancelling: dict[asyncio.Task[object], int] = {}
        # Tasks cancelled because their time was up -> (their cancel count when armed,
        # how long after their due time the timer ran).
        self._fired: dict[asyncio.Task[object], tuple[int, float]] = {}
        # Armed waits with a cap (a deadline) -> the cap: their grace never passes it.
        self._caps: dict[asyncio.Task[object], float] = {}
        # Armed waits already given their grace (once per armed wait).
        self._graced: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf  # when the timer fires (time.monotonic)

    def arm(self, task: asyncio.Task[object], due: float, cap: float = math.inf) -> None:
        """``task`` is about to wait; cancel it at ``due`` (``time.monotonic()``), or, when
        the timer runs late, up to that lateness later but never after ``cap``."""
        self._due[task] = due
        if cancelling := task.cancelling():
            self._cancelling[task] = cancelling
        if cap != math.inf:
            self._caps[task] = cap
        elif self._caps:
            self._caps.pop(task, None)
        if self._graced:
            self._graced.discard(task)
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
        if self._caps:
            self._caps.pop(task, None)
        if self._graced:
            self._graced.discard(task)
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
        graced = []
        for task, due in self._due.items():
            if due > now:
                if due < soonest:
                    soonest = due
            elif now - due > LATE and task not in self._graced:
                # Not watched for that long: as long again, before the deadline.
                extended = min(now + (now - due), self._caps.get(task, math.inf))
                if extended > now:
                    graced.append((task, extended))
                    if extended < soonest:
                        soonest = extended
                    continue
                expired.append((task, due))
            else:
                expired.append((task, due))
        for task, extended in graced:
            self._due[task] = extended
            self._graced.add(task)
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
            # A graced wait's lateness is its second timer's: when that one ran on time,
            # the wait was watched as long as its limit and nothing came.
            self._graced.discard(task)
            if self._caps:
                self._caps.pop(task, None)
            if not task.done():
                self._fired[task] = (self._cancelling.get(task, 0), fired_at - due)
                task.cancel()
