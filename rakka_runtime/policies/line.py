"""What the local and the Redis-shared admission have in common: one process's first come,
first served line, the prediction of when a waiter fits, and the loop that waits on a
thread for callers that want a blocking ``admit``.

Both admissions answer a non-blocking ``reserve`` step (a grant, or a :class:`Pending`
place in line with the :class:`~rakka_runtime.core.policy.Wait` before asking again); the
drivers carry the waits out, and :func:`admit_by_steps` is the same loop for a thread.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from rakka_runtime.core.notify import Notifier
from rakka_runtime.core.policy import Wait
from rakka_runtime.errors import Cancelled
from rakka_runtime.policies.clock import Clock

__all__ = ["Line", "Pending", "Waiter", "admit_by_steps", "eta"]

_SLICE = 0.05  # longest a thread waits on the notifier before looking at the clock again
CANCEL_POLL = 0.1  # how often a queued request looks at its ``cancelled`` flag

GrantT = TypeVar("GrantT")


@dataclass(slots=True, eq=False)
class Waiter:
    """One request in line: what it reserves, and when it stops waiting (queue's clock)."""

    tokens: int
    limit: float = math.inf


@dataclass(slots=True)
class Pending:
    """A place in line: call ``reserve`` again with ``waiter`` after ``wait`` (or earlier,
    when the wait's notifier fires)."""

    waiter: Any
    wait: Wait


class Line:
    """First come, first served: a later arrival never overtakes an earlier waiter, even one
    small enough to fit now, so a large request cannot be starved by small ones. Not
    thread-safe on its own: its admission holds a lock around it."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: deque[Waiter] = deque()

    def join(self, tokens: int, limit: float) -> Waiter:
        waiter = Waiter(tokens, limit)
        self._waiters.append(waiter)
        return waiter

    def ahead(self, waiter: Waiter) -> list[Waiter]:
        ahead = []
        for other in self._waiters:
            if other is waiter:
                break
            ahead.append(other)
        return ahead

    def leave(self, waiter: Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def __len__(self) -> int:
        return len(self._waiters)

    def __iter__(self) -> Iterator[Waiter]:
        return iter(self._waiters)


Level = tuple[str, float, float, float]
"""One bucket as a prediction sees it: ``(dimension, level, capacity, refill per second)``."""


def eta(
    levels: Iterable[Level], ahead: Iterable[Waiter], tokens: int, now: float
) -> tuple[float, str]:
    """When a request of ``tokens`` fits after everyone ``ahead`` has been admitted, and
    which dimension it waits for. A request larger than a whole bucket waits for a full
    bucket instead of never fitting."""
    waiting = list(ahead)
    at, why = now, ""
    for dimension, level, capacity, rate in levels:
        requests = dimension == "requests"
        before = len(waiting) if requests else sum(w.tokens for w in waiting)
        own = min(1 if requests else tokens, capacity)
        deficit = before + own - min(capacity, level)
        if deficit > 0 and now + deficit / rate > at:
            at = now + deficit / rate
            why = f"{dimension} free in {at - now:.3g}s"
    return at, why


def admit_by_steps(
    reserve: Callable[[Any], GrantT | Pending],
    leave: Callable[[Any], None],
    notifier: Notifier,
    clock: Clock,
    cancelled: Callable[[], bool] | None,
) -> GrantT:
    """``reserve`` until it grants, waiting on this thread between steps; a cancel (polled
    every :data:`CANCEL_POLL`) leaves the line with :class:`Cancelled`."""
    waiter: Any = None
    try:
        while True:
            step = reserve(waiter)
            if not isinstance(step, Pending):
                waiter = None
                return step
            waiter = step.waiter
            if cancelled is not None and cancelled():
                raise Cancelled("cancelled while queued for rate-limit capacity")
            pause = step.wait
            before = clock.monotonic()
            timeout = min(pause.seconds, _SLICE)
            if cancelled is not None:
                timeout = min(timeout, CANCEL_POLL)
            woken = notifier.wait(pause.seen, timeout)
            if pause.timed and not woken and clock.monotonic() == before:
                # A clock that stood still through a real wait is a test's fake, whose
                # time passes only by sleeping on it.
                clock.sleep(pause.seconds)
    finally:
        if waiter is not None:
            leave(waiter)
