"""One deployment's shared capacity in Redis: token buckets, concurrency slots, the pause.

Each method describes a single atomic Lua script (``lua/*.lua``), run on Redis's clock, as
a :class:`~.redis_store.Call` (what to send and how to read the reply) for the store to
run on either driver; nothing here waits or decides policy (that is
:mod:`.redis_admission`). Keys, for deployment
``name`` and ``key_prefix`` ``p``::

    p:{rl:name}:requests   hash {level, at}   the requests-per-minute bucket
    p:{rl:name}:tokens     hash {level, at}   the tokens-per-minute bucket
    p:{rl:name}:slots      sorted set          concurrency leases, scored by expiry
    p:{rl:name}:pause      string              paused-until (after a 429)

A bucket's hash expires once it would be full again, and a missing hash reads as full,
so an idle deployment leaves nothing behind. Running a call raises
:class:`~.redis_store.BackendUnavailable` when Redis fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rakka_runtime.policies.admission import MAX_PAUSE
from rakka_runtime.policies.line import Demand
from rakka_runtime.policies.shared.redis_store import Call, LuaScript, RedisStore, key

__all__ = ["Bucket", "RedisBuckets", "Reservation"]

_RESERVE = LuaScript.load("reserve")
_SETTLE = LuaScript.load("settle")
_RENEW = LuaScript.load("renew")
_PAUSE = LuaScript.load("pause")
_CAP = LuaScript.load("cap")
_PEEK = LuaScript.load("peek")


@dataclass(frozen=True, slots=True)
class Bucket:
    """A per-minute bucket as every process describes it to the scripts."""

    dimension: str
    capacity: float
    key: str

    @property
    def per_ms(self) -> float:
        return self.capacity / 60_000.0

    def describe(self) -> tuple[float, float]:
        return self.capacity, self.per_ms


@dataclass(frozen=True, slots=True)
class Reservation:
    granted: bool
    wait: float | None
    """Seconds until the request would fit (0 when granted); ``None``: it waits for a
    concurrency slot, which cannot be predicted."""
    blocked: str
    """What stood in the way: ``paused``, ``slots`` or a bucket's dimension."""
    levels: dict[str, float]
    """Each bucket's level when the script ran (after the reservation, if granted)."""


class RedisBuckets:
    def __init__(
        self,
        store: RedisStore,
        *,
        prefix: str,
        name: str,
        lease: float,
        max_pause: float = MAX_PAUSE,
    ) -> None:
        self.store = store
        self._lease_ms = lease * 1000.0
        self._max_pause_ms = max_pause * 1000.0
        self._key_prefix = (prefix, name)
        self._pause = self._key("pause")
        self._slots = self._key("slots")

    def _key(self, part: str) -> str:
        prefix, name = self._key_prefix
        return key(prefix, "rl", name, part)

    def bucket(self, dimension: str, per_minute: float) -> Bucket:
        return Bucket(dimension, float(per_minute), self._key(dimension))

    def reserve(
        self,
        wants: Sequence[tuple[Bucket, int]],
        *,
        slots: int | None,
        lease_id: str,
        ahead: Demand = (0, 0),
    ) -> Call[Reservation]:
        """Take ``amount`` from every bucket of ``wants`` and a slot, or nothing; only if
        what is ``ahead`` of it in its process's line (requests, tokens) fits as well."""
        args: list[object] = [slots or 0, lease_id, self._lease_ms, self._max_pause_ms, ahead[0]]
        for bucket, amount in wants:
            before = ahead[0] if bucket.dimension == "requests" else ahead[1]
            args.extend((*bucket.describe(), amount, before))

        def read(reply: Any) -> Reservation:
            granted, wait_ms, blocked = int(reply[0]), float(reply[1]), int(reply[2])
            levels = {
                b.dimension: float(level) for (b, _), level in zip(wants, reply[3:], strict=True)
            }
            if blocked > 0:
                why = wants[blocked - 1][0].dimension
            else:
                why = "slots" if blocked < 0 else "paused"
            return Reservation(
                granted=bool(granted),
                wait=None if wait_ms < 0 else wait_ms / 1000.0,
                blocked=why,
                levels=levels,
            )

        return Call(_RESERVE, [self._pause, self._slots, *(b.key for b, _ in wants)], args, read)

    def settle(
        self,
        lease_id: str | None,
        deltas: Sequence[tuple[Bucket, float]],
        *,
        only_if_held: bool = False,
    ) -> Call[bool]:
        """Free ``lease_id``'s slot and add each delta to its bucket (negative: charge).

        With ``only_if_held`` (a retry whose first try may have run, or the undoing of a
        reservation whose reply was lost) the deltas apply only if the lease was still
        there, so at most once. Returns whether they applied.
        """
        args: list[object] = [lease_id or "", "1" if only_if_held else "0"]
        for bucket, delta in deltas:
            args.extend((*bucket.describe(), delta))
        return Call(
            _SETTLE, [self._slots, *(b.key for b, _ in deltas)], args, lambda r: bool(int(r))
        )

    def renew(self, lease_ids: Iterable[str]) -> Call[int]:
        """Extend live leases by the lease time; answers how many were still held."""
        return Call(_RENEW, [self._slots], [self._lease_ms, *lease_ids], int)

    def pause(self, seconds: float) -> Call[Any]:
        """Pause every process for ``seconds``, at most ``max_pause`` (a stored pause that
        is longer, written by a process with a larger limit, is cut to it)."""
        ms = min(max(0.0, seconds) * 1000.0, self._max_pause_ms)
        return Call(_PAUSE, [self._pause], [ms, self._max_pause_ms])

    def cap(self, bucket: Bucket, remaining: int) -> Call[Any]:
        return Call(_CAP, [bucket.key], [*bucket.describe(), remaining])

    def peek(self, buckets: Sequence[Bucket]) -> Call[tuple[float, int, dict[str, float]]]:
        """``(seconds paused, slots in use, {dimension: level})``, changing nothing."""
        args: list[object] = []
        for bucket in buckets:
            args.extend(bucket.describe())

        def read(reply: Any) -> tuple[float, int, dict[str, float]]:
            levels = {
                b.dimension: float(level) for b, level in zip(buckets, reply[2:], strict=True)
            }
            return float(reply[0]) / 1000.0, int(reply[1]), levels

        return Call(_PEEK, [self._pause, self._slots, *(b.key for b in buckets)], args, read)
