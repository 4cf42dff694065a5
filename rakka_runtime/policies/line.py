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
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rakka_runtime.core.notify import Notifier, block
from rakka_runtime.core.policy import Wait
from rakka_runtime.errors import Cancelled
from rakka_runtime.policies.clock import Clock

__all__ = ["Demand", "Level", "Line", "Pending", "Waiter", "admit_by_steps", "eta"]

CANCEL_POLL = 0.1  # how often a queued request looks at its ``cancelled`` flag

GrantT = TypeVar("GrantT")


@dataclass(slots=True, eq=False)
class Waiter:
    """One request in line: what it reserves, when it stops waiting (queue's clock), and
    its own wake-up, so an event that lets one waiter go wakes that one only."""

    tokens: int
    limit: float = math.inf
    seq: int = 0  # how many joined the line before it, ever
    joined_before: int = 0  # the tokens those reserved
    woken: Notifier = field(default_factory=Notifier)

    def wait(
        self, seconds: float, why: str, clock: Clock, *, timed: bool, seen: int | None = None
    ) -> Wait:
        """Ask again after ``seconds``, or when this waiter is woken past ``seen`` (its
        wake-up's version now, unless read earlier). Read under the admission's lock, so a
        wake after it is never lost (the version moves past)."""
        return Wait(
            max(0.0, seconds),
            why,
            notifier=self.woken,
            seen=self.woken.version if seen is None else seen,
            timed=timed,
            clock=clock,
        )


@dataclass(slots=True)
class Pending:
    """A place in line: call ``reserve`` again with ``waiter`` after ``wait`` (or earlier,
    when the wait's notifier fires)."""

    waiter: Any
    wait: Wait


class Line:
    """First come, first served: a later arrival never overtakes an earlier waiter, even one
    small enough to fit now, so a large request cannot be starved by small ones. Not
    thread-safe on its own: its admission holds a lock around it.

    Only the head can be admitted, so what frees capacity wakes the head
    (:meth:`wake_head`), or the first few that fit (:meth:`wake_first`); waking the whole
    line made each release cost every waiter a step (O(n^2) for a line of n). What may put
    a deadline out of reach (a pause, a lower level) wakes the head and those who can no
    longer make it (:meth:`wake_unreachable`), so they fail at once.
    """

    __slots__ = (
        "_gone",
        "_gone_tokens",
        "_joined",
        "_joined_tokens",
        "_skipped",
        "_waiters",
        "waiters",
    )

    def __init__(self) -> None:
        self._waiters: deque[Waiter] = deque()
        # The same deque, read-only for the owner: "anyone in line?" as a plain truth test
        # on every admission, not a call of __len__.
        self.waiters: Sized = self._waiters
        # Running totals, so what is ahead of a waiter is O(1) to know rather than a walk
        # down the line on every ask: ahead of W = those joined before W less those gone
        # that had joined before W.
        self._joined = self._joined_tokens = 0
        self._gone = self._gone_tokens = 0
        # Those that left from behind the head (cancelled, refused): ``(seq, tokens)``,
        # counted in ``_gone`` though they were behind some who are still in line.
        self._skipped: list[tuple[int, int]] = []

    def join(self, tokens: int, limit: float) -> Waiter:
        waiter = Waiter(tokens, limit, self._joined, self._joined_tokens)
        self._waiters.append(waiter)
        self._joined += 1
        self._joined_tokens += tokens
        return waiter

    def ahead(self, waiter: Waiter) -> Demand:
        """What everyone ahead of ``waiter`` reserves: ``(requests, tokens)``."""
        requests = waiter.seq - self._gone
        tokens = waiter.joined_before - self._gone_tokens
        for seq, gone_tokens in self._skipped:
            if seq > waiter.seq:  # it was behind: not counted in ``joined_before``
                requests += 1
                tokens += gone_tokens
        return requests, tokens

    def demand(self) -> Demand:
        """What the whole line reserves: ``(requests, tokens)``."""
        return self._joined - self._gone, self._joined_tokens - self._gone_tokens

    def leave(self, waiter: Waiter) -> None:
        waiters = self._waiters
        if waiters and waiters[0] is waiter:
            waiters.popleft()  # the usual case: the head, admitted
            if self._skipped:
                # Entries behind no one in line any more no longer count for anybody.
                head = waiters[0].seq if waiters else math.inf
                self._skipped = [entry for entry in self._skipped if entry[0] > head]
        elif waiter in waiters:
            waiters.remove(waiter)
            self._skipped.append((waiter.seq, waiter.tokens))
        else:
            return
        self._gone += 1
        self._gone_tokens += waiter.tokens

    def wake_head(self) -> None:
        if self._waiters:
            self._waiters[0].woken.notify()

    def wake_first(self, count: int) -> None:
        """Wake the first ``count`` waiters (at least the head)."""
        for index, waiter in enumerate(self._waiters):
            if index >= max(1, count):
                break
            waiter.woken.notify()

    def wake_unreachable(
        self, levels: Sequence[Level], now: float, not_before: float = -math.inf
    ) -> None:
        """Wake the head, and every waiter that could no longer be admitted before its
        limit (a pause until ``not_before`` or lower ``levels`` moved its turn), so it
        fails now rather than at its limit: one pass, the prediction of :func:`eta` for
        each waiter in turn, skipped when what is there now covers the whole line."""
        requests, tokens = self.demand()
        if not_before <= now and all(
            min(capacity, level) >= (requests if dim == "requests" else tokens)
            for dim, level, capacity, _ in levels
        ):
            self.wake_head()  # every waiter fits now: no deadline moved out of reach
            return
        before = dict.fromkeys((level[0] for level in levels), 0.0)
        for index, waiter in enumerate(self._waiters):
            at = max(now, not_before)
            for dimension, level, capacity, rate in levels:
                need = 1 if dimension == "requests" else waiter.tokens
                deficit = before[dimension] + min(need, capacity) - min(capacity, level)
                if deficit > 0:
                    at = max(at, now + deficit / rate)
                before[dimension] += need
            if index == 0 or at > waiter.limit:
                waiter.woken.notify()

    def fitting(self, levels: Iterable[Level], room: float = math.inf) -> int:
        """How many waiters from the head fit, one after another, in ``levels`` (and in
        ``room`` free slots): those a grant lets ask at once."""
        count = 0
        spent: dict[str, float] = {}
        levels = list(levels)
        available = {dim: min(capacity, level) for dim, level, capacity, _ in levels}
        capacities = {dim: capacity for dim, _, capacity, _ in levels}
        for waiter in self._waiters:
            if count >= room:
                break
            for dimension, level in available.items():
                need = 1 if dimension == "requests" else waiter.tokens
                # One larger than the whole bucket fits a full one, as in :func:`eta`.
                if spent.get(dimension, 0.0) + min(need, capacities[dimension]) > level:
                    return count
            for dimension in available:
                need = 1 if dimension == "requests" else waiter.tokens
                spent[dimension] = spent.get(dimension, 0.0) + need
            count += 1
        return count

    def __len__(self) -> int:
        return len(self._waiters)

    def __iter__(self) -> Iterator[Waiter]:
        return iter(self._waiters)


Level = tuple[str, float, float, float]
"""One bucket as a prediction sees it: ``(dimension, level, capacity, refill per second)``."""

Demand = tuple[int, int]
"""What some waiters reserve together: ``(requests, tokens)``."""


def eta(levels: Iterable[Level], ahead: Demand, tokens: int, now: float) -> tuple[float, str]:
    """When a request of ``tokens`` fits after everyone ``ahead`` (what they reserve) has
    been admitted, and which dimension it waits for. A request larger than a whole bucket
    waits for a full bucket instead of never fitting."""
    at, why = now, ""
    for dimension, level, capacity, rate in levels:
        requests = dimension == "requests"
        before = ahead[0] if requests else ahead[1]
        own = min(1 if requests else tokens, capacity)
        deficit = before + own - min(capacity, level)
        if deficit > 0 and now + deficit / rate > at:
            at = now + deficit / rate
            why = f"{dimension} free in {at - now:.3g}s"
    return at, why


def admit_by_steps(
    reserve: Callable[[Any], GrantT | Pending],
    leave: Callable[[Any], None],
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
            block(step.wait, cancelled or _never, CANCEL_POLL)
            if cancelled is not None and cancelled():
                raise Cancelled("cancelled while queued for rate-limit capacity")
    finally:
        if waiter is not None:
            leave(waiter)


def _never() -> bool:
    return False
