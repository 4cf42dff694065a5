"""The circuit breaker plugin against a real emulator: trip, fail fast, probe, recover.

Faults come from emulator scenarios (request numbers count the chat requests the emulator
received), time from a FakeClock injected into a breaker plugin registered in place of the
built-in one, and retry is blocked so every call is exactly one attempt.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.errors import BadRequest, CircuitOpen, ServerError, Timeout
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.plugins import BUILTIN_PLUGINS, PluginHooks, make_plugin_manager
from rakka_runtime.policies.breaker import CircuitBreakerPlugin, outcome_of
from rakka_runtime.policies.clock import FakeClock
from rakka_runtime.runtime import Runtime

OPEN_FOR = 30.0

# The ``make_runtime`` fixture of tests/conftest.py (typed here, not imported: another
# conftest.py in the tree makes the module name ``conftest`` ambiguous).
RuntimeFactory = Callable[..., Runtime]


class StateEvents:
    """A plugin that records every ``rakka_breaker_state_changed`` it hears."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, float | None]] = []

    @hookimpl
    def rakka_breaker_state_changed(
        self, deployment: str, old_state: str, new_state: str, retry_at: float | None
    ) -> None:
        self.seen.append((deployment, old_state, new_state, retry_at))

    def transitions(self) -> list[tuple[str, str]]:
        return [(old, new) for _, old, new, _ in self.seen]


def breaker_runtime(
    make_runtime: RuntimeFactory,
    emu: Emulator,
    clock: FakeClock,
    *overrides: str,
    events: StateEvents | None = None,
) -> Runtime:
    extra: list[tuple[str, object]] = [("test_breaker", CircuitBreakerPlugin(clock))]
    if events is not None:
        extra.append(("test_events", events))
    # Only the plugin under test: retry would repeat attempts, the others add their own
    # refusals and events.
    pm = make_plugin_manager(disabled=set(BUILTIN_PLUGINS), extra_plugins=extra)
    return make_runtime(
        emu,
        "deployment.retry.enabled=false",
        f"deployment.circuit_breaker.open_duration={OPEN_FOR}",
        *overrides,
        hooks=PluginHooks(pm),
    )


def failing(*requests: int, fault: str = "server_error;status=503") -> dict[str, Any]:
    return {"rules": [{"fault": fault, "requests": list(requests)}]}


def test_trips_after_threshold_consecutive_failures(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    emulator.set_scenario({"rules": [{"fault": "server_error;status=503"}]})
    rt = breaker_runtime(
        make_runtime, emulator, FakeClock(), "deployment.circuit_breaker.failure_threshold=3"
    )
    for _ in range(3):
        with pytest.raises(ServerError):
            rt.chat("hi")
    assert emulator.stats.requests == 3  # the third failure still went out
    with pytest.raises(CircuitOpen):
        rt.chat("hi")


@pytest.mark.parametrize(
    ("third", "opens"),
    [
        ("http_error;status=400", True),  # a client error is neutral: the run goes on
        (None, False),  # a success resets the count
    ],
)
def test_only_circuit_failures_count_and_a_success_resets(
    emulator: Emulator, make_runtime: RuntimeFactory, third: str | None, opens: bool
) -> None:
    rules: list[dict[str, Any]] = [{"fault": "server_error;status=500", "requests": [1, 2, 4]}]
    if third is not None:
        rules.insert(0, {"fault": third, "requests": [3]})
    emulator.set_scenario({"rules": rules})
    rt = breaker_runtime(
        make_runtime, emulator, FakeClock(), "deployment.circuit_breaker.failure_threshold=3"
    )
    for expected in (ServerError, ServerError, BadRequest if third else None, ServerError):
        if expected is None:
            rt.chat("hi")
        else:
            with pytest.raises(expected):
                rt.chat("hi")
    if opens:
        with pytest.raises(CircuitOpen):
            rt.chat("hi")
        assert emulator.stats.requests == 4
    else:
        assert rt.chat("hi").text
        assert emulator.stats.requests == 5


def test_open_circuit_fails_fast_without_touching_the_network(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    emulator.set_scenario(failing(1))
    clock = FakeClock()
    rt = breaker_runtime(
        make_runtime, emulator, clock, "deployment.circuit_breaker.failure_threshold=1"
    )
    with pytest.raises(ServerError):
        rt.chat("hi")
    opened_at = clock.now
    connections = emulator.stats.connections_accepted
    for _ in range(5):
        with pytest.raises(CircuitOpen) as info:
            rt.chat("hi")
        assert info.value.retry_at == opened_at + OPEN_FOR
        clock.advance(OPEN_FOR / 10)
    assert emulator.stats.requests == 1
    assert emulator.stats.connections_accepted == connections


def test_half_open_admits_at_most_max_probes_at_once(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    # Probes stall for a while, so the other callers arrive while both are in flight.
    emulator.set_scenario(
        {
            "rules": [
                {"fault": "server_error", "requests": [1]},
                {"fault": "stall;seconds=1"},
            ]
        }
    )
    clock, events = FakeClock(), StateEvents()
    rt = breaker_runtime(
        make_runtime,
        emulator,
        clock,
        "deployment.circuit_breaker.failure_threshold=1",
        "deployment.circuit_breaker.half_open_max_probes=2",
        events=events,
    )
    with pytest.raises(ServerError):
        rt.chat("hi")
    clock.advance(OPEN_FOR)

    callers = 6
    start = threading.Barrier(callers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        start.wait()
        try:
            rt.chat("hi")
            outcome = "ok"
        except CircuitOpen:
            outcome = "circuit_open"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["circuit_open"] * 4 + ["ok"] * 2
    assert emulator.stats.requests == 1 + 2
    assert events.transitions()[-2:] == [("open", "half_open"), ("half_open", "closed")]


def test_probe_success_closes_the_circuit(emulator: Emulator, make_runtime: RuntimeFactory) -> None:
    emulator.set_scenario(failing(1))
    clock = FakeClock()
    rt = breaker_runtime(
        make_runtime, emulator, clock, "deployment.circuit_breaker.failure_threshold=1"
    )
    with pytest.raises(ServerError):
        rt.chat("hi")
    clock.advance(OPEN_FOR)
    assert rt.chat("hi").text  # the probe
    # Closed again: several callers pass, not just one probe.
    for _ in range(3):
        assert rt.chat("hi").text
    assert emulator.stats.requests == 5


def test_probe_failure_reopens_for_a_fresh_open_duration(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    emulator.set_scenario(failing(1, 2))
    clock = FakeClock()
    rt = breaker_runtime(
        make_runtime, emulator, clock, "deployment.circuit_breaker.failure_threshold=1"
    )
    with pytest.raises(ServerError):
        rt.chat("hi")
    clock.advance(OPEN_FOR)
    with pytest.raises(ServerError):
        rt.chat("hi")  # the probe fails
    reopened_at = clock.now
    with pytest.raises(CircuitOpen) as info:
        rt.chat("hi")
    assert info.value.retry_at == pytest.approx(reopened_at + OPEN_FOR)
    clock.advance(OPEN_FOR - 0.5)
    with pytest.raises(CircuitOpen):
        rt.chat("hi")
    assert emulator.stats.requests == 2
    clock.advance(0.5)
    assert rt.chat("hi").text
    assert emulator.stats.requests == 3


def test_abandoned_probe_stream_frees_its_slot(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    emulator.set_scenario(failing(1))
    clock = FakeClock()
    rt = breaker_runtime(
        make_runtime, emulator, clock, "deployment.circuit_breaker.failure_threshold=1"
    )
    with pytest.raises(ServerError):
        rt.chat("hi")
    clock.advance(OPEN_FOR)
    handle = rt.stream("tell me a long story")
    chunks = iter(handle)  # kept: dropping the iterator would close the stream
    next(chunks)  # the probe is in flight
    with pytest.raises(CircuitOpen):
        rt.chat("hi")  # its only probe slot is taken
    handle.close()
    assert rt.chat("hi").text  # the slot came back: this call became the probe


def test_failure_rate_over_a_window_opens_the_circuit(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    emulator.set_scenario(failing(2, 4))
    rt = breaker_runtime(
        make_runtime,
        emulator,
        FakeClock(),
        "deployment.circuit_breaker.failure_threshold=100",
        "deployment.circuit_breaker.window=10s",
        "deployment.circuit_breaker.min_calls=4",
        "deployment.circuit_breaker.failure_rate=0.5",
    )
    rt.chat("hi")
    with pytest.raises(ServerError):
        rt.chat("hi")
    rt.chat("hi")  # 1 of 3 failed, and fewer than min_calls anyway
    with pytest.raises(ServerError):
        rt.chat("hi")  # 2 of 4: the rate is reached
    with pytest.raises(CircuitOpen):
        rt.chat("hi")
    assert emulator.stats.requests == 4


def test_failure_rate_window_slides(emulator: Emulator, make_runtime: RuntimeFactory) -> None:
    emulator.set_scenario(failing(1, 2, 5))
    clock = FakeClock()
    rt = breaker_runtime(
        make_runtime,
        emulator,
        clock,
        "deployment.circuit_breaker.failure_threshold=100",
        "deployment.circuit_breaker.window=10s",
        "deployment.circuit_breaker.min_calls=4",
        "deployment.circuit_breaker.failure_rate=0.5",
    )
    for _ in range(2):
        with pytest.raises(ServerError):
            rt.chat("hi")
    clock.advance(11)  # both failures leave the window
    rt.chat("hi")
    rt.chat("hi")
    with pytest.raises(ServerError):
        rt.chat("hi")
    # 1 failure in the 4 calls of the window; all 6 calls would have been 3 in 6 (50%).
    assert rt.chat("hi").text
    assert rt.chat("hi").text
    assert emulator.stats.requests == 7


def test_state_changes_reach_the_hook(emulator: Emulator, make_runtime: RuntimeFactory) -> None:
    emulator.set_scenario(failing(1))
    clock, events = FakeClock(), StateEvents()
    rt = breaker_runtime(
        make_runtime,
        emulator,
        clock,
        "deployment.circuit_breaker.failure_threshold=1",
        events=events,
    )
    name = rt.deployment.name
    with pytest.raises(ServerError):
        rt.chat("hi")
    opened_at = clock.now
    assert events.seen == [(name, "closed", "open", opened_at + OPEN_FOR)]
    clock.advance(OPEN_FOR)
    rt.chat("hi")
    assert events.seen[1:] == [
        (name, "open", "half_open", None),
        (name, "half_open", "closed", None),
    ]


def test_disabled_breaker_never_opens(emulator: Emulator, make_runtime: RuntimeFactory) -> None:
    emulator.set_scenario({"rules": [{"fault": "server_error"}]})
    rt = breaker_runtime(
        make_runtime,
        emulator,
        FakeClock(),
        "deployment.circuit_breaker.enabled=false",
        "deployment.circuit_breaker.failure_threshold=1",
    )
    for _ in range(3):
        with pytest.raises(ServerError):
            rt.chat("hi")
    assert emulator.stats.requests == 3


def test_caller_deadline_timeouts_are_neutral() -> None:
    assert outcome_of(Timeout("deadline passed", limit="deadline")) == "neutral"
    assert outcome_of(Timeout("slow server", limit="request_timeout")) == "failure"
    assert outcome_of(BadRequest("bad")) == "neutral"
    assert outcome_of(GeneratorExit()) == "neutral"
