"""A circuit shared by many processes through Redis: one process's trip opens it for all.

Shared: the state, the time an open circuit lets probes through, a generation that every
change increments, and the half-open probe counter (with a TTL, so the probe of a process
that died frees itself). Every change is one Lua script on Redis's clock.

Per process: the evidence. Each process counts its own outcomes with the same rules as
the local breaker (:class:`~rakka_runtime.policies.circuit.TripCounter`) and, when they
trip it, opens the fleet's circuit. Successes in a closed circuit therefore cost no Redis
call; counting every process's failures together would cost one per call.

Reading the state costs one round trip, or none: a process trusts the state it last read
for ``state_cache`` (≤ 50 ms), and while one call reads it again the others go on with the
last closed state, so a trip reaches every process that keeps calling within
that plus one round trip. An open circuit is refused locally until its retry time.

Both drivers run one logic: what the breaker asks Redis is written once as steps
(:data:`~.redis_store.Steps`); ``acquire``/``settle`` run them with the blocking client,
``aacquire``/``asettle`` with the asyncio client on the event loop.

Redis down: ``on_backend_failure: local`` uses this process's own
:class:`~rakka_runtime.policies.circuit.CircuitBreaker` (same policy) until Redis answers
again; ``reject`` fails calls with ``circuit_open`` (the call is refused by the breaker
layer, and its ``retry_at`` says when Redis will next be tried). ``breaker_state_changed``
reports the state this process acts on: the shared one, or the local one while it falls
back.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rakka_runtime.errors import CircuitOpen
from rakka_runtime.policies.circuit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitBreaker,
    Outcome,
    Permit,
    StateFeed,
    StateListener,
    TripCounter,
)
from rakka_runtime.policies.clock import SYSTEM_CLOCK, Clock
from rakka_runtime.policies.shared.redis_store import (
    BackendUnavailable,
    Call,
    LuaScript,
    RedisStore,
    Steps,
    key,
)

if TYPE_CHECKING:
    from rakka_runtime.config.schema import CircuitBreakerPolicy

__all__ = ["SharedCircuitBreaker", "SharedPermit"]

log = logging.getLogger(__name__)

_ACQUIRE = LuaScript.load("circuit_acquire")
_SETTLE = LuaScript.load("circuit_settle")

_PROBE_OUTCOME = {"success": "close", "failure": "open", "neutral": "free"}


@dataclass(frozen=True, slots=True)
class SharedPermit:
    """Leave for one call: of the shared circuit, or of the local one (``local``)."""

    generation: int
    probe: bool
    local: Permit | None = None


@dataclass(frozen=True, slots=True)
class _View:
    """The shared state as last read; ``retry_at`` and ``read_at`` on this process's clock."""

    state: str
    generation: int
    retry_at: float | None
    read_at: float


class SharedCircuitBreaker:
    """One deployment's circuit, shared through ``store``."""

    def __init__(
        self,
        policy: CircuitBreakerPolicy,
        store: RedisStore,
        *,
        name: str = "default",
        clock: Clock = SYSTEM_CLOCK,
        on_change: StateListener | None = None,
    ) -> None:
        config = policy.redis
        self.policy = policy
        self.name = name
        self._store = store
        self._keys = [
            key(config.key_prefix, "cb", name, "state"),
            key(config.key_prefix, "cb", name, "probes"),
        ]
        self._cache = config.state_cache
        self._acquire_args = [policy.half_open_max_probes, config.lease * 1000.0]
        self._open_ms = policy.open_duration * 1000.0
        self._reject_when_down = config.on_backend_failure == "reject"
        self._clock = clock
        self._lock = threading.Lock()
        self._counter = TripCounter(policy)
        self._counting: int | None = None  # the generation the counter's evidence is from
        self._view: _View | None = None
        self._reading = False  # an acquire is reading the shared state now
        self._visible = CLOSED  # the state listeners were last told
        self._feed = StateFeed(self._lock, on_change)
        self.local = CircuitBreaker(policy, name=name, clock=clock, on_change=self._local_changed)

    def close(self) -> None:
        """Close the Redis connections (the runtime closes its policies on close)."""
        self._store.close()

    async def aclose(self) -> None:
        """Close the asyncio client's connections on the running loop."""
        await self._store.aclose()

    @classmethod
    def from_policy(
        cls,
        name: str,
        policy: CircuitBreakerPolicy,
        *,
        clock: Clock = SYSTEM_CLOCK,
        on_change: StateListener | None = None,
    ) -> SharedCircuitBreaker:
        """The shared circuit ``policy`` (with ``backend: redis``) describes."""
        store = RedisStore(
            policy.redis,
            what=f"circuit breaker of deployment {name!r}",
            config_path="deployment.circuit_breaker.backend",
        )
        return cls(policy, store, name=name, clock=clock, on_change=on_change)

    @property
    def state(self) -> str:
        """The state this process acts on (the last one it read, or the local fallback's)."""
        return self._visible

    @property
    def retry_at(self) -> float | None:
        view = self._view
        return view.retry_at if view is not None and self._visible == OPEN else None

    # -- the breaker interface ----------------------------------------------------------------

    def acquire(self) -> SharedPermit:
        """A permit for one call, or :class:`CircuitOpen` when the circuit refuses it."""
        return self._store.drive(self._acquire())

    async def aacquire(self) -> SharedPermit:
        """:meth:`acquire` with the asyncio client, on the running loop."""
        return await self._store.adrive(self._acquire())

    def settle(self, permit: SharedPermit, outcome: Outcome) -> None:
        """Record how the call behind ``permit`` ended."""
        self._store.drive(self._settle(permit, outcome))

    async def asettle(self, permit: SharedPermit, outcome: Outcome) -> None:
        """:meth:`settle` with the asyncio client, on the running loop."""
        await self._store.adrive(self._settle(permit, outcome))

    def _acquire(self) -> Steps[SharedPermit]:
        store = self._store
        if not store.usable():
            return self._fallback()
        now = self._clock.monotonic()
        view = self._view
        if view is not None and (now - view.read_at <= self._cache or self._reading):
            # Fresh, or being read again by another call: a closed circuit lets this call
            # through on what was last read (so a burst after the cache expired costs one
            # round trip, not one per call); an open one refuses until its retry time.
            if view.state == CLOSED:
                return SharedPermit(view.generation, probe=False)
            if view.state == OPEN and view.retry_at is not None and now < view.retry_at:
                raise self._open_error(view.retry_at, now)
        self._reading = True
        try:
            reply = yield Call(_ACQUIRE, self._keys, self._acquire_args)
        except BackendUnavailable:
            return self._fallback()
        finally:
            self._reading = False
        view = self._apply(reply, now)
        if view.state == CLOSED:
            return SharedPermit(view.generation, probe=False)
        if view.state == HALF_OPEN:
            if int(reply[3]):
                return SharedPermit(view.generation, probe=True)
            raise CircuitOpen(
                f"the circuit of deployment {self.name!r} is half-open and its "
                f"{self.policy.half_open_max_probes} probe(s) are in flight"
            )
        assert view.retry_at is not None
        raise self._open_error(view.retry_at, now)

    def _settle(self, permit: SharedPermit, outcome: Outcome) -> Steps[None]:
        if permit.local is not None:
            self.local.settle(permit.local, outcome)
            return
        if permit.probe:
            yield from self._send(permit.generation, _PROBE_OUTCOME[outcome])
            return
        if outcome == "neutral":
            return
        with self._lock:
            if permit.generation != self._counting:
                return  # admitted under an earlier state: its outcome is stale
            tripped = self._counter.record(self._clock.monotonic(), failed=outcome == "failure")
        if tripped:
            yield from self._send(permit.generation, "open")

    # -- shared state -------------------------------------------------------------------------

    def _send(self, generation: int, change: str) -> Steps[None]:
        """Evidence for the shared circuit. Lost when Redis is down: a probe's slot then
        frees itself with its TTL, and a trip is sent again on the next failure."""
        if not self._store.usable():
            return
        now = self._clock.monotonic()
        try:
            reply = yield Call(_SETTLE, self._keys, [generation, change, self._open_ms])
        except BackendUnavailable:
            return
        self._apply(reply, now)

    def _apply(self, reply: Any, read_at: float) -> _View:
        """Adopt the state in ``reply`` unless a newer read already replaced it."""
        state, generation, left_ms = str(reply[0]), int(reply[1]), float(reply[2])
        retry_at = self._clock.monotonic() + left_ms / 1000.0 if state == OPEN else None
        view = _View(state, generation, retry_at, read_at)
        with self._lock:
            current = self._view
            # Every change bumps the generation, so a reply with an older one that was also
            # read earlier is a slower thread's stale answer.
            if current is None or generation >= current.generation or read_at > current.read_at:
                self._view = view
                if generation != self._counting:
                    # A new period starts from a clean slate (as the local breaker does).
                    self._counter.clear()
                    self._counting = generation
                self._show(state, retry_at)
        self._deliver()
        return view

    def _open_error(self, retry_at: float, now: float) -> CircuitOpen:
        return CircuitOpen(
            f"the circuit of deployment {self.name!r} is open; "
            f"the next probe is allowed in {retry_at - now:.3g}s",
            retry_at=retry_at,
        )

    # -- Redis down ---------------------------------------------------------------------------

    def _fallback(self) -> SharedPermit:
        if self._reject_when_down:
            now = self._clock.monotonic()
            raise CircuitOpen(
                f"the shared circuit of deployment {self.name!r} is unreachable "
                f"(Redis at {self._store.url}); calls fail until it answers",
                retry_at=now + self._store.retry_in(),
            )
        with self._lock:
            self._show(self.local.state, self.local.retry_at)
        self._deliver()
        permit = self.local.acquire()
        return SharedPermit(permit.generation, permit.probe, local=permit)

    def _local_changed(self, old_state: str, new_state: str, retry_at: float | None) -> None:
        if self._store.healthy:
            return  # a late local permit settling: the shared state is the one acted on
        with self._lock:
            self._show(new_state, retry_at)
        self._deliver()

    # -- events -------------------------------------------------------------------------------

    def _show(self, state: str, retry_at: float | None) -> None:
        """Queue a state change for listeners (under ``_lock``)."""
        if state != self._visible:
            self._feed.push(self._visible, state, retry_at if state == OPEN else None)
            self._visible = state

    def _deliver(self) -> None:
        self._feed.deliver()
