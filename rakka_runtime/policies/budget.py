"""Built-in policy plugin ``budget``: cap a deployment's spend per hour and per day.

A request-scope policy at order 50: inside metrics (which then sees a refusal as a
``budget_exceeded`` request) and outside retry, so a request's spend includes every
attempt it made.

The ledger holds one entry per admitted request, stamped when it was admitted. The entry
first holds the request's estimate (a reservation, so concurrent requests cannot all pass
on the same headroom) and is set to the actual spend when the request ends. The windows
slide: an entry counts against the hour window for 3600 s after it was stamped.

A request whose cost is unknown (its model has no price, or the server reports no usage)
cannot be predicted or counted: it is let through, with one warning per deployment, and
counts as $0 (its cost is reported as unknown elsewhere).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rakka_runtime.core.policy import Wait
from rakka_runtime.errors import BudgetExceeded
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.policies.clock import SYSTEM_CLOCK, Clock, ClockedPlugin

if TYPE_CHECKING:
    from rakka_runtime.config.schema import BudgetPolicy, DeploymentConfig
    from rakka_runtime.core.policy import Outcome, Policy
    from rakka_runtime.core.state import CallState
    from rakka_runtime.plugins import PluginHooks

__all__ = [
    "BudgetGate",
    "BudgetLedger",
    "BudgetPlugin",
    "BudgetWindow",
    "plugin",
]

log = logging.getLogger("rakka_runtime.budget")

HOUR = 3600.0
DAY = 86400.0
_SLACK = 1e-12  # float sums of many small costs must not trip a limit they merely touch


@dataclass(slots=True)
class _Entry:
    at: float
    usd: float


@dataclass(frozen=True, slots=True)
class BudgetWindow:
    name: str  # "hour" or "day", as in max_spend_per_<name>_usd
    seconds: float
    limit: float


class BudgetLedger:
    """Spend stamped with the time it was admitted, summed over sliding windows.

    Not thread-safe on its own: :class:`BudgetGate` holds its lock around every use.
    """

    def __init__(self, horizon: float = DAY) -> None:
        self._entries: deque[_Entry] = deque()
        self._horizon = horizon

    def spent(self, now: float, window: float) -> float:
        """USD of the entries stamped within the last ``window`` seconds."""
        since = now - window
        return sum(entry.usd for entry in self._entries if entry.at > since)

    def reserve(self, now: float, usd: float) -> _Entry:
        while self._entries and self._entries[0].at <= now - self._horizon:
            self._entries.popleft()
        entry = _Entry(now, usd)
        self._entries.append(entry)
        return entry

    def wait_for(self, now: float, window: BudgetWindow, usd: float) -> float | None:
        """Seconds until ``usd`` more fits under ``window``'s limit; ``None``: it never will."""
        if usd > window.limit + _SLACK:
            return None
        since = now - window.seconds
        live = [entry for entry in self._entries if entry.at > since]
        excess = sum(entry.usd for entry in live) + usd - window.limit
        if excess <= _SLACK:
            return 0.0
        for entry in live:  # oldest first: they leave the window in this order
            excess -= entry.usd
            if excess <= _SLACK:
                return entry.at + window.seconds - now
        return None  # unreachable while usd <= limit; kept for safety


class BudgetGate:
    """The budget policy of one deployment (a :class:`~rakka_runtime.core.policy.Policy`)."""

    name = "budget"
    scope: Literal["request", "attempt"] = "request"
    order = 50

    def __init__(self, deployment: str, policy: BudgetPolicy, clock: Clock = SYSTEM_CLOCK) -> None:
        self.deployment = deployment
        self.policy = policy
        self.clock = clock
        self.ledger = BudgetLedger()
        self._lock = threading.Lock()
        self._windows = tuple(
            BudgetWindow(name, seconds, limit)
            for name, seconds, limit in (
                ("hour", HOUR, policy.max_spend_per_hour_usd),
                ("day", DAY, policy.max_spend_per_day_usd),
            )
            if limit is not None
        )
        self._warned_at: dict[str, float] = {}
        self._uncounted_warned = False

    def enter(self, state: CallState) -> _Entry | Wait:
        """Reserve the request's estimate, or a :class:`Wait` until enough spend ages out
        of the window (``throttle``), or refuse with ``budget_exceeded``."""
        usd = self._estimate(state)
        mode = self.policy.on_exceeded
        deadline = self._deadline(state)
        with self._lock:
            now = self.clock.monotonic()
            over = [
                (window, wait)
                for window in self._windows
                if (wait := self.ledger.wait_for(now, window, usd)) != 0.0
            ]
            if not over or mode == "warn":
                for window, _ in over:
                    self._warn(window, now, usd)
                return self.ledger.reserve(now, usd)
            window = over[0][0]
            if mode == "reject":
                raise self._exceeded(window, now, usd)
            waits = [wait for _, wait in over if wait is not None]
            if len(waits) < len(over):
                raise self._exceeded(window, now, usd, "the request alone is over the limit")
            longest = max(waits)
            if deadline is not None and now + longest > deadline:
                why = f"freeing enough takes {longest:.0f}s, past the request's deadline"
                raise self._exceeded(window, now, usd, why)
        # Others may spend meanwhile, so the driver asks again after the wait.
        return Wait(longest, "the spend budget", clock=self.clock)

    def leave(self, state: CallState, ticket: _Entry, outcome: Outcome) -> None:
        spend = state.spend
        with self._lock:
            # Settled at the actual spend: what every attempt consumed, failed ones too.
            ticket.usd = spend.usd
        if spend.unknown:
            self._warn_uncounted(state.model)

    def spent(self, window: Literal["hour", "day"]) -> float:
        """USD spent (and reserved by requests in flight) in the current window."""
        seconds = HOUR if window == "hour" else DAY
        with self._lock:
            return self.ledger.spent(self.clock.monotonic(), seconds)

    def _estimate(self, state: CallState) -> float:
        estimator = state.estimator
        usd = None if estimator is None else estimator(state.request).usd
        if usd is None:
            self._warn_uncounted(state.model)
            return 0.0
        return usd

    def _deadline(self, state: CallState) -> float | None:
        # The request's deadline is on time.monotonic(); carry the time left over to the
        # injected clock, as the retry policy does.
        left = state.time_left()
        return None if left is None else self.clock.monotonic() + left

    def _exceeded(
        self, window: BudgetWindow, now: float, usd: float, why: str | None = None
    ) -> BudgetExceeded:
        spent = self.ledger.spent(now, window.seconds)
        message = (
            f"deployment {self.deployment!r}: ${spent:.6f} spent in the last {window.name} "
            f"plus this request's estimate ${usd:.6f} would exceed "
            f"max_spend_per_{window.name}_usd ${window.limit:g}"
        )
        return BudgetExceeded(message if why is None else f"{message} ({why})")

    def _warn(self, window: BudgetWindow, now: float, usd: float) -> None:
        last = self._warned_at.get(window.name)
        if last is not None and now - last < window.seconds:
            return
        self._warned_at[window.name] = now
        log.warning(
            "budget: %s (sending anyway: on_exceeded=warn)", self._exceeded(window, now, usd)
        )

    def _warn_uncounted(self, model: str) -> None:
        if self._uncounted_warned:
            return
        self._uncounted_warned = True
        log.warning(
            "budget: deployment %r: the cost of requests to %r is unknown (no price row, or "
            "no usage reported); they count as $0 against the budget",
            self.deployment,
            model,
        )


class BudgetPlugin(ClockedPlugin):
    """The plugin object; tests register one with a fake clock (the built-in blocked)."""

    @hookimpl
    def rakka_request_policy(
        self, deployment: DeploymentConfig, hooks: PluginHooks
    ) -> Policy | None:
        policy = deployment.budget
        if not policy.limited:
            return None
        return BudgetGate(deployment.name, policy, clock=self.clock)


plugin = BudgetPlugin()
