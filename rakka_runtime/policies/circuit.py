"""The state machine of one circuit: closed → open → half-open → closed.

It knows nothing of requests or plugins. The breaker middleware
(:mod:`rakka_runtime.policies.breaker`) asks it for a :class:`Permit` before an attempt
and settles the permit with the attempt's outcome; this module decides what that does to
the state. Thread-safe, and time comes from an injected :class:`Clock`.

Rules (see also docs/ARCHITECTURE.md):

- **closed**: every call passes. It opens after ``failure_threshold`` consecutive
  failures, or — when ``window`` and ``failure_rate`` are set — once the last ``window``
  holds at least ``min_calls`` calls of which a ``failure_rate`` share failed.
- **open**: every call fails at once until ``retry_at``. The move to half-open happens
  lazily, on the first call after ``retry_at`` (no timer thread).
- **half_open**: at most ``half_open_max_probes`` calls run at once; the others fail at
  once. The first probe success closes the circuit; a probe failure opens it again for a
  fresh ``open_duration``.
- A *neutral* outcome (a failure that is not the server's fault, an abandoned stream)
  changes nothing but frees its probe slot.
- Outcomes of calls admitted before the latest state change are ignored: a slow call that
  started while closed must not reopen a circuit that has since recovered.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from rakka_runtime.errors import CircuitOpen
from rakka_runtime.policies.clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from rakka_runtime.config.schema import CircuitBreakerPolicy

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "Breaker",
    "CircuitBreaker",
    "FailureWindow",
    "Outcome",
    "Permit",
    "StateListener",
    "TripCounter",
]

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

Outcome = Literal["success", "failure", "neutral"]

StateListener = Callable[[str, str, "float | None"], None]
"""``(old_state, new_state, retry_at)``; ``retry_at`` is set only when the circuit opens."""


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call; hand it back to :meth:`CircuitBreaker.settle`."""

    generation: int  # which state period admitted the call
    probe: bool


PermitT = TypeVar("PermitT")


class Breaker(Protocol[PermitT]):
    """What the breaker middleware needs of a circuit: this module's :class:`CircuitBreaker`
    or the Redis-shared one (:mod:`rakka_runtime.policies.shared.redis_circuit`)."""

    def acquire(self) -> PermitT: ...

    def settle(self, permit: PermitT, outcome: Outcome) -> None: ...


class FailureWindow:
    """Calls and failures over the last ``window`` seconds.

    Counted in ``SLOTS`` time slots rather than one entry per call, so memory stays
    constant at any request rate; the window therefore slides in steps of window/SLOTS.
    """

    SLOTS = 60

    def __init__(self, window: float) -> None:
        self._width = window / self.SLOTS
        self._slots: deque[list[int]] = deque()  # [slot index, calls, failures]
        self.calls = 0
        self.failures = 0

    def record(self, now: float, *, failed: bool) -> None:
        index = int(now // self._width)
        self._expire(index)
        if self._slots and self._slots[-1][0] == index:
            slot = self._slots[-1]
        else:
            slot = [index, 0, 0]
            self._slots.append(slot)
        slot[1] += 1
        self.calls += 1
        if failed:
            slot[2] += 1
            self.failures += 1

    def _expire(self, index: int) -> None:
        oldest = index - self.SLOTS + 1
        while self._slots and self._slots[0][0] < oldest:
            _, calls, failures = self._slots.popleft()
            self.calls -= calls
            self.failures -= failures

    def clear(self) -> None:
        self._slots.clear()
        self.calls = self.failures = 0


class TripCounter:
    """A closed circuit's evidence: consecutive failures and, when ``window`` and
    ``failure_rate`` are set, the failure rate over the window. Not thread-safe."""

    def __init__(self, policy: CircuitBreakerPolicy) -> None:
        self.policy = policy
        self.consecutive = 0
        window, rate = policy.window, policy.failure_rate
        self._window = FailureWindow(window) if window is not None and rate is not None else None

    def record(self, now: float, *, failed: bool) -> bool:
        """Count one outcome; True when the circuit should open."""
        policy = self.policy
        self.consecutive = self.consecutive + 1 if failed else 0
        window = self._window
        if window is not None:
            window.record(now, failed=failed)
        if not failed:
            return False  # a success can only lower the rate: no trip to check
        if self.consecutive >= policy.failure_threshold:
            return True
        return (
            window is not None
            and policy.failure_rate is not None
            and window.calls >= policy.min_calls
            and window.failures >= policy.failure_rate * window.calls
        )

    def clear(self) -> None:
        self.consecutive = 0
        if self._window is not None:
            self._window.clear()

    @property
    def quiet(self) -> bool:
        """Whether recording a success would change nothing: no failure streak and no
        window of calls to count it in."""
        return self.consecutive == 0 and self._window is None


class StateFeed:
    """State changes queued under their owner's lock and delivered in order, outside it,
    by one thread at a time (a listener may call back into the breaker)."""

    def __init__(self, lock: threading.Lock, on_change: StateListener | None) -> None:
        self._lock = lock
        self._on_change = on_change
        self._events: deque[tuple[str, str, float | None]] = deque()
        self._deliver_lock = threading.RLock()

    def push(self, old: str, new: str, retry_at: float | None) -> None:
        """Queue a change; the caller holds the owner's lock."""
        self._events.append((old, new, retry_at))

    def deliver(self) -> None:
        if not self._events:
            return
        with self._deliver_lock:
            while True:
                with self._lock:
                    if not self._events:
                        return
                    old, new, retry_at = self._events.popleft()
                if self._on_change is None:
                    continue
                try:
                    self._on_change(old, new, retry_at)
                except Exception:
                    # An observer (metrics, logging) must never fail the call it observes.
                    log.exception("a breaker_state_changed listener failed")


class CircuitBreaker:
    """One deployment's circuit. ``on_change`` hears every state change, in order."""

    def __init__(
        self,
        policy: CircuitBreakerPolicy,
        *,
        name: str = "default",
        clock: Clock = SYSTEM_CLOCK,
        on_change: StateListener | None = None,
    ) -> None:
        self.policy = policy
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._generation = 0
        self._closed_permit = Permit(0, probe=False)
        self._counter = TripCounter(policy)
        self._probes = 0
        self._retry_at: float | None = None
        self._feed = StateFeed(self._lock, on_change)

    @property
    def state(self) -> str:
        """The stored state; an open circuit past ``retry_at`` reads ``open`` until a call
        arrives and moves it to half-open."""
        return self._state

    @property
    def retry_at(self) -> float | None:
        """When an open circuit lets a probe through (the clock's monotonic time)."""
        return self._retry_at if self._state == OPEN else None

    @property
    def consecutive_failures(self) -> int:
        return self._counter.consecutive

    def acquire(self) -> Permit:
        """A permit for one call, or :class:`CircuitOpen` when the circuit refuses it."""
        generation = self._generation
        if self._state == CLOSED and generation == self._generation:
            # The common case, without the lock (contended by every thread at high
            # concurrency): every transition bumps the generation, so an unchanged one
            # around the read means the circuit was closed in between. A permit issued as
            # the circuit opens carries the old generation and settle() ignores it.
            # Permits are values: one per generation serves every call of it.
            closed = self._closed_permit
            if closed.generation != generation:
                closed = self._closed_permit = Permit(generation, probe=False)
            return closed
        refusal: CircuitOpen | None = None
        permit: Permit | None = None
        with self._lock:
            now = self._clock.monotonic()
            if self._state == OPEN:
                retry_at = self._retry_at if self._retry_at is not None else now
                if now < retry_at:
                    refusal = CircuitOpen(
                        f"the circuit of deployment {self.name!r} is open; "
                        f"the next probe is allowed in {retry_at - now:.3g}s",
                        retry_at=retry_at,
                    )
                else:
                    self._move(HALF_OPEN)
            if refusal is None:
                if self._state == HALF_OPEN:
                    if self._probes < self.policy.half_open_max_probes:
                        self._probes += 1
                        permit = Permit(self._generation, probe=True)
                    else:
                        # No time is known: the circuit reopens or closes when a probe ends.
                        refusal = CircuitOpen(
                            f"the circuit of deployment {self.name!r} is half-open and "
                            f"its {self.policy.half_open_max_probes} probe(s) are in flight"
                        )
                else:
                    permit = Permit(self._generation, probe=False)
        self._deliver()
        if refusal is not None:
            raise refusal
        assert permit is not None
        return permit

    def settle(self, permit: Permit, outcome: Outcome) -> None:
        """Record how the call behind ``permit`` ended."""
        if (
            not permit.probe
            and (outcome == "neutral" or (outcome == "success" and self._counter.quiet))
            and self._state == CLOSED
        ):
            # Nothing to record (the lock-free twin of acquire's fast path): a neutral
            # outcome counts nowhere, and a success only resets a failure count that is
            # already 0. A failure racing with it ends as if it came second.
            return
        with self._lock:
            if permit.generation != self._generation:
                return  # admitted under an earlier state: its outcome is stale
            if permit.probe:
                self._probes -= 1
            if outcome == "neutral":
                return
            now = self._clock.monotonic()
            if self._state == HALF_OPEN:
                if outcome == "success":
                    self._move(CLOSED)
                else:
                    self._open(now)
            elif self._state == CLOSED and self._counter.record(now, failed=outcome == "failure"):
                self._open(now)
        self._deliver()

    # -- under the lock ---------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self._retry_at = now + self.policy.open_duration
        self._move(OPEN)

    def _move(self, new: str) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._probes = 0
        # Each period starts from a clean slate: a recovered circuit must not reopen on
        # failures counted before it opened.
        self._counter.clear()
        self._feed.push(old, new, self._retry_at if new == OPEN else None)

    # -- outside the lock -------------------------------------------------------------------

    def _deliver(self) -> None:
        self._feed.deliver()
