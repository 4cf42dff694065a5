"""A continuously refilling token bucket (not a fixed window).

Holds up to ``capacity`` and gains ``rate`` per second, computed from the elapsed time
whenever it is read, so there is no timer thread and no burst at a window boundary. The
level may drop below zero: a request that used more than it reserved leaves a debt that
later requests wait out. Not thread-safe on its own; its owner holds a lock.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    __slots__ = ("_at", "capacity", "level", "rate")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError("a bucket needs a positive capacity and refill rate")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.level = float(capacity)
        self._at = now

    @classmethod
    def per_minute(cls, amount: float, now: float) -> TokenBucket:
        """``amount`` per minute: a full minute's worth may burst, refilled evenly."""
        return cls(amount, amount / 60.0, now)

    # refill and peek run on every admission and response: comparisons, not min()/max()
    # calls.

    def refill(self, now: float) -> float:
        """Bring the level up to ``now`` and return it."""
        elapsed = now - self._at
        if elapsed > 0:
            level = self.level + elapsed * self.rate
            self.level = level = level if level < self.capacity else self.capacity
            self._at = now
            return level
        return self.level

    def peek(self, now: float) -> float:
        """The level at ``now`` without updating the bucket (safe to call unlocked: a racing
        update only makes the answer slightly stale)."""
        elapsed = now - self._at
        level = self.level + elapsed * self.rate if elapsed > 0 else self.level
        return level if level < self.capacity else self.capacity

    def admits(self, amount: float) -> float:
        """The level ``amount`` needs before it may be taken: a request larger than the
        whole bucket waits for a full bucket instead of never fitting."""
        return min(amount, self.capacity)

    def seconds_until(self, level: float, now: float) -> float:
        """How long until the bucket holds ``level`` (0 when it already does)."""
        deficit = level - self.refill(now)
        return deficit / self.rate if deficit > 0 else 0.0

    def take(self, amount: float, now: float) -> None:
        self.refill(now)
        self.level -= amount

    def give(self, amount: float, now: float) -> None:
        """Return ``amount`` (never above capacity); a negative amount charges extra."""
        self.level = min(self.capacity, self.refill(now) + amount)

    def cap_at(self, level: float, now: float) -> None:
        """Lower the level to at most ``level``; never raises it."""
        if self.refill(now) > level:
            self.level = float(level)

    def __repr__(self) -> str:
        return f"TokenBucket(level={self.level:g}/{self.capacity:g}, rate={self.rate:g}/s)"
