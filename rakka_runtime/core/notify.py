"""A "something changed" signal that threads and asyncio tasks can both wait on.

A policy that makes callers wait for capacity (a queue slot, a budget) notifies when what
it guards changes; a waiting thread or task then asks the policy again at once instead of
at its next poll. Waiters pass the version they saw, so a notification that lands between
asking and waiting is never lost.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from rakka_runtime.core.policy import Wait

__all__ = ["Notifier", "block"]


class Notifier:
    __slots__ = ("_cond", "_futures", "_lock", "version")

    def __init__(self) -> None:
        # One per waiter in a line: the condition for waiting threads is made only when a
        # thread waits (most waiters are tasks, or never wait at all).
        self._lock = threading.Lock()
        self._cond: threading.Condition | None = None
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []
        self.version = 0

    def notify(self) -> None:
        """Wake every waiter (any thread)."""
        with self._lock:
            self.version += 1
            if self._cond is not None:
                self._cond.notify_all()
            futures, self._futures = self._futures, []
        if not futures:
            return
        import asyncio  # loaded already: a task waits

        running = asyncio._get_running_loop()
        for loop, future in futures:
            if loop is running:
                # On the waiter's own loop (a task freed the slot): resolve it here, not
                # through call_soon_threadsafe's wake-up write to the loop's self-pipe.
                _resolve(future, True)
                continue
            # A closed loop raises RuntimeError: nobody waits there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future, True)

    def _condition(self) -> threading.Condition:
        """The condition threads wait on (under ``_lock``, which it shares)."""
        if self._cond is None:
            self._cond = threading.Condition(self._lock)
        return self._cond

    def wait(self, seen: int, timeout: float) -> bool:
        """Block up to ``timeout`` until the version moves past ``seen``; True if it did."""
        with self._lock:
            if self.version != seen:
                return True
            return self._condition().wait_for(lambda: self.version != seen, max(0.0, timeout))

    def wait_polling(
        self, seen: int, timeout: float, cancelled: Callable[[], bool], poll: float
    ) -> bool:
        """:meth:`wait`, ending early too when ``cancelled()`` turns true (looked at every
        ``poll`` seconds): a thread cannot wait on a notification and a cancel at once."""
        ends = time.monotonic() + timeout
        with self._lock:
            cond = self._condition()
            while self.version == seen:
                left = ends - time.monotonic()
                if left <= 0.0 or cancelled():
                    return False
                cond.wait(min(left, poll))
            return True

    async def wait_async(self, seen: int, timeout: float) -> bool:
        """:meth:`wait` for a task: the event loop keeps running meanwhile. One future,
        resolved True by :meth:`notify` or False by its own timer (no ``wait_for``, whose
        extra future and callbacks a long line of waiting tasks paid for each wait)."""
        import asyncio  # here: the thread driver never pays for importing asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self.version != seen:
                return True
            self._futures.append(entry)
        timer = loop.call_later(max(0.0, timeout), _resolve, future, False)
        try:
            return await future
        finally:
            timer.cancel()
            with self._lock:
                if entry in self._futures:
                    self._futures.remove(entry)


def _resolve(future: asyncio.Future[bool], woken: bool) -> None:
    if not future.done():
        future.set_result(woken)


def block(decision: Wait, cancelled: Callable[[], bool], poll: float) -> None:
    """Carry out a wait with a notifier on this thread: until the notifier fires, the
    wait's time passes, or ``cancelled()`` turns true (looked at every ``poll`` seconds).

    It does not return early only to be asked again: a line of threads that each asked
    their admission again every ``poll`` cost O(n) steps per ``poll`` doing nothing.
    """
    from rakka_runtime.policies.clock import SYSTEM_CLOCK

    notifier = decision.notifier
    assert notifier is not None
    clock = decision.clock or SYSTEM_CLOCK
    if clock is SYSTEM_CLOCK:
        notifier.wait_polling(decision.seen, decision.seconds, cancelled, poll)
        return
    before = clock.monotonic()
    woken = notifier.wait(decision.seen, min(decision.seconds, poll))
    if decision.timed and not woken and not cancelled() and clock.monotonic() == before:
        # A clock that stood still through a real wait is a test's fake, whose time passes
        # only by sleeping on it: if every caller waited here, nobody else would move it.
        clock.sleep(decision.seconds)
