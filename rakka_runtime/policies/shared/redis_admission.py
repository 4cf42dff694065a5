"""Admission to a deployment's capacity shared by many processes through Redis.

The same contract as :class:`~rakka_runtime.policies.admission.AdmissionQueue` (the
rate-limit middleware cannot tell them apart): reserve one request and its estimated
tokens plus a concurrency slot, wait bounded by the deadline, reconcile when the attempt
ends. What differs:

- **Where capacity lives.** Buckets, slots and the 429 pause are in Redis
  (:mod:`.redis_buckets`); each reservation and reconciliation is one atomic script.
- **Order.** First come, first served *within* a process: only the head of the process's
  line asks Redis. *Across* processes there is no queue: each head asks again when Redis
  predicts the capacity it needs will be there (at least every :data:`POLL` seconds, so
  capacity another process gives back is noticed), or every :data:`SLOT_POLL` seconds
  when it waits for a concurrency slot. That is fair-ish, not FCFS: a large request can
  lose races to smaller ones from other processes, but never past its deadline.
- **Failing fast.** The head fails at once with ``backpressure`` when Redis predicts a
  wait beyond its deadline; the others predict from the levels Redis last reported.
- **Concurrency leases.** A slot is a lease in Redis that this process renews every third
  of ``lease`` while the request runs, so the slots of a process that died free
  themselves after at most ``lease``.
- **Redis down.** ``on_backend_failure: local`` admits through a local
  :class:`~rakka_runtime.policies.admission.AdmissionQueue` with the same limits (each
  process then has the whole quota to itself until Redis is back); ``reject`` fails with
  ``backpressure``. A grant is always reconciled where it was admitted. Pauses and
  provider headers are applied to the local queue too, so it starts from what the
  provider last said rather than from a full bucket.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rakka_runtime.errors import Backpressure
from rakka_runtime.policies.admission import (
    DIMENSIONS,
    MAX_QUEUE_WAIT,
    AdmissionQueue,
    Cancelled_,
    Feedback,
    Grant,
    cancel_poll,
    leave_if_cancelled,
)
from rakka_runtime.policies.clock import SYSTEM_CLOCK, Clock
from rakka_runtime.policies.shared.redis_buckets import Bucket, RedisBuckets, Reservation
from rakka_runtime.policies.shared.redis_store import BackendUnavailable, RedisStore

if TYPE_CHECKING:
    from rakka_runtime.config.schema import RateLimitPolicy

__all__ = ["POLL", "SLOT_POLL", "SharedAdmission", "SharedGrant"]

POLL = 0.1
"""Longest a waiting head sleeps before asking Redis again."""

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


@dataclass(slots=True, eq=False)
class _Waiter:
    tokens: int


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
    ) -> None:
        self.name = name
        self.local = AdmissionQueue(
            name=name,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            concurrent_requests=concurrent_requests,
            clock=clock,
            max_wait=max_wait,
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
        self._line: deque[_Waiter] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._known: dict[str, float] = {}  # bucket levels in Redis's last reply
        self._known_at = 0.0
        self._in_flight = 0
        self._held: set[str] = set()  # leases this process renews
        self._renewing = False

    def close(self) -> None:
        """Close the Redis connections (the runtime closes its middlewares on close)."""
        self._store.close()

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
            buckets=RedisBuckets(store, prefix=config.key_prefix, name=name, lease=config.lease),
            requests_per_minute=policy.requests_per_minute,
            tokens_per_minute=policy.tokens_per_minute,
            concurrent_requests=policy.concurrent_requests,
            reject_when_down=config.on_backend_failure == "reject",
            clock=clock,
            lease=config.lease,
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
        with self._cond:
            buckets = list(self._buckets.values())
        if self._store.usable():
            try:
                return self._redis.peek(buckets)[2]
            except BackendUnavailable:
                pass
        return self.local.levels()

    def paused_for(self) -> float:
        """Seconds the fleet stays paused by a 429's retry-after (0: not paused)."""
        if self._store.usable():
            try:
                return max(0.0, self._redis.peek([])[0])
            except BackendUnavailable:
                pass
        return self.local.paused_for()

    def capacities(self) -> dict[str, float]:
        """Each shared bucket's capacity."""
        with self._cond:
            return {dim: bucket.capacity for dim, bucket in self._buckets.items()}

    def slots_in_use(self) -> int:
        """Live concurrency leases of every process (0 while Redis is down)."""
        if self._store.usable():
            try:
                return self._redis.peek([])[1]
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
        """Reserve one request and ``tokens`` tokens in Redis (see the module docstring).

        :raises Backpressure: as :meth:`AdmissionQueue.admit`, or while Redis is down
            with ``on_backend_failure: reject``.
        """
        if not self._store.usable():
            return self._fallback(tokens, deadline, wait, cancelled)
        probing = not self._store.healthy  # this call is the periodic reconnection attempt
        try:
            if not wait:
                reply, grant = self._try(tokens)
                if grant is None:
                    raise self._refusal(f"capacity exhausted ({self._why(reply)})", reply.wait)
                return grant
            return self._wait_in_line(tokens, deadline, probing=probing, cancelled=cancelled)
        except BackendUnavailable:
            return self._fallback(tokens, deadline, wait, cancelled)

    def release(self, grant: SharedGrant, *, requests_used: int, tokens_used: int) -> None:
        """Free the slot and reconcile the reservation where it was made.

        When Redis fails here the reservation stays charged (the safe side) and the lease
        expires on its own.
        """
        if grant.released:
            return
        grant.released = True
        with self._cond:
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
            self._shared(lambda: self._redis.settle(grant.lease, deltas))
        with self._cond:
            self._cond.notify_all()  # the head of the line may fit now

    def pause(self, seconds: float) -> None:
        """Admit nothing, in any process, for ``seconds`` (a 429's retry-after)."""
        self.local.pause(seconds)
        self._shared(lambda: self._redis.pause(seconds))
        with self._cond:
            self._cond.notify_all()  # a waiter whose deadline the pause outlasts fails now

    def observe(
        self, dimension: str, *, remaining: int, limit: int | None, reset: float | None
    ) -> None:
        """Provider feedback, as :meth:`AdmissionQueue.observe`, applied to the shared
        buckets (the provider's ``remaining`` counts the whole fleet's use)."""
        self.local.observe(dimension, remaining=remaining, limit=limit, reset=reset)
        with self._cond:
            bucket = self._buckets.get(dimension)
            learn = dimension not in self._configured
            if learn and limit and (bucket is None or bucket.capacity != limit):
                bucket = self._buckets[dimension] = self._redis.bucket(dimension, limit)
        if bucket is not None:
            if remaining < bucket.capacity:  # otherwise it cannot lower anything
                self._shared(lambda: self._redis.cap(bucket, remaining))
        elif remaining <= 0 and reset is not None:
            self._shared(lambda: self._redis.pause(reset))
        with self._cond:
            self._cond.notify_all()

    def observe_all(self, feedback: Sequence[Feedback]) -> None:
        for dimension, remaining, limit, reset in feedback:
            self.observe(dimension, remaining=remaining, limit=limit, reset=reset)

    # -- waiting ----------------------------------------------------------------------------

    def _wait_in_line(
        self,
        tokens: int,
        deadline: float | None,
        *,
        probing: bool,
        cancelled: Cancelled_ | None,
    ) -> SharedGrant:
        clock = self._clock
        limit = deadline if deadline is not None else clock.monotonic() + self._max_wait
        waiter = _Waiter(tokens)
        with self._cond:
            self._line.append(waiter)
        try:
            while True:
                with self._cond:
                    while True:
                        now = clock.monotonic()
                        ahead = self._ahead(waiter)
                        if not ahead:
                            break
                        at, why = self._predict(tokens, ahead, now)
                        if at > limit:
                            raise self._refusal(
                                f"capacity would not be free before the deadline ({why})",
                                at - now,
                            )
                        if now >= limit:
                            raise self._refusal("deadline passed in the queue", None)
                        leave_if_cancelled(cancelled)
                        self._cond.wait(cancel_poll(limit - now, cancelled))
                if not (probing or self._store.healthy):
                    # Redis went down while this request waited: the head before it found
                    # out, and asking again would only repeat the wait for a timeout.
                    raise BackendUnavailable(f"Redis at {self._store.url} is down")
                # The head asks Redis outside the lock: releases and arrivals go on meanwhile.
                reply, grant = self._try(tokens)
                if grant is not None:
                    return grant
                now = clock.monotonic()
                if reply.wait is not None and now + reply.wait > limit:
                    raise self._refusal(
                        f"capacity would not be free before the deadline ({self._why(reply)})",
                        reply.wait,
                    )
                if now >= limit:
                    raise self._refusal(f"deadline passed in the queue ({self._why(reply)})", None)
                leave_if_cancelled(cancelled)
                nap = SLOT_POLL if reply.wait is None else min(reply.wait, POLL)
                with self._cond:
                    # A release in this process wakes the head early.
                    self._cond.wait(cancel_poll(min(nap, limit - now), cancelled))
        finally:
            with self._cond:
                if waiter in self._line:
                    self._line.remove(waiter)
                # Admitted, refused or fallen back: the next in line may go now.
                self._cond.notify_all()

    def _try(self, tokens: int) -> tuple[Reservation, SharedGrant | None]:
        with self._cond:
            wants = tuple(
                (bucket, 1 if dimension == "requests" else tokens)
                for dimension, bucket in self._buckets.items()
            )
        lease = uuid.uuid4().hex if self._slots else None
        reply = self._redis.reserve(wants, slots=self._slots, lease_id=lease or "")
        with self._cond:
            self._known, self._known_at = reply.levels, self._clock.monotonic()
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

    def _ahead(self, waiter: _Waiter) -> list[_Waiter]:
        ahead = []
        for other in self._line:
            if other is waiter:
                break
            ahead.append(other)
        return ahead

    def _predict(self, tokens: int, ahead: list[_Waiter], now: float) -> tuple[float, str]:
        """When ``tokens`` would fit after ``ahead``, from the levels Redis last reported
        (refilled since); other processes' use is unknown here, so it is a lower bound."""
        at, why = now, ""
        elapsed = max(0.0, now - self._known_at)
        for dimension, level in self._known.items():
            bucket = self._buckets.get(dimension)
            if bucket is None:
                continue
            rate = bucket.capacity / 60.0
            requests = dimension == "requests"
            before = len(ahead) if requests else sum(w.tokens for w in ahead)
            own = 1 if requests else tokens
            deficit = (
                before + min(own, bucket.capacity) - min(bucket.capacity, level + elapsed * rate)
            )
            if deficit > 0 and now + deficit / rate > at:
                at = now + deficit / rate
                why = f"{dimension} free in {at - now:.3g}s"
        return at, why

    def _why(self, reply: Reservation) -> str:
        if reply.blocked == "slots":
            return f"all {self._slots} concurrent requests of the deployment are in flight"
        if reply.blocked == "paused":
            return f"paused for {reply.wait or 0:.3g}s"
        return f"{reply.blocked} free in {reply.wait or 0:.3g}s"

    # -- Redis down, leases -----------------------------------------------------------------

    def _fallback(
        self, tokens: int, deadline: float | None, wait: bool, cancelled: Cancelled_ | None
    ) -> SharedGrant:
        if self._reject_when_down:
            raise Backpressure(
                f"deployment {self.name!r}: the shared rate limits are unreachable "
                f"(Redis at {self._store.url})",
                retry_after=self._store.retry_in(),
            )
        grant = self.local.admit(tokens, deadline=deadline, wait=wait, cancelled=cancelled)
        with self._cond:
            self._in_flight += 1
        return SharedGrant(tokens, (), None, local=grant)

    def _shared(self, change: Callable[[], object]) -> None:
        """Apply ``change`` in Redis if it is up; a lost update is only a missed correction."""
        if self._store.usable():
            with contextlib.suppress(BackendUnavailable):
                change()

    def _renew_leases(self) -> None:
        while True:
            time.sleep(self._renew_every)  # leases run on Redis's clock, not an injected one
            with self._cond:
                held = list(self._held)
                if not held:
                    self._renewing = False
                    return
            self._shared(functools.partial(self._redis.renew, held))

    def _refusal(self, why: str, retry_after: float | None) -> Backpressure:
        return Backpressure(
            f"deployment {self.name!r}: {why}",
            retry_after=None if retry_after is None else max(0.0, retry_after),
        )
