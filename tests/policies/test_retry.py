"""The retry policy against the real emulator: what is retried, how long it waits, and
what the caller sees. Waits go through a FakeClock, so no test sleeps for its backoff."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from rakka_provider_openai.emulator import Emulator
from rakka_runtime import hookimpl
from rakka_runtime.config.schema import DeploymentConfig, RetryPolicy
from rakka_runtime.core.state import CallState
from rakka_runtime.errors import (
    ERROR_KINDS,
    Backpressure,
    BudgetExceeded,
    CircuitOpen,
    InferenceError,
    RateLimited,
    ServerError,
    StreamInterrupted,
    Timeout,
)
from rakka_runtime.plugins import BUILTIN_PLUGINS, PluginHooks, make_plugin_manager
from rakka_runtime.policies.clock import FakeClock
from rakka_runtime.policies.retry import RetryRule, backoff
from rakka_runtime.runtime import Runtime
from rakka_runtime.types import ChatResult
from rakka_testing import config_at

FakeRuntime = Callable[..., Runtime]

# Our own key and emulator (not imported from tests/conftest.py: a module named
# "conftest" is ambiguous once another test folder has one).
EMULATOR_KEY = "sk-policy-test-key"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(keys=[EMULATOR_KEY]) as emu:
        yield emu


def fake_hooks(clock: FakeClock, *extra: tuple[str, object]) -> PluginHooks:
    """The plugins as shipped, except that every built-in with a clock runs on ``clock``.

    One clock for all of them: the rate limiter's pause after a 429 then ends exactly when
    the retry's (fake) wait does, as it would on the system clock.
    """
    blocked, fakes = set(), []
    for name, target in BUILTIN_PLUGINS.items():
        builtin = getattr(importlib.import_module(target.partition(":")[0]), "plugin", None)
        if builtin is not None and hasattr(builtin, "clock"):
            blocked.add(name)
            fakes.append((f"{name}-fake", type(builtin)(clock=clock)))
    assert "retry" in blocked
    return PluginHooks(make_plugin_manager(disabled=blocked, extra_plugins=[*fakes, *extra]))


@pytest.fixture
def clock() -> FakeClock:
    # Starts at the real monotonic time: request deadlines are set on that clock.
    return FakeClock(now=time.monotonic(), rolls=[0.5])


@pytest.fixture
def runtime(
    emulator: Emulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeRuntime]:
    """Runtimes aimed at the emulator whose retry waits on the fake clock."""
    monkeypatch.setenv("RAKKA_TEST_KEY", EMULATOR_KEY)
    opened: list[Runtime] = []

    def make(*overrides: str, extra: tuple[tuple[str, object], ...] = ()) -> Runtime:
        rt = Runtime(config_at(emulator.url, *overrides), hooks=fake_hooks(clock, *extra))
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        rt.close()


def chat(rt: Runtime, fault: str | None, *, stream: bool = False, **kw: Any) -> ChatResult:
    headers = {"x-emulator-fault": fault} if fault else None
    return rt.chat(
        "tell me about retries", stream=stream, max_tokens=8, extra_headers=headers, **kw
    )


def fail(rt: Runtime, fault: str, **kw: Any) -> InferenceError:
    with pytest.raises(InferenceError) as caught:
        chat(rt, fault, **kw)
    return caught.value


# --- backoff math -------------------------------------------------------------------------


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=1, max_backoff=10, jitter="none")
    assert [backoff(policy, n, 0.9) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    assert backoff(policy, 10_000, 0.9) == 10  # no overflow for absurd retry counts


@pytest.mark.parametrize("roll", [0.0, 0.25, 0.999])
def test_equal_jitter_keeps_half_and_randomises_half(roll: float) -> None:
    policy = RetryPolicy(initial_backoff=2, backoff_multiplier=3, max_backoff=60, jitter="equal")
    for n, base in enumerate([2, 6, 18, 54, 60]):
        assert backoff(policy, n, roll) == pytest.approx(base / 2 + roll * base / 2)


@pytest.mark.parametrize("roll", [0.0, 0.25, 0.999])
def test_full_jitter_randomises_everything(roll: float) -> None:
    policy = RetryPolicy(initial_backoff=2, max_backoff=60, jitter="full")
    for n, base in enumerate([2, 4, 8, 16, 32, 60]):
        assert backoff(policy, n, roll) == pytest.approx(roll * base)


@pytest.mark.parametrize(
    ("jitter", "expected"),
    [("none", [1.0, 2.0, 4.0]), ("equal", [0.5, 1.5, 2.0]), ("full", [0.0, 1.0, 0.0])],
)
def test_sleeps_follow_the_clock_rolls(
    runtime: FakeRuntime, clock: FakeClock, jitter: str, expected: list[float]
) -> None:
    clock.rolls = [0.0, 0.5, 0.0]
    rt = runtime(f"deployment.retry.jitter={jitter}")
    result = chat(rt, "server_error;status=503;times=3")
    assert clock.slept == pytest.approx(expected)
    assert result.attempts == 4
    assert [a.wait for a in result.attempt_history] == pytest.approx([*expected, 0.0])


# --- what is retried ------------------------------------------------------------------------

RETRIED = [
    ("rate_limit", "rate_limited", 429),
    ("rate_limit;shape=azure", "rate_limited", 429),
    ("server_error;status=503", "server_error", 503),
    ("server_error;status=500;shape=azure", "server_error", 500),
    ("http_error;status=408", "timeout", 408),
    ("http_error;status=409", "conflict", 409),
    ("reset", "network", None),
    ("malformed", "protocol", 200),
]


@pytest.mark.parametrize(("fault", "kind", "status"), RETRIED)
def test_transient_failures_are_retried(
    runtime: FakeRuntime, clock: FakeClock, fault: str, kind: str, status: int | None
) -> None:
    # Without a hint the rate limiter pauses a 429 for a second of its own (real) waiting,
    # which is its policy, not retry's: it stays out of this table.
    rt = runtime("deployment.rate_limits.enabled=false")
    result = chat(rt, f"{fault};times=1")
    assert result.text and result.finish_reason == "length"
    assert result.attempts == 2
    first, second = result.attempt_history
    assert (first.kind, first.status) == (kind, status)
    assert (second.kind, second.status) == ("ok", 200)
    assert clock.slept == [0.75] == [first.wait]  # equal jitter, roll 0.5, base 1s


def test_a_server_timeout_names_its_limit_and_is_retried(
    runtime: FakeRuntime, clock: FakeClock
) -> None:
    rt = runtime("deployment.retry.max_retries=0")
    error = fail(rt, "http_error;status=408")
    assert isinstance(error, Timeout) and error.limit == "server"
    assert chat(runtime(), "http_error;status=408;times=1").attempts == 2


def test_a_stall_past_request_timeout_is_retried(runtime: FakeRuntime, clock: FakeClock) -> None:
    rt = runtime("deployment.timeouts.request_timeout=200ms")
    result = chat(rt, "stall;seconds=1;times=1")
    assert [a.kind for a in result.attempt_history] == ["timeout", "ok"]


NOT_RETRIED = [
    ("insufficient_quota", "quota_exceeded"),
    ("content_filter", "content_filtered"),
    ("context_length", "context_length_exceeded"),
    ("http_error;status=400", "bad_request"),
    ("http_error;status=401", "unauthorized"),
    ("http_error;status=403", "forbidden"),
    ("http_error;status=404", "not_found"),
    ("content_filter_finish", "content_filtered"),
]


@pytest.mark.parametrize(("fault", "kind"), NOT_RETRIED)
def test_final_failures_are_not_retried(
    emulator: Emulator, runtime: FakeRuntime, clock: FakeClock, fault: str, kind: str
) -> None:
    error = fail(runtime(), fault)
    assert error.kind == kind
    assert clock.slept == []
    assert [(a.kind, a.wait) for a in error.attempts] == [(kind, 0.0)]
    assert emulator.stats.requests == 1


def test_a_wrong_key_is_not_retried(emulator: Emulator, runtime: FakeRuntime) -> None:
    rt = runtime()
    with pytest.raises(InferenceError) as caught:
        rt.chat("hi", extra_headers={"Authorization": "Bearer sk-wrong-key"})
    assert caught.value.kind == "unauthorized" and caught.value.status == 401
    assert emulator.stats.requests == 1


class _Refuse:
    """An attempt-stage plugin that refuses the first ``times`` attempts before the wire."""

    def __init__(self, error: Callable[[], InferenceError], times: int = 1_000) -> None:
        self.error = error
        self.left = times

    @hookimpl
    def rakka_request_policy(self, deployment: DeploymentConfig) -> Any:
        refuse = self

        class Gate:
            name = "refuse"
            scope: Literal["request", "attempt"] = "attempt"
            order = 0

            def enter(self, state: CallState) -> None:
                if refuse.left > 0:
                    refuse.left -= 1
                    raise refuse.error()

            def leave(self, state: CallState, ticket: None, outcome: object) -> None:
                return None

        return Gate()


@pytest.mark.parametrize(
    "error",
    [
        lambda: CircuitOpen("the circuit is open", retry_at=5.0),
        lambda: Backpressure("queue full"),
        lambda: BudgetExceeded("over budget"),
    ],
)
def test_local_refusals_are_not_retried_but_count_as_an_attempt(
    emulator: Emulator, runtime: FakeRuntime, clock: FakeClock, error: Callable[[], InferenceError]
) -> None:
    rt = runtime(extra=(("refuse", _Refuse(error)),))
    raised = fail(rt, "")
    assert raised.kind == error().kind
    assert [a.kind for a in raised.attempts] == [raised.kind]
    assert clock.slept == [] and emulator.stats.requests == 0


def test_a_retryable_refusal_before_the_wire_is_recorded_and_retried(
    emulator: Emulator, runtime: FakeRuntime, clock: FakeClock
) -> None:
    refuse = _Refuse(lambda: RateLimited("local bucket empty", retry_after=0.2), times=1)
    result = chat(runtime(extra=(("refuse", refuse),)), None)
    assert [(a.kind, a.status, a.wait) for a in result.attempt_history] == [
        ("rate_limited", None, 0.2),
        ("ok", 200, 0.0),
    ]
    assert result.attempts == 2 and emulator.stats.requests == 1


# --- server hints ---------------------------------------------------------------------------


def test_should_retry_false_beats_a_retryable_status(
    emulator: Emulator, runtime: FakeRuntime, clock: FakeClock
) -> None:
    error = fail(runtime(), "server_error;status=503;should_retry=false")
    assert error.kind == "server_error" and len(error.attempts) == 1
    assert clock.slept == [] and emulator.stats.requests == 1


def test_should_retry_true_beats_a_final_status(runtime: FakeRuntime, clock: FakeClock) -> None:
    result = chat(runtime(), "http_error;status=400;should_retry=true;times=1")
    assert [a.kind for a in result.attempt_history] == ["bad_request", "ok"]


def test_retry_after_is_waited_exactly_without_jitter(
    runtime: FakeRuntime, clock: FakeClock
) -> None:
    result = chat(runtime(), "server_error;status=503;retry_after=2;times=1")
    assert clock.slept == [2.0] and result.attempt_history[0].wait == 2.0


def test_retry_after_ms_beats_retry_after(runtime: FakeRuntime, clock: FakeClock) -> None:
    chat(runtime(), "rate_limit;retry_after=7;retry_after_ms=150;times=1")
    assert clock.slept == [0.15]


def test_an_http_date_retry_after_is_honoured(runtime: FakeRuntime, clock: FakeClock) -> None:
    rt = runtime("deployment.retry.initial_backoff=20s", "deployment.retry.max_backoff=20s")
    chat(rt, "rate_limit;retry_after_date=1;retry_after=3;times=1")
    # The date has whole seconds, so 3s ahead reads as 2..3s; a backoff would be 10..20s.
    assert len(clock.slept) == 1 and 1.5 < clock.slept[0] <= 3.0


def test_hints_are_ignored_when_not_respected(runtime: FakeRuntime, clock: FakeClock) -> None:
    rt = runtime("deployment.retry.respect_retry_after=false")
    # A 503: after a 429 the rate limiter would still pause for the hint (its own policy).
    chat(rt, "server_error;status=503;retry_after=30;times=1")
    assert clock.slept == [0.75]


@pytest.mark.parametrize(
    ("fault", "status"), [("rate_limit;retry_after=120", 429), ("server_error;retry_after=90", 500)]
)
def test_a_hint_past_max_retry_after_fails_at_once_as_rate_limited(
    emulator: Emulator, runtime: FakeRuntime, clock: FakeClock, fault: str, status: int
) -> None:
    error = fail(runtime(), fault)
    assert isinstance(error, RateLimited)
    assert error.retry_after in (120.0, 90.0) and error.status == status
    assert error.request_id and error.request_id.startswith("req_")
    assert error.request_id == error.__cause__.request_id  # type: ignore[union-attr]
    assert "max_retry_after" in error.message
    assert clock.slept == [] and emulator.stats.requests == 1
    assert len(error.attempts) == 1


def test_a_hint_past_the_deadline_fails_at_once(runtime: FakeRuntime, clock: FakeClock) -> None:
    rt = runtime("deployment.retry.deadline=5s")
    error = fail(rt, "rate_limit;retry_after=10")
    assert isinstance(error, RateLimited) and error.retry_after == 10.0
    assert "deadline" in error.message and clock.slept == []


def test_a_backoff_past_the_deadline_fails_with_the_last_error(
    runtime: FakeRuntime, clock: FakeClock
) -> None:
    rt = runtime(
        "deployment.retry.deadline=3s",
        "deployment.retry.initial_backoff=2s",
        "deployment.retry.jitter=none",
    )
    error = fail(rt, "server_error;status=503")
    assert isinstance(error, ServerError)
    assert clock.slept == [2.0]  # the next one (4s) would end after the deadline
    assert [(a.kind, a.wait) for a in error.attempts] == [
        ("server_error", 2.0),
        ("server_error", 0.0),
    ]


def test_the_request_deadline_wins_over_the_policy(runtime: FakeRuntime, clock: FakeClock) -> None:
    rt = runtime("deployment.retry.deadline=1h", "deployment.retry.jitter=none")
    error = fail(rt, "server_error;status=503", deadline=0.9)
    assert isinstance(error, ServerError) and clock.slept == [] and len(error.attempts) == 1


# --- limits and switches --------------------------------------------------------------------


def test_retries_stop_after_max_retries(
    emulator: Emulator, runtime: FakeRuntime, clock: FakeClock
) -> None:
    error = fail(runtime(), "server_error;status=502")
    assert isinstance(error, ServerError) and error.status == 502
    assert [(a.kind, a.status) for a in error.attempts] == [("server_error", 502)] * 4
    assert [a.wait for a in error.attempts] == [0.75, 1.5, 3.0, 0.0]
    assert emulator.stats.requests == 4


def test_disabled_in_config_means_one_attempt(emulator: Emulator, runtime: FakeRuntime) -> None:
    error = fail(runtime("deployment.retry.enabled=false"), "server_error;status=503")
    assert len(error.attempts) == 1 and emulator.stats.requests == 1


def test_the_builtin_is_registered_and_can_be_disabled_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployment = DeploymentConfig(provider="openai", model="m")
    (layer,) = [m for m in PluginHooks().policies(deployment) if m.name == "retry"]
    assert isinstance(layer, RetryRule)
    assert (layer.scope, layer.order) == ("request", 100)
    monkeypatch.setenv("RAKKA_DISABLE_PLUGINS", "retry")
    assert not [m for m in PluginHooks().policies(deployment) if m.name == "retry"]


# --- streams --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kinds"),
    [
        # The role-only opening event arrives, then the server stalls.
        ("stall_mid;after=1;seconds=1", {"timeout"}),
        # The opening event, then an error event in place of the answer.
        ("stream_error", {"server_error"}),
        ("malformed", {"protocol"}),
        ("cut;after=1", {"stream_interrupted", "network"}),
    ],
)
def test_a_stream_failing_before_its_first_chunk_is_retried_without_duplicates(
    runtime: FakeRuntime, clock: FakeClock, fault: str, kinds: set[str]
) -> None:
    rt = runtime("deployment.timeouts.read_timeout=200ms")
    expected = chat(rt, None, stream=True).text
    handle = rt.stream(
        "tell me about retries",
        max_tokens=8,
        extra_headers={"x-emulator-fault": f"{fault};times=1"},
    )
    deltas = [chunk.text_delta for chunk in handle]
    result = handle.result()
    assert "".join(deltas) == result.text == expected
    assert [a.kind for a in result.attempt_history][1:] == ["ok"]
    assert result.attempt_history[0].kind in kinds
    assert clock.slept == [0.75]


@pytest.mark.parametrize(
    ("fault", "cause", "message"),
    [
        ("stall_mid;after=4;seconds=1", {"timeout"}, "read_timeout fired after 3 chunks"),
        ("cut;after=4", {"network", "stream_interrupted"}, ""),
    ],
)
def test_a_stream_failing_after_its_first_chunk_is_interrupted_with_the_partial(
    emulator: Emulator,
    runtime: FakeRuntime,
    clock: FakeClock,
    fault: str,
    cause: set[str],
    message: str,
) -> None:
    rt = runtime("deployment.timeouts.read_timeout=200ms")
    headers = {"x-emulator-fault": fault}
    handle = rt.stream("tell me about retries", max_tokens=8, extra_headers=headers)
    deltas: list[str] = []
    with pytest.raises(StreamInterrupted) as caught:
        for chunk in handle:
            deltas.append(chunk.text_delta)
    error = caught.value
    assert len(deltas) == 3 and all(deltas)
    assert error.partial is not None and error.partial.text == "".join(deltas)
    assert message in error.message
    if error.__cause__ is not None:  # a transient error was turned into the interruption
        assert isinstance(error.__cause__, InferenceError) and error.__cause__.kind in cause
    assert len(error.attempts) == 1 and error.attempts[0].kind in cause
    assert clock.slept == [] and emulator.stats.requests == 1


def test_a_final_verdict_after_chunks_keeps_its_kind(runtime: FakeRuntime) -> None:
    error = fail(runtime(), "content_filter_finish", stream=True)
    assert error.kind == "content_filtered"
    assert error.partial is not None and error.partial.text


# --- visible through the CLI ----------------------------------------------------------------


def test_rakka_chat_json_reports_the_attempts(tmp_path: Path) -> None:
    scenario = tmp_path / "first-fails.json"
    scenario.write_text(
        json.dumps({"rules": [{"fault": "server_error;status=503", "requests": [1]}]})
    )
    rakka = str(Path(sys.executable).with_name("rakka"))
    server = subprocess.Popen(
        [rakka, "emulator", "--port", "0", "--scenario", str(scenario), "--key", EMULATOR_KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = _first_line(server.stdout, timeout=10)
        url = banner.split(" on ", 1)[1].split()[0]
        env = {**os.environ, "OPENAI_API_KEY": EMULATOR_KEY}
        env.pop("RAKKA_DISABLE_PLUGINS", None)
        out = subprocess.run(
            [
                rakka,
                "chat",
                "--json",
                "hello",
                "deployment=openai",
                f"deployment.variant.endpoint={url}/v1",
                "deployment.retry.initial_backoff=10ms",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(10)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["attempts"] == 2 and report["error"] is None and report["text"]


def _first_line(stream: Any, timeout: float) -> str:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert line and line[0], "the emulator did not start"
    return line[0]


# --- soak -----------------------------------------------------------------------------------

SOAK_SCENARIO = {
    "seed": 7,
    "rules": [
        {"fault": "rate_limit;retry_after_ms=5", "probability": 0.12},
        {"fault": "server_error;status=503", "probability": 0.08},
        {"fault": "server_error;status=502;shape=azure", "probability": 0.04},
        {"fault": "reset", "probability": 0.05},
        {"fault": "stall;seconds=0.4", "probability": 0.03},
    ],
}
SOAK_THREADS, SOAK_PER_THREAD = 16, 40
TRANSIENT = {"rate_limited", "server_error", "network", "timeout"}


@pytest.mark.soak
def test_soak_every_request_ends_exactly_once(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes: dict[str, list[ChatResult | InferenceError]] = {}
    lock = threading.Lock()
    broken: list[BaseException] = []
    with Emulator(keys=[EMULATOR_KEY], scenario=SOAK_SCENARIO) as emu:
        monkeypatch.setenv("RAKKA_TEST_KEY", EMULATOR_KEY)
        config = config_at(emu.url, "deployment.timeouts.request_timeout=100ms")
        rt = Runtime(config, hooks=fake_hooks(clock))

        def worker(index: int) -> None:
            try:
                for n in range(SOAK_PER_THREAD):
                    stream = (index + n) % 2 == 0
                    request = rt.request(f"soak {index} {n}", stream=stream, max_tokens=6)
                    outcome: ChatResult | InferenceError
                    try:
                        handle = rt.execute(request)
                        deltas = [chunk.text_delta for chunk in handle]
                        outcome = handle.result()
                        if stream and "".join(deltas) != outcome.text:
                            raise AssertionError(f"duplicated text in {request.request_id}")
                        assert outcome.request_id == request.request_id
                    except InferenceError as exc:
                        outcome = exc
                    with lock:
                        outcomes.setdefault(request.request_id, []).append(outcome)
            except BaseException as exc:  # surfaced below: a thread must not die silently
                broken.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(SOAK_THREADS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.1, started + 15 - time.monotonic()))
        assert not [t for t in threads if t.is_alive()], "a request hung"
        assert broken == []
        faults = emu.stats.faults_injected
        rt.close()
    assert len(outcomes) == SOAK_THREADS * SOAK_PER_THREAD
    assert all(len(seen) == 1 for seen in outcomes.values())
    results = [o[0] for o in outcomes.values() if isinstance(o[0], ChatResult)]
    errors = [o[0] for o in outcomes.values() if isinstance(o[0], InferenceError)]
    # Retries exhausted, or (rarely) refused by the breaker / rate limiter in between.
    assert all(e.kind in ERROR_KINDS for e in errors), errors
    assert all(len(e.attempts) == 4 for e in errors if e.kind in TRANSIENT), errors
    assert len(results) > 0.9 * len(outcomes)
    assert any(r.attempts > 1 for r in results)
    assert {"rate_limit", "server_error", "reset", "stall"} <= set(faults)
