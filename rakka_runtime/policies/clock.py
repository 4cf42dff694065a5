"""Time and chance as injectable values, so policy tests never sleep for real.

Policies take a :class:`Clock`; production uses :data:`SYSTEM_CLOCK`, tests a fake whose
``sleep`` advances ``monotonic`` instantly (as urllib3 and tenacity inject theirs).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Sleep up to ``seconds``, ending early when ``event`` is set; True if it was."""
        ...

    def random(self) -> float: ...

    def wall(self) -> float:
        """Seconds since the epoch (for HTTP-date ``retry-after`` hints)."""
        ...


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)
    random = staticmethod(random.random)

    @staticmethod
    def wait(event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))

    wall = staticmethod(time.time)


SYSTEM_CLOCK: Clock = SystemClock()


class ClockedPlugin:
    """Base of the built-in policy plugins: the clock their middlewares run on.

    The built-in instance uses the system clock; tests block it by name and register
    an instance with a :class:`FakeClock`.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock


@dataclass
class FakeClock:
    """A clock for tests: ``sleep`` records the wait and advances time at once."""

    now: float = 1000.0
    wall_offset: float = 1.7e9
    rolls: list[float] = field(default_factory=lambda: [0.5])
    slept: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _roll: int = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += max(0.0, seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        # Time passes at once, as in sleep(), unless the event is already set.
        if event.is_set():
            return True
        self.sleep(seconds)
        return event.is_set()

    def random(self) -> float:
        with self._lock:
            value = self.rolls[self._roll % len(self.rolls)]
            self._roll += 1
            return value

    def wall(self) -> float:
        return self.wall_offset + self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
