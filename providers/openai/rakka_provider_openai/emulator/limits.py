"""A continuously refilling request/token bucket that reports OpenAI's ``x-ratelimit-*`` headers.

It only reports unless told to enforce: clients and tests get realistic headers to read
without the emulator ever refusing a benchmark's traffic.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


def go_duration(seconds: float) -> str:
    """Format like OpenAI's reset headers (Go's ``time.Duration``): ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{int(seconds * 1000) or 1}ms"
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs = f"{millis / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@dataclass(slots=True)
class Verdict:
    allowed: bool
    headers: bytes
    """Ready-to-send ``x-ratelimit-*`` header lines."""
    exhausted: str = ""
    """``requests`` or ``tokens`` when refused."""
    wait: float = 0.0
    """Seconds until the refused request would fit."""


class RateBucket:
    def __init__(
        self,
        requests_per_minute: int = 10_000,
        tokens_per_minute: int = 10_000_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests_per_minute < 1 or tokens_per_minute < 1:
            raise ValueError("rate limits must be positive")
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._requests = float(requests_per_minute)
        self._tokens = float(tokens_per_minute)
        self._at = clock()
        self._limit_lines = (
            f"x-ratelimit-limit-requests: {requests_per_minute}\r\n"
            f"x-ratelimit-limit-tokens: {tokens_per_minute}\r\n"
        ).encode("ascii")

    def peek(self) -> bytes:
        """Headers for a response that consumed nothing (errors before the body was read)."""
        with self._lock:
            self._refill()
            return self._headers()

    def take(self, tokens: int, *, enforce: bool) -> Verdict:
        with self._lock:
            self._refill()
            if enforce:
                if self._requests < 1:
                    wait = (1 - self._requests) * 60 / self.rpm
                    return Verdict(False, self._headers(), "requests", wait)
                if self._tokens < tokens:
                    wait = (tokens - self._tokens) * 60 / self.tpm
                    return Verdict(False, self._headers(), "tokens", wait)
            self._requests = max(0.0, self._requests - 1)
            self._tokens = max(0.0, self._tokens - tokens)
            return Verdict(True, self._headers())

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._at
        self._at = now
        if elapsed > 0:
            self._requests = min(self.rpm, self._requests + elapsed * self.rpm / 60)
            self._tokens = min(self.tpm, self._tokens + elapsed * self.tpm / 60)

    def _headers(self) -> bytes:
        reset_requests = (self.rpm - self._requests) * 60 / self.rpm
        reset_tokens = (self.tpm - self._tokens) * 60 / self.tpm
        return self._limit_lines + (
            f"x-ratelimit-remaining-requests: {math.floor(self._requests)}\r\n"
            f"x-ratelimit-remaining-tokens: {math.floor(self._tokens)}\r\n"
            f"x-ratelimit-reset-requests: {go_duration(reset_requests)}\r\n"
            f"x-ratelimit-reset-tokens: {go_duration(reset_tokens)}\r\n"
        ).encode("ascii")
