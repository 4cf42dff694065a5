"""Admission to a deployment's capacity shared by many processes through Redis.

The same contract as :class:`~rakka_runtime.policies.admission.AdmissionQueue` (the
rate-limit middleware cannot tell them apart): reserve one request and its estimated
tokens plus a concurrency slot, wait bounded by the deadline, reconcile when the attempt
ends. What differs:

- **Where capacity lives.** Buckets, slots and the 429 pause are in Redis
  (:mod:`.redis_buckets`); each reservation and reconciliation is one atomic script.
- **Order.** First come, first served *within* a process: only the head of the process's
  line asks Redis, except while capacity is plentiful: while Redis's last answer was a
  grant and the levels it reported fit everyone in line, waiters ask at once, side by side
  (one round trip after another would cap a process at one admission per round trip).
  Those levels may be stale (another process drained the bucket since), so a waiter
  asking beside the head sends what is still ahead of it, and Redis grants it only if
  that fits too: it is never granted capacity a waiter before it is refused.
  *Across* processes there is no queue: each head asks again when Redis predicts the
  capacity it needs will be there (at least every :data:`POLL` seconds, so
  capacity another process gives back is noticed), or every :data:`SLOT_POLL` seconds
  when it waits for a concurrency slot. That is fair-ish, not FCFS: a large request can
  lose races to smaller ones from other processes, but never past its deadline.
- **Failing fast.** The head fails at once with ``backpressure`` when Redis predicts a
  wait beyond its deadline; the others predict from the levels Redis last reported.
- **Concurrency leases.** A slot is a lease in Redis that this process renews every third
  of ``lease`` while the request runs, so the slots of a process that died free
  themselves after at most ``lease``.
- **A stall interrupts nothing for long.** A release Redis did not take (it was down, or
  the call timed out and may not have run), and a reservation whose reply was lost (it
  may run when Redis wakes, taking a slot nobody holds), are kept here and settled again
  as soon as Redis answers: by the next admission, and by a background thread polling at
  :data:`SETTLE_POLL`. Such a retry frees the lease and applies its deltas only if the
  lease was still held, so nothing applies twice. See :meth:`SharedAdmission._settle`.
- **Both drivers, one logic.** Every operation that asks Redis is written once as steps
  (:data:`~.redis_store.Steps`); the blocking methods (``reserve``, ``release``, ...) run
  them with redis-py's blocking client, their ``a``-prefixed twins (``areserve``,
  ``arelease``, ...) with its asyncio client on the event loop. The lease renewal and the
  settlement retries run in background threads with the blocking client either way.
- **Redis down.** ``on_backend_failure: local`` admits through a local
  :class:`~rakka_runtime.policies.admission.AdmissionQueue` with the same limits (each
  process then has the whole quota to itself until Redis is back); ``reject`` fails with
  ``backpressure``. A grant is always reconciled where it was admitted. Pauses and
  provider headers are applied to the local queue too, so it starts from what the
  provider last said rather than from a full bucket.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rakka_runtime.errors import Backpressure
from rakka_runtime.policies.admission import (
    DIMENSIONS,
    MAX_PAUSE,
    MAX_QUEUE_WAIT,
    AdmissionQueue,
    Cancelled_,
    Feedback,
    Grant,
    capped_pause,
)
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
from rakka_runtime.policies.shared.redis_buckets import Bucket, RedisBuckets, Reservation
from rakka_runtime.policies.shared.redis_store import (
    BackendUnavailable,
    Call,
    RedisStore,
    Steps,
)

if TYPE_CHECKING:
    from rakka_runtime.config.schema import RateLimitPolicy

__all__ = [
    "FEEDBACK_EVERY",
    "POLL",
    "SETTLE_POLL",
    "SLOT_POLL",
    "SharedAdmission",
    "SharedGrant",
]

POLL = 0.1
"""Longest a waiting head sleeps before asking Redis again."""

SETTLE_POLL = 0.1
"""How often settlements a Redis failure interrupted are retried (each try still goes
through the store's own reconnection pacing, ``retry_interval``)."""

MAX_UNSETTLED = 10_000
"""Most interrupted settlements kept for retry; past that the oldest are dropped (their
leases expire on their own)."""

FEEDBACK_EVERY = 0.1
"""Shortest interval between two corrections of a shared bucket from the provider's
``x-ratelimit-remaining-*`` headers (per process and bucket; an exhausted bucket is
always corrected)."""

SLOT_POLL = 0.02
"""How often a head waiting for a concurrency slot asks Redis (a slot another process
frees is only seen by asking)."""


@dataclass(slots=True)
class SharedGrant:
    """An admitted request: what Redis charged, its lease, or the local fallback's grant."""

    tokens: int
    charged: tuple[tuple[Bucket, int], ...]
    lease: str | None
    local: Grant | None = None
    released: bool = False


@dataclass(slots=True, frozen=True)
class _LocalPlace:
    """A place in the local fallback queue (Redis was down when the request asked)."""

    waiter: Waiter


@dataclass(slots=True, frozen=True)
class _Unsettled:
    """A settlement Redis did not confirm: retried until it does, or the lease is over."""

    lease: str | None
    deltas: tuple[tuple[Bucket, float], ...]
    only_if_held: bool
    until: float  # time.monotonic() after which the lease has expired anyway


class SharedAdmission:
    """One deployment's capacity in Redis, behind a FCFS line per process."""

    def __init__(
        self,
        *,
        name: str,
        buckets: RedisBuckets,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        concurrent_requests: int | None = None,
        reject_when_down: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        max_wait: float = MAX_QUEUE_WAIT,
        lease: float = 30.0,
        max_pause: float = MAX_PAUSE,
    ) -> None:
        self.name = name
        self.max_pause = max_pause
        self.local = AdmissionQueue(
            name=name,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            concurrent_requests=concurrent_requests,
            clock=clock,
            max_wait=max_wait,
            max_pause=max_pause,
        )
        self._redis = buckets
        self._store: RedisStore = buckets.store
        self._clock = clock
        self._max_wait = max_wait
        self._slots = concurrent_requests
        self._reject_when_down = reject_when_down
        self._renew_every = lease / 3
        self._buckets: dict[str, Bucket] = {}
        for dimension, amount in zip(
            DIMENSIONS, (requests_per_minute, tokens_per_minute), strict=True
        ):
            if amount is not None:
                self._buckets[dimension] = buckets.bucket(dimension, amount)
        self._configured = frozenset(self._buckets)
        self._line = Line()
        self._lock = threading.Lock()
        self._known: dict[str, float] = {}  # bucket levels in Redis's last reply
        self._known_at = 0.0
        self._next_feedback: dict[str, float] = {}  # when a bucket may be corrected again
        self._granting = True  # Redis's last answer was a grant: waiters may ask at once
        self._in_flight = 0
        self._held: set[str] = set()  # leases this process renews
        self._renewing = False
        self._lease = lease
        self._unsettled: deque[_Unsettled] = deque()
        self._unsettled_lock = threading.Lock()
        self._settling = False  # the retry thread runs
        self._closed = False

    def close(self) -> None:
        """Close the Redis connections (the runtime closes its policies on close).
        Settlements still waiting for Redis are given up: their leases expire."""
        self._closed = True
        self._store.close()

    async def aclose(self) -> None:
        """Close the asyncio client's connections on the running loop."""
        await self._store.aclose()

    @classmethod
    def from_policy(
        cls, name: str, policy: RateLimitPolicy, *, clock: Clock = SYSTEM_CLOCK
    ) -> SharedAdmission:
        """The shared admission ``policy`` (with ``backend: redis``) describes."""
        config = policy.redis
        store = RedisStore(
            config,
            what=f"rate limits of deployment {name!r}",
            config_path="deployment.rate_limits.backend",
        )
        return cls(
            name=name,
            buckets=RedisBuckets(
                store,
                prefix=config.key_prefix,
                name=name,
                lease=config.lease,
                max_pause=policy.max_pause,
            ),
            requests_per_minute=policy.requests_per_minute,
            tokens_per_minute=policy.tokens_per_minute,
            concurrent_requests=policy.concurrent_requests,
            reject_when_down=config.on_backend_failure == "reject",
            clock=clock,
            lease=config.lease,
            max_pause=policy.max_pause,
        )

    # -- reading (tests, metrics) -----------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests this process admitted and has not yet released."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """This process's requests in line for the shared capacity."""
        return len(self._line)

    @property
    def shared(self) -> bool:
        """Whether admissions go to Redis now (False while it is down)."""
        return self._store.healthy

    def levels(self) -> dict[str, float]:
        """Each shared bucket's level now (the local fallback's while Redis is down)."""
        with self._lock:
            buckets = list(self._buckets.values())
        if self._store.usable():
            try:
                return self._store.call(self._redis.peek(buckets))[2]
            except BackendUnavailable:
                pass
        return self.local.levels()

    def paused_for(self) -> float:
        """Seconds the fleet stays paused by a 429's retry-after (0: not paused)."""
        if self._store.usable():
            try:
                return max(0.0, self._store.call(self._redis.peek([]))[0])
            except BackendUnavailable:
                pass
        return self.local.paused_for()

    def capacities(self) -> dict[str, float]:
        """Each shared bucket's capacity."""
        with self._lock:
            return {dim: bucket.capacity for dim, bucket in self._buckets.items()}

    def slots_in_use(self) -> int:
        """Live concurrency leases of every process (0 while Redis is down)."""
        if self._store.usable():
            try:
                return self._store.call(self._redis.peek([]))[1]
            except BackendUnavailable:
                pass
        return 0

    # -- admission --------------------------------------------------------------------------

    def admit(
        self,
        tokens: int,
        *,
        deadline: float | None = None,
        wait: bool = True,
        cancelled: Cancelled_ | None = None,
    ) -> SharedGrant:
        """:meth:`reserve` until granted, waiting on this thread (see the module docstring).

        :raises Backpressure: as :meth:`AdmissionQueue.admit`, or while Redis is down
            with ``on_backend_failure: reject``.
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
        waiter: Waiter | _LocalPlace | None = None,
        deadline: float | None = None,
        wait: bool = True,
    ) -> SharedGrant | Pending:
        """One step of admission, as :meth:`AdmissionQueue.reserve`: a grant, or a place in
        this process's line and how long to wait before asking again. Only the head asks
        Redis (one round trip, on this thread). While Redis is down the step goes to the
        local fallback queue."""
        return self._store.drive(self._reserve(tokens, waiter, deadline, wait))

    async def areserve(
        self,
        tokens: int,
        *,
        waiter: Waiter | _LocalPlace | None = None,
        deadline: float | None = None,
        wait: bool = True,
    ) -> SharedGrant | Pending:
        """:meth:`reserve` with the asyncio client, on the running loop."""
        return await self._store.adrive(self._reserve(tokens, waiter, deadline, wait))

    def _reserve(
        self,
        tokens: int,
        waiter: Waiter | _LocalPlace | None,
        deadline: float | None,
        wait: bool,
    ) -> Steps[SharedGrant | Pending]:
        if isinstance(waiter, _LocalPlace):
            return self._local_step(tokens, waiter.waiter, deadline, wait)
        if not self._store.usable():
            self.leave_line(waiter)
            return self._local_step(tokens, None, deadline, wait)
        probing = not self._store.healthy  # this call is the periodic reconnection attempt
        try:
            if not wait:
                reply, grant = yield from self._try(tokens)
                if grant is None:
                    raise self._refusal(f"capacity exhausted ({self._why(reply)})", reply.wait)
                return grant
            return (yield from self._step(tokens, waiter, deadline, probing=probing))
        except BackendUnavailable:
            self.leave_line(waiter)
            return self._local_step(tokens, None, deadline, wait)

    def leave_line(self, waiter: Waiter | _LocalPlace | None) -> None:
        """A waiter gives up its place (cancelled, refused, or gone to the fallback)."""
        if isinstance(waiter, _LocalPlace):
            self.local.leave_line(waiter.waiter)
            return
        if waiter is None:
            return
        with self._lock:
            self._line.leave(waiter)
            # Admitted, refused or fallen back: the next in line may go now.
            self._wake_next()

    def release(self, grant: SharedGrant, *, requests_used: int, tokens_used: int) -> None:
        """Free the slot and reconcile the reservation where it was made.

        When Redis fails here the settlement is retried as soon as Redis answers again
        (see :meth:`_settle`), so a stall does not keep the slot for its whole lease.
        """
        self._store.drive(self._release(grant, requests_used, tokens_used))

    async def arelease(self, grant: SharedGrant, *, requests_used: int, tokens_used: int) -> None:
        """:meth:`release` with the asyncio client, on the running loop."""
        await self._store.adrive(self._release(grant, requests_used, tokens_used))

    def _release(self, grant: SharedGrant, requests_used: int, tokens_used: int) -> Steps[None]:
        if grant.released:
            return
        grant.released = True
        with self._lock:
            self._in_flight -= 1
            if grant.lease is not None:
                self._held.discard(grant.lease)
        if grant.local is not None:
            self.local.release(grant.local, requests_used=requests_used, tokens_used=tokens_used)
            return
        deltas = []
        for bucket, reserved in grant.charged:
            used = requests_used if bucket.dimension == "requests" else tokens_used
            if used != reserved:
                deltas.append((bucket, float(reserved - used)))
        if deltas or grant.lease is not None:
            yield from self._settle(grant.lease, tuple(deltas))
        with self._lock:
            self._wake_next()  # the head of the line may fit now

    def pause(self, seconds: float) -> None:
        """Admit nothing, in any process, for ``seconds`` (a 429's retry-after), at most
        ``max_pause`` (Redis caps it again, and caps a longer pause already stored)."""
        self._store.drive(self._pause(seconds))

    async def apause(self, seconds: float) -> None:
        """:meth:`pause` with the asyncio client, on the running loop."""
        await self._store.adrive(self._pause(seconds))

    def _pause(self, seconds: float) -> Steps[None]:
        seconds = capped_pause(seconds, self.max_pause)
        self.local.pause(seconds)
        yield from self._shared(self._redis.pause(seconds))
        self._wake_unreachable(not_for=seconds)  # a deadline the pause outlasts fails now

    def observe(
        self, dimension: str, *, remaining: int, limit: int | None, reset: float | None
    ) -> None:
        """Provider feedback, as :meth:`AdmissionQueue.observe`, applied to the shared
        buckets (the provider's ``remaining`` counts the whole fleet's use)."""
        self._store.drive(self._observe(dimension, remaining, limit, reset))

    def observe_all(self, feedback: Sequence[Feedback]) -> None:
        self._store.drive(self._observe_all(feedback))

    async def aobserve_all(self, feedback: Sequence[Feedback]) -> None:
        """:meth:`observe_all` with the asyncio client, on the running loop."""
        await self._store.adrive(self._observe_all(feedback))

    def _observe_all(self, feedback: Sequence[Feedback]) -> Steps[None]:
        for dimension, remaining, limit, reset in feedback:
            yield from self._observe(dimension, remaining, limit, reset)

    def _observe(
        self, dimension: str, remaining: int, limit: int | None, reset: float | None
    ) -> Steps[None]:
        self.local.observe(dimension, remaining=remaining, limit=limit, reset=reset)
        with self._lock:
            bucket = self._buckets.get(dimension)
            learn = dimension not in self._configured
            if learn and limit and (bucket is None or bucket.capacity != limit):
                bucket = self._buckets[dimension] = self._redis.bucket(dimension, limit)
        if bucket is not None:
            # Below capacity (otherwise it cannot lower anything), and at most every
            # FEEDBACK_EVERY per bucket unless the provider says nothing is left: every
            # response carries the headers, and a round trip each would double what
            # sharing costs a request, for a correction the next one repeats.
            now = time.monotonic()
            if remaining < bucket.capacity and (
                remaining <= 0 or now >= self._next_feedback.get(dimension, 0.0)
            ):
                self._next_feedback[dimension] = now + FEEDBACK_EVERY
                yield from self._shared(self._redis.cap(bucket, remaining))
                self._wake_unreachable(dimension, remaining)
        elif remaining <= 0 and reset is not None:
            pause = capped_pause(reset, self.max_pause)
            yield from self._shared(self._redis.pause(pause))
            self._wake_unreachable(not_for=pause)

    def _wake_unreachable(
        self, capped: str = "", remaining: float = 0.0, not_for: float = 0.0
    ) -> None:
        """After a cap of ``capped`` to ``remaining``, or a pause of ``not_for`` seconds:
        wake the head and whoever can no longer be admitted before its deadline."""
        with self._lock:
            if not self._line:
                return
            now = self._clock.monotonic()
            levels = [
                (dim, min(level, remaining) if dim == capped else level, capacity, rate)
                for dim, level, capacity, rate in self._levels(now)
            ]
            self._line.wake_unreachable(levels, now, now + not_for)

    # -- waiting ----------------------------------------------------------------------------

    def _step(
        self, tokens: int, waiter: Waiter | None, deadline: float | None, *, probing: bool
    ) -> Steps[SharedGrant | Pending]:
        clock = self._clock
        now = clock.monotonic()
        with self._lock:
            if waiter is None:
                limit = deadline if deadline is not None else now + self._max_wait
                waiter = self._line.join(tokens, limit)
            limit = waiter.limit
            ahead = self._line.ahead(waiter)
            queued = ahead[0] > 0
            flowing = False  # ask beside those ahead; Redis keeps their order (``ahead``)
            if queued:
                at, why = self._predict(tokens, ahead, now)
                seen = waiter.woken.version
                # While Redis grants, and everyone ahead and this one fit in the levels it
                # last reported, this one asks now too rather than one round trip after
                # another (a line of 128 would admit one request per round trip).
                flowing = (
                    self._granting
                    and at <= now
                    and (self._slots is None or self._in_flight + ahead[0] < self._slots)
                )
        if queued and not flowing:
            if at > limit:
                self.leave_line(waiter)
                raise self._refusal(
                    f"capacity would not be free before the deadline ({why})", at - now
                )
            if now >= limit:
                self.leave_line(waiter)
                raise self._refusal("deadline passed in the queue", None)
            why = why or "in line"
            return Pending(
                waiter, waiter.wait(limit - now, why, self._clock, timed=False, seen=seen)
            )
        # The head (or a flowing waiter) asks Redis outside the lock: releases and arrivals
        # go on meanwhile.
        seen = waiter.woken.version
        try:
            if not (probing or self._store.healthy):
                # Redis went down while this request waited: the head before it found
                # out, and asking again would only repeat the wait for a timeout.
                raise BackendUnavailable(f"Redis at {self._store.url} is down")
            reply, grant = yield from self._try(tokens, ahead)
        except BackendUnavailable:
            self.leave_line(waiter)  # it goes to the fallback: no place kept here
            raise
        if grant is not None:
            self.leave_line(waiter)
            return grant
        now = clock.monotonic()
        # A waiter that asked beside those ahead is not refused for the wait Redis names:
        # that counts them, and some may have been granted meanwhile. It predicts again.
        if not queued and reply.wait is not None and now + reply.wait > limit:
            self.leave_line(waiter)
            raise self._refusal(
                f"capacity would not be free before the deadline ({self._why(reply)})",
                reply.wait,
            )
        if now >= limit:
            self.leave_line(waiter)
            raise self._refusal(f"deadline passed in the queue ({self._why(reply)})", None)
        # A slot another process frees is only seen by asking; a release here wakes it.
        nap = SLOT_POLL if reply.wait is None else min(reply.wait, POLL)
        why = self._why(reply)
        return Pending(
            waiter, waiter.wait(min(nap, limit - now), why, self._clock, timed=True, seen=seen)
        )

    def _wake_next(self) -> None:
        """Under the lock: wake the head of the line; while Redis grants, every waiter from
        the head that fits in the levels it last reported, so they ask side by side."""
        if not self._line:
            return
        if not self._granting:
            self._line.wake_head()
            return
        room = float("inf") if self._slots is None else self._slots - self._in_flight
        self._line.wake_first(self._line.fitting(self._levels(self._clock.monotonic()), room))

    def _try(
        self, tokens: int, ahead: Demand = (0, 0)
    ) -> Steps[tuple[Reservation, SharedGrant | None]]:
        if self._unsettled and not (yield from self._retry_unsettled()):
            # Free what a stall kept first; Redis failed again, so the reservation would too.
            raise BackendUnavailable(f"Redis at {self._store.url} is down")
        with self._lock:
            wants = tuple(
                (bucket, 1 if dimension == "requests" else tokens)
                for dimension, bucket in self._buckets.items()
            )
        lease = uuid.uuid4().hex if self._slots else None
        try:
            reply = yield self._redis.reserve(
                wants, slots=self._slots, lease_id=lease or "", ahead=ahead
            )
        except BackendUnavailable:
            if lease is not None:
                # The script may still run when Redis wakes (the command was sent): it
                # would take a slot and charge the buckets for a request that went
                # elsewhere. Undo it once Redis answers, if it ran.
                undo = tuple((bucket, float(amount)) for bucket, amount in wants)
                self._keep_unsettled(lease, undo, only_if_held=True)
            raise
        with self._lock:
            self._known, self._known_at = reply.levels, self._clock.monotonic()
            self._granting = reply.granted
            if not reply.granted:
                return reply, None
            self._in_flight += 1
            if lease is not None:
                self._held.add(lease)
                if not self._renewing:
                    self._renewing = True
                    threading.Thread(
                        target=self._renew_leases, name=f"rakka-leases:{self.name}", daemon=True
                    ).start()
        return reply, SharedGrant(tokens, wants, lease)

    def _predict(self, tokens: int, ahead: Demand, now: float) -> tuple[float, str]:
        """When ``tokens`` would fit after ``ahead``, from the levels Redis last reported
        (refilled since); other processes' use is unknown here, so it is a lower bound."""
        return eta(self._levels(now), ahead, tokens, now)

    def _levels(self, now: float) -> list[Level]:
        """The levels Redis last reported, refilled since."""
        elapsed = max(0.0, now - self._known_at)
        levels = []
        for dimension, level in self._known.items():
            bucket = self._buckets.get(dimension)
            if bucket is not None:
                rate = bucket.capacity / 60.0
                levels.append((dimension, level + elapsed * rate, float(bucket.capacity), rate))
        return levels

    def _why(self, reply: Reservation) -> str:
        if reply.blocked == "slots":
            return f"all {self._slots} concurrent requests of the deployment are in flight"
        if reply.blocked == "paused":
            return f"paused for {reply.wait or 0:.3g}s"
        return f"{reply.blocked} free in {reply.wait or 0:.3g}s"

    # -- Redis down, leases -----------------------------------------------------------------

    def _local_step(
        self, tokens: int, waiter: Waiter | None, deadline: float | None, wait: bool
    ) -> SharedGrant | Pending:
        """Redis is down: admit through this process's own queue (same limits)."""
        if self._reject_when_down:
            raise Backpressure(
                f"deployment {self.name!r}: the shared rate limits are unreachable "
                f"(Redis at {self._store.url})",
                retry_after=self._store.retry_in(),
            )
        step = self.local.reserve(tokens, waiter=waiter, deadline=deadline, wait=wait)
        if isinstance(step, Pending):
            return Pending(_LocalPlace(step.waiter), step.wait)
        with self._lock:
            self._in_flight += 1
        return SharedGrant(tokens, (), None, local=step)

    def _shared(self, change: Call[Any]) -> Steps[None]:
        """Apply ``change`` in Redis if it is up; a lost update is only a missed correction."""
        if self._store.usable():
            with contextlib.suppress(BackendUnavailable):
                yield change

    def _settle(self, lease: str | None, deltas: tuple[tuple[Bucket, float], ...]) -> Steps[None]:
        """Settle in Redis now, or keep the settlement for when Redis answers again.

        Not sent (Redis is down): retried as it is. Sent but failed (a timeout: it may
        have run when Redis woke): retried only with ``only_if_held``, which applies it
        only if the lease is still there, so never twice. A settlement without a lease
        (no concurrency limit) whose outcome is unknown is not retried: its reservation
        stays charged (the safe side) and refills within the minute.
        """
        if not self._store.usable():
            self._keep_unsettled(lease, deltas, only_if_held=lease is not None)
            return
        try:
            yield self._redis.settle(lease, deltas)
        except BackendUnavailable:
            if lease is not None:
                self._keep_unsettled(lease, deltas, only_if_held=True)

    def _keep_unsettled(
        self, lease: str | None, deltas: tuple[tuple[Bucket, float], ...], *, only_if_held: bool
    ) -> None:
        entry = _Unsettled(lease, deltas, only_if_held, time.monotonic() + self._lease)
        with self._unsettled_lock:
            self._unsettled.append(entry)
            while len(self._unsettled) > MAX_UNSETTLED:
                self._unsettled.popleft()
            if self._settling:
                return
            self._settling = True
        threading.Thread(
            target=self._settle_loop, name=f"rakka-settle:{self.name}", daemon=True
        ).start()

    def _settle_loop(self) -> None:
        while True:
            time.sleep(SETTLE_POLL)  # Redis's own time, as leases: not an injected clock
            if not self._closed and self._store.usable():
                self._store.drive(self._retry_unsettled())
            with self._unsettled_lock:
                if not self._unsettled or self._closed:
                    self._settling = False
                    return

    def _retry_unsettled(self) -> Steps[bool]:
        """Settle what a Redis failure interrupted, oldest first; stop at the first failure
        (Redis is down again: the rest waits for the next try). Returns False then."""
        with self._unsettled_lock:
            pending = list(self._unsettled)
            self._unsettled.clear()
        now = time.monotonic()
        for index, entry in enumerate(pending):
            if entry.until <= now:
                continue  # its lease has expired in Redis: nothing left to free
            try:
                yield self._redis.settle(entry.lease, entry.deltas, only_if_held=entry.only_if_held)
            except BackendUnavailable:
                later = list(pending[index + 1 :])
                if entry.lease is not None:
                    # This try may have run: from now on, at most once.
                    later.insert(0, dataclasses.replace(entry, only_if_held=True))
                with self._unsettled_lock:
                    self._unsettled.extendleft(reversed(later))
                return False
        with self._lock:
            self._wake_next()  # freed slots: the head of the line may fit now
        return True

    def unsettled(self) -> int:
        """Settlements waiting for Redis to answer again (tests, metrics)."""
        return len(self._unsettled)

    def _renew_leases(self) -> None:
        while True:
            time.sleep(self._renew_every)  # leases run on Redis's clock, not an injected one
            with self._lock:
                held = list(self._held)
                if not held:
                    self._renewing = False
                    return
            self._store.drive(self._shared(self._redis.renew(held)))

    def _refusal(self, why: str, retry_after: float | None) -> Backpressure:
        return Backpressure(
            f"deployment {self.name!r}: {why}",
            retry_after=None if retry_after is None else max(0.0, retry_after),
        )
