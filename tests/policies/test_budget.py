"""Budgets against the real emulator, on a fake clock: reject, warn and throttle.

Prices are set to $1 a token (``deployment.pricing``), so the dollars are token counts:
"hi" with ``max_tokens=4`` is estimated at 3 + 4 + 1 = 8 input tokens + 4 output = $12
before sending, and the emulator bills 5 prompt tokens (ceil(2 / 4) + 4) + 4 = $9.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.errors import BudgetExceeded, ContentFiltered
from rakka_runtime.plugins import PluginHooks, make_plugin_manager
from rakka_runtime.policies.budget import HOUR, BudgetLedger, BudgetPlugin, BudgetWindow
from rakka_runtime.policies.clock import FakeClock
from rakka_runtime.runtime import Runtime

# The conftest `make_runtime` fixture: builds a Runtime aimed at an emulator.
RuntimeFactory = Callable[..., Runtime]

DOLLAR_A_TOKEN = "+deployment.pricing={input: 1000000, output: 1000000}"
ESTIMATE, ACTUAL = 12.0, 9.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now=5000.0)


@pytest.fixture
def budget(emulator: Emulator, make_runtime: RuntimeFactory, clock: FakeClock) -> RuntimeFactory:
    """A runtime with the given budget overrides whose budget runs on the fake clock."""

    def make(*overrides: str) -> Runtime:
        hooks = PluginHooks(
            make_plugin_manager(
                disabled={"budget"}, extra_plugins=[("budget-fake", BudgetPlugin(clock=clock))]
            )
        )
        return make_runtime(emulator, DOLLAR_A_TOKEN, *overrides, hooks=hooks)

    return make


def spend(runtime: Runtime, **kw: object) -> float:
    result = runtime.chat("hi", max_tokens=4, **kw)
    assert result.cost_usd == pytest.approx(ACTUAL)
    return ACTUAL


def test_reject_refuses_before_sending(
    budget: RuntimeFactory, emulator: Emulator, clock: FakeClock
) -> None:
    runtime = budget("deployment.budget.max_spend_per_hour_usd=30")
    assert runtime.estimate_cost(runtime.request("hi", max_tokens=4)).usd == ESTIMATE
    for _ in range(3):  # 0 + 12, 9 + 12, 18 + 12: each fits under $30 (the last exactly)
        spend(runtime)
    sent = emulator.stats.requests
    with pytest.raises(BudgetExceeded) as caught:  # 27 + 12 > 30
        runtime.chat("hi", max_tokens=4)
    assert emulator.stats.requests == sent  # refused before anything was sent
    assert "$27.000000 spent in the last hour" in caught.value.message
    assert "max_spend_per_hour_usd $30" in caught.value.message
    assert caught.value.kind == "budget_exceeded" and caught.value.attempts == []
    clock.advance(HOUR)  # the window slides past the three requests
    spend(runtime)


def test_day_window_counts_what_the_hour_window_forgot(
    budget: RuntimeFactory, clock: FakeClock
) -> None:
    runtime = budget(
        "deployment.budget.max_spend_per_hour_usd=100", "deployment.budget.max_spend_per_day_usd=20"
    )
    spend(runtime)
    clock.advance(2 * HOUR)
    with pytest.raises(BudgetExceeded, match="spent in the last day"):  # 9 + 12 > 20
        runtime.chat("hi", max_tokens=4)


def test_failed_request_that_consumed_tokens_counts(budget: RuntimeFactory) -> None:
    runtime = budget(
        "deployment.budget.max_spend_per_hour_usd=20", "deployment.retry.enabled=false"
    )
    filtered = {"x-emulator-fault": "content_filter_finish"}
    with pytest.raises(ContentFiltered):  # still billed: 5 prompt + 2 words = $7
        runtime.chat("hi", max_tokens=4, extra_headers=filtered)
    spend(runtime)  # 7 + 12 fits under 20
    with pytest.raises(BudgetExceeded, match=r"\$16\.000000 spent"):  # 7 + 9, not just 9
        runtime.chat("hi", max_tokens=4)


def budget_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    # Only the budget's own: other layers (or a debug logging setup) may log too.
    return [r.getMessage() for r in caplog.records if r.name == "rakka_runtime.budget"]


def test_warn_logs_once_per_window_and_sends(
    budget: RuntimeFactory, emulator: Emulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = budget(
        "deployment.budget.max_spend_per_hour_usd=10", "deployment.budget.on_exceeded=warn"
    )
    caplog.set_level(logging.WARNING, logger="rakka_runtime.budget")
    sent = emulator.stats.requests
    spend(runtime)  # 0 + 12 > 10: warned, sent
    spend(runtime)  # still over, same window: sent without a second warning
    warnings = budget_warnings(caplog)
    assert len(warnings) == 1 and "max_spend_per_hour_usd $10" in warnings[0]
    clock.advance(HOUR)
    spend(runtime)  # a new window: warned again
    assert len(budget_warnings(caplog)) == 2
    assert emulator.stats.requests == sent + 3


def test_throttle_waits_until_the_window_frees_enough(
    budget: RuntimeFactory, clock: FakeClock
) -> None:
    runtime = budget(
        "deployment.budget.max_spend_per_hour_usd=20",
        "deployment.budget.on_exceeded=throttle",
        "deployment.timeouts.deadline=null",  # else the 10-minute default bounds the wait
    )
    spend(runtime)  # stamped at t0
    clock.advance(100)
    spend(runtime)  # 9 + 12 > 20: waits until the first request leaves the window
    assert clock.slept == [HOUR - 100]


def test_throttle_fails_when_the_wait_passes_the_deadline(
    budget: RuntimeFactory, clock: FakeClock
) -> None:
    runtime = budget(
        "deployment.budget.max_spend_per_hour_usd=20", "deployment.budget.on_exceeded=throttle"
    )
    spend(runtime)
    with pytest.raises(BudgetExceeded, match="past the request's deadline"):
        runtime.chat("hi", max_tokens=4, deadline=60)
    assert clock.slept == []
    with pytest.raises(BudgetExceeded, match="the request alone is over the limit"):
        runtime.chat("hi", max_tokens=30)  # estimated at 8 + 30 = $38 > $20: never fits


def test_no_budget_no_policy(make_runtime: RuntimeFactory, emulator: Emulator) -> None:
    runtime = make_runtime(emulator)
    names = [m.name for m in runtime.hooks.policies(runtime.deployment)]
    assert "budget" not in names and "metrics" in names


def test_ledger_wait_is_when_enough_old_spend_leaves_the_window() -> None:
    ledger = BudgetLedger()
    window = BudgetWindow("hour", HOUR, 10.0)
    for at, usd in ((0.0, 4.0), (10.0, 4.0), (20.0, 1.0)):
        ledger.reserve(at, usd)
    assert ledger.spent(30.0, HOUR) == 9.0
    assert ledger.wait_for(30.0, window, 1.0) == 0.0  # 9 + 1 fits exactly
    assert ledger.wait_for(30.0, window, 3.0) == HOUR - 30.0  # the first $4 must go
    assert ledger.wait_for(30.0, window, 6.0) == HOUR + 10.0 - 30.0  # both $4 entries
    assert ledger.wait_for(30.0, window, 11.0) is None  # more than the whole limit
