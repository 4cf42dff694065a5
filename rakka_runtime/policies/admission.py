"""First come, first served admission to one deployment's capacity.

Capacity is up to two token buckets (``requests`` and ``tokens``), a number of
concurrency slots, and a pause (after a 429). A request is admitted when every bucket
holds what it reserves, a slot is free, the deployment is not paused, and no earlier
request is still waiting: a later arrival never overtakes an earlier waiter, even one
small enough to fit now, so a large request cannot be starved by a stream of small ones.

A waiter that cannot be admitted before its deadline fails at once with
:class:`Backpressure` instead of waiting just to fail. Its admission time is predicted
from the buckets' refill rates and the reservations of everyone ahead of it; a wait for a
concurrency slot cannot be predicted, so that one is bounded by the deadline alone.

Each waiter has its own wake-up (:class:`~rakka_runtime.policies.line.Line`): what frees
capacity (a release, a refund, the head leaving) wakes the head, the only one that may go;
what may put a deadline out of reach (a pause, header feedback) wakes the head and
whoever can no longer be admitted in time, so it fails at once; the head also wakes when
its predicted time comes. With an injected fake clock (whose time moves
only when slept on) the head sleeps on the clock instead, so a queue on a fake clock
cannot stall.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from rakka_runtime.errors import Backpressure
from rakka_runtime.policies.buckets import TokenBucket
from rakka_runtime.policies.clock import SYSTEM_CLOCK, Clock
from rakka_runtime.policies.line import (
    Demand,
    Level,
    Line,
    Pending,
    Waiter,
    admit_by_steps,
    eta,
)

__all__ = [
    "DIMENSIONS",
    "MAX_PAUSE",
    "MAX_QUEUE_WAIT",
    "Admission",
    "AdmissionQueue",
    "Grant",
    "Pending",
]

DIMENSIONS = ("requests", "tokens")

MAX_QUEUE_WAIT = 60.0
"""How long a request without a deadline may wait in the queue, in seconds. Any
configured bucket refills completely within a minute, so a longer wait can only come from
a provider pause or a pile-up, and then failing (for the caller to decide) beats parking a
thread indefinitely."""

MAX_PAUSE = 60.0
"""The longest a provider's hint (a 429's ``retry-after``, a ``reset`` with nothing
remaining) may pause a deployment, in seconds (``rate_limits.max_pause``). A server may
ask for anything (``retry-after: 999999``); one answer must not block a deployment, or a
fleet sharing it through Redis, for days. A deployment still limited after the pause
gets another 429 and pauses again."""


def capped_pause(seconds: float, max_pause: float) -> float:
    """``seconds`` (a provider's hint) within ``[0, max_pause]``; NaN reads as 0."""
    if not seconds > 0.0:  # also NaN
        return 0.0
    return min(seconds, max_pause)


_EPSILON = 1e-9  # float slack when a predicted time is "now"
Cancelled_ = Callable[[], bool]
"""Whether the caller cancelled the request (``RunHandle.cancel``): a queued one leaves."""


GrantT = TypeVar("GrantT")


class Admission(Protocol[GrantT]):
    """What the rate-limit policy needs of a deployment's capacity: this module's
    :class:`AdmissionQueue` or the Redis-shared one
    (:mod:`rakka_runtime.policies.shared.redis_admission`). See :class:`AdmissionQueue`
    for the meaning of each call."""

    def admit(
        self,
        tokens: int,
        *,
        deadline: float | None = None,
        wait: bool = True,
        cancelled: Cancelled_ | None = None,
    ) -> GrantT: ...

    def reserve(
        self,
        tokens: int,
        *,
        waiter: Any = None,
        deadline: float | None = None,
        wait: bool = True,
    ) -> GrantT | Pending: ...

    def leave_line(self, waiter: Any) -> None: ...

    def release(self, grant: GrantT, *, requests_used: int, tokens_used: int) -> None: ...

    def pause(self, seconds: float) -> None: ...

    def observe(
        self, dimension: str, *, remaining: int, limit: int | None, reset: float | None
    ) -> None: ...

    def observe_all(self, feedback: Sequence[Feedback]) -> None: ...


Feedback = tuple[str, int, int | None, float | None]
"""One dimension's provider feedback: ``(dimension, remaining, limit, reset)``."""


@dataclass(slots=True)
class Grant:
    """What an admitted request holds: its reservations and the buckets that charged them."""

    tokens: int
    charged: tuple[tuple[str, TokenBucket], ...]
    released: bool = False


class AdmissionQueue:
    """One deployment's buckets, concurrency slots and pause, behind a FCFS queue.

    ``clock`` must be the clock request deadlines are measured on (the system clock in
    production). Dimensions left unconfigured may be learned from the provider's
    ``x-ratelimit-limit-*`` headers (see :meth:`observe`).
    """

    def __init__(
        self,
        *,
        name: str = "default",
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        concurrent_requests: int | None = None,
        clock: Clock = SYSTEM_CLOCK,
        max_wait: float = MAX_QUEUE_WAIT,
        max_pause: float = MAX_PAUSE,
    ) -> None:
        self.name = name
        self._clock = clock
        self._max_wait = max_wait
        self.max_pause = max_pause
        now = clock.monotonic()
        self._buckets: dict[str, TokenBucket] = {}
        for dimension, amount in zip(
            DIMENSIONS, (requests_per_minute, tokens_per_minute), strict=True
        ):
            if amount is not None:
                self._buckets[dimension] = TokenBucket.per_minute(amount, now)
        self._configured = frozenset(self._buckets)
        # What a grant charges, shared by every grant until a bucket is learned.
        self._charging = tuple(self._buckets.items())
        self._slots = concurrent_requests
        self._in_flight = 0
        self._paused_until = -math.inf
        self._line = Line()
        self._lock = threading.Lock()

    # -- reading (tests, metrics) -----------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._line)

    @property
    def paused_until(self) -> float | None:
        return None if self._paused_until == -math.inf else self._paused_until

    def paused_for(self) -> float:
        """Seconds this deployment stays paused by a 429's retry-after (0: not paused)."""
        return max(0.0, self._paused_until - self._clock.monotonic())

    def levels(self) -> dict[str, float]:
        """Each bucket's level now, by dimension."""
        with self._lock:
            now = self._clock.monotonic()
            return {dim: bucket.refill(now) for dim, bucket in self._buckets.items()}

    def capacities(self) -> dict[str, float]:
        with self._lock:
            return {dim: bucket.capacity for dim, bucket in self._buckets.items()}

    # -- admission --------------------------------------------------------------------------

    def admit(
        self,
        tokens: int,
        *,
        deadline: float | None = None,
        wait: bool = True,
        cancelled: Cancelled_ | None = None,
    ) -> Grant:
        """Reserve one request and ``tokens`` tokens, waiting in line (on this thread) when
        ``wait``: :meth:`reserve` until granted. The drivers call :meth:`reserve` themselves.

        :param deadline: absolute time on the queue's clock; ``None``: ``max_wait`` from now.
        :param cancelled: polled while waiting; when it turns true the request leaves the
            line with :class:`~rakka_runtime.errors.Cancelled`.
        :raises Backpressure: at once when ``wait`` is false and capacity is short, or when
            the request would not be admitted before its deadline.
        """
        return admit_by_steps(
            lambda waiter: self.reserve(tokens, waiter=waiter, deadline=deadline, wait=wait),
            self.leave_line,
            cancelled,
        )

    def reserve(
        self,
        tokens: int,
        *,
        waiter: Waiter | None = None,
        deadline: float | None = None,
        wait: bool = True,
    ) -> Grant | Pending:
        """One non-blocking step of admission: a :class:`Grant`, or a :class:`Pending`
        place in line with how long to wait before asking again (passing its ``waiter``).

        :raises Backpressure: when ``wait`` is false and capacity is short, or when the
            request would not be admitted before its deadline (it has then left the line).
        """
        with self._lock:
            now = self._clock.monotonic()
            if waiter is None:
                if not self._line.waiters:
                    grant = self._grant_now(tokens, now)
                    if grant is not None:
                        return grant
                at, why = self._eta(tokens, self._line.demand(), now)
                if not self._line and at <= now + _EPSILON and self._slot_free():
                    return self._grant(tokens, now)
                if not wait:
                    why = why if at > now + _EPSILON else self._busy()
                    raise self._refusal(f"capacity exhausted ({why})", at - now)
                waiter = self._line.join(
                    tokens, deadline if deadline is not None else now + self._max_wait
                )
            limit = waiter.limit
            ahead = self._line.ahead(waiter)
            at, why = self._eta(tokens, ahead, now)
            if at > limit:
                self._drop(waiter)
                raise self._refusal(
                    f"capacity would not be free before the deadline ({why})", at - now
                )
            head = ahead[0] == 0
            if head and at <= now + _EPSILON and self._slot_free():
                grant = self._grant(tokens, now)  # first: the next head sees the slot taken
                self._drop(waiter)
                return grant
            if now >= limit:
                self._drop(waiter)
                raise self._refusal(f"deadline passed in the queue ({self._busy()})", None)
            timed = head and at > now
            seconds = min(limit, at) - now if timed else limit - now
            return Pending(
                waiter,
                waiter.wait(seconds, why if timed else self._busy(), self._clock, timed=timed),
            )

    def leave_line(self, waiter: Waiter) -> None:
        """A waiter gives up its place (cancelled); the next one may go now."""
        with self._lock:
            self._drop(waiter)

    def _drop(self, waiter: Waiter) -> None:
        self._line.leave(waiter)
        # Whether this waiter left admitted or refused, the next one may go now, unless
        # every slot is taken: then the release that frees one wakes it.
        if self._slot_free():
            self._line.wake_head()

    def release(self, grant: Grant, *, requests_used: int, tokens_used: int) -> None:
        """End an admitted request: free its slot and reconcile its reservations.

        Unused reservations go back to the buckets that charged them; use beyond the
        reservation is charged on top (the level may go below zero).
        """
        with self._lock:
            if grant.released:
                return
            grant.released = True
            now = self._clock.monotonic()
            self._in_flight -= 1
            for dimension, bucket in grant.charged:
                if dimension == "requests":
                    if requests_used != 1:
                        bucket.give(1 - requests_used, now)
                elif tokens_used != grant.tokens:
                    bucket.give(grant.tokens - tokens_used, now)
            if self._line.waiters:
                self._line.wake_head()  # a freed slot or refund: the head may fit now

    def pause(self, seconds: float) -> None:
        """Admit nothing for ``seconds`` (a 429's retry-after), at most ``max_pause``;
        never shortens a pause."""
        with self._lock:
            until = self._clock.monotonic() + capped_pause(seconds, self.max_pause)
            if until > self._paused_until:
                self._paused_until = until
                self._wake_unreachable()  # a waiter whose deadline the pause outlasts

    def observe(
        self, dimension: str, *, remaining: int, limit: int | None, reset: float | None
    ) -> None:
        """Provider feedback (``x-ratelimit-*``) for ``requests`` or ``tokens``.

        A configured bucket is lowered to ``remaining`` and never raised. An unconfigured
        dimension is learned when the provider states its ``limit`` (a per-minute bucket of
        that size, then lowered the same way); without a limit, ``remaining == 0`` pauses
        the deployment until ``reset``.
        """
        self.observe_all([(dimension, remaining, limit, reset)])

    def observe_all(self, feedback: Sequence[Feedback]) -> None:
        """:meth:`observe` for each dimension of one response, under one lock acquisition,
        and none when no dimension would change (the usual response, far from a limit)."""
        now = self._clock.monotonic()
        changes = self._changes
        for item in feedback:
            if changes(item, now):
                break
        else:
            return
        with self._lock:
            now = self._clock.monotonic()
            for dimension, remaining, limit, reset in feedback:
                bucket = self._buckets.get(dimension)
                learn = dimension not in self._configured
                if learn and limit and (bucket is None or bucket.capacity != limit):
                    bucket = self._buckets[dimension] = TokenBucket.per_minute(limit, now)
                    self._charging = tuple(self._buckets.items())
                if bucket is not None:
                    bucket.cap_at(remaining, now)
                elif remaining <= 0 and reset is not None:
                    pause = capped_pause(reset, self.max_pause)
                    self._paused_until = max(self._paused_until, now + pause)
            self._wake_unreachable()  # a lower level may put a deadline out of reach

    def _changes(self, item: Feedback, now: float) -> bool:
        """Whether ``item`` would change anything, read without the lock (every response
        would otherwise take it, and at high concurrency it is the contended one).

        A cap that lowers the level by at most 1% of what the provider says remains, or
        by less than one request or token (refill noise), counts as no change: the header
        is already off by the requests in flight when it was written. Near a limit the 1%
        shrinks with ``remaining``, so the cap applies exactly where it matters. A stale
        read only delays a cap to the next response.
        """
        dimension, remaining, limit, reset = item
        bucket = self._buckets.get(dimension)
        if bucket is None:
            return (bool(limit) and dimension not in self._configured) or (
                remaining <= 0 and reset is not None
            )
        if limit and dimension not in self._configured and bucket.capacity != limit:
            return True
        excess = bucket.peek(now) - remaining
        return excess >= 1.0 and excess > 0.01 * remaining

    # -- under the lock ---------------------------------------------------------------------

    def _levels(self, now: float) -> list[Level]:
        return [(dim, b.refill(now), b.capacity, b.rate) for dim, b in self._buckets.items()]

    def _wake_unreachable(self) -> None:
        if self._line:
            now = self._clock.monotonic()
            self._line.wake_unreachable(self._levels(now), now, self._paused_until)

    def _eta(self, tokens: int, ahead: Demand, now: float) -> tuple[float, str]:
        """When a request of ``tokens`` fits after everyone in ``ahead`` has been admitted."""
        at, why = eta(self._levels(now), ahead, tokens, now)
        if self._paused_until > at:
            return self._paused_until, f"paused for {self._paused_until - now:.3g}s"
        return at, why

    def _grant_now(self, tokens: int, now: float) -> Grant | None:
        """A grant for a request of ``tokens`` with nobody in line, when it may go at once
        (what :meth:`_eta` would say, without building a prediction: the usual case);
        each bucket refilled once, then charged."""
        if self._paused_until > now:
            return None
        slots = self._slots
        if slots is not None and self._in_flight >= slots:
            return None
        charging = self._charging
        for dimension, bucket in charging:
            need = 1 if dimension == "requests" else tokens
            if bucket.refill(now) < min(need, bucket.capacity):
                return None
        for dimension, bucket in charging:
            bucket.level -= 1 if dimension == "requests" else tokens
        self._in_flight += 1
        return Grant(tokens, charging)

    def _slot_free(self) -> bool:
        return self._slots is None or self._in_flight < self._slots

    def _busy(self) -> str:
        return f"{self._in_flight} of {self._slots} concurrent requests in flight"

    def _grant(self, tokens: int, now: float) -> Grant:
        charging = self._charging
        for dimension, bucket in charging:
            bucket.take(1 if dimension == "requests" else tokens, now)
        self._in_flight += 1
        return Grant(tokens, charging)

    def _refusal(self, why: str, retry_after: float | None) -> Backpressure:
        return Backpressure(
            f"deployment {self.name!r}: {why}",
            retry_after=None if retry_after is None else max(0.0, retry_after),
        )
