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
    __slots__ = ("_cond", "_futures", "version")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.version = 0

    def notify(self) -> None:
        """Wake every waiter (any thread)."""
        with self._cond:
            self.version += 1
            self._cond.notify_all()
            futures, self._futures = self._futures, []
        for loop, future in futures:
            # A closed loop raises RuntimeError: nobody waits there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    def wait(self, seen: int, timeout: float) -> bool:
        """Block up to ``timeout`` until the version moves past ``seen``; True if it did."""
        with self._cond:
            if self.version != seen:
                return True
            return self._cond.wait_for(lambda: self.version != seen, max(0.0, timeout))

    def wait_polling(
        self, seen: int, timeout: float, cancelled: Callable[[], bool], poll: float
    ) -> bool:
        """:meth:`wait`, ending early too when ``cancelled()`` turns true (looked at every
        ``poll`` seconds): a thread cannot wait on a notification and a cancel at once."""
        ends = time.monotonic() + timeout
        with self._cond:
            while self.version == seen:
                left = ends - time.monotonic()
                if left <= 0.0 or cancelled():
                    return False
                self._cond.wait(min(left, poll))
            return True

    async def wait_async(self, seen: int, timeout: float) -> bool:
        """:meth:`wait` for a task: the event loop keeps running meanwhile."""
        import asyncio  # here: the thread driver never pays for importing asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self.version != seen:
                return True
            self._futures.append((loop, future))
        try:
            await asyncio.wait_for(future, max(0.0, timeout))
            return True
        except TimeoutError:
            return False
        finally:
            with self._cond:
                entry = (loop, future)
                if entry in self._futures:
                    self._futures.remove(entry)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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
