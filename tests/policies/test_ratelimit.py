"""Client-side rate limits: refill, reservations, FCFS queueing, deadlines, provider feedback.

Runtime-level rules run against a real emulator with only this plugin registered (retry
blocked, so each call is one attempt); queue mechanics are driven on the admission queue
itself with real threads. A FakeClock replaces refill time wherever the arithmetic is
what is being checked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rakka_provider_openai.codec import ratelimit_feedback
from rakka_provider_openai.emulator import Emulator
from rakka_runtime.config.schema import DeploymentConfig
from rakka_runtime.core.flow import DEFAULT_MAX_OUTPUT_TOKENS as DEFAULT_OUTPUT_RESERVATION
from rakka_runtime.core.policy import Policy
from rakka_runtime.errors import Backpressure, RateLimited, ServerError
from rakka_runtime.hookspecs import hookimpl
from rakka_runtime.plugins import BUILTIN_PLUGINS, PluginHooks, make_plugin_manager
from rakka_runtime.policies.admission import AdmissionQueue
from rakka_runtime.policies.clock import SYSTEM_CLOCK, Clock, FakeClock
from rakka_runtime.policies.ratelimit import RateLimitGate, RateLimitPlugin, reserved_tokens
from rakka_runtime.pricing import estimate_input_tokens
from rakka_runtime.runtime import Runtime
from rakka_runtime.types import ExecuteBatch, SamplingParams

# The ``make_runtime`` fixture of tests/conftest.py (typed here, not imported: another
# conftest.py in the tree makes the module name ``conftest`` ambiguous).
RuntimeFactory = Callable[..., Runtime]


class RecordingLimits(RateLimitPlugin):
    """The rate-limit plugin, keeping the gates it builds so tests can read levels."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(clock)
        self.built: list[RateLimitGate] = []

    @hookimpl
    def rakka_request_policy(
        self, deployment: DeploymentConfig, hooks: PluginHooks
    ) -> Policy | None:
        gate = super().rakka_request_policy(deployment, hooks)
        if isinstance(gate, RateLimitGate):
            self.built.append(gate)
        return gate

    @property
    def admission(self) -> AdmissionQueue:
        return self.built[-1].admission


def limited_runtime(
    make_runtime: RuntimeFactory,
    emu: Emulator,
    *overrides: str,
    limits: RecordingLimits | None = None,
) -> Runtime:
    plugin = limits if limits is not None else RecordingLimits()
    pm = make_plugin_manager(
        disabled=set(BUILTIN_PLUGINS), extra_plugins=[("test_rate_limits", plugin)]
    )
    return make_runtime(emu, "deployment.retry.enabled=false", *overrides, hooks=PluginHooks(pm))


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert not any(thread.is_alive() for thread in threads)


def wait_for_waiters(queue: AdmissionQueue, count: int, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while queue.waiting != count:
        assert time.monotonic() < end, f"{count} waiters never queued"
        time.sleep(0.002)


# --- buckets -------------------------------------------------------------------------------


def test_buckets_refill_continuously_not_per_window() -> None:
    clock = FakeClock()
    queue = AdmissionQueue(requests_per_minute=60, clock=clock)
    for _ in range(60):  # a full minute's worth may burst
        queue.release(queue.admit(0, wait=False), requests_used=1, tokens_used=0)
    with pytest.raises(Backpressure) as info:
        queue.admit(0, wait=False)
    assert info.value.retry_after == pytest.approx(1.0)  # one request per second
    clock.advance(0.5)
    with pytest.raises(Backpressure) as info:
        queue.admit(0, wait=False)
    assert info.value.retry_after == pytest.approx(0.5)
    clock.advance(0.5)
    queue.admit(0, wait=False)  # a fixed window would wait for the minute to turn
    assert queue.levels()["requests"] == pytest.approx(0.0)
    clock.advance(600)
    assert queue.levels()["requests"] == 60  # never above capacity


def test_provider_feedback_caps_only_beyond_its_own_precision() -> None:
    # "remaining" is off by the requests in flight when the server wrote it: a cap of
    # less than 1% of it is skipped (no lock taken); near a limit the cap is exact.
    queue = AdmissionQueue(requests_per_minute=10_000, clock=FakeClock())
    queue.observe("requests", remaining=9_950, limit=None, reset=None)
    assert queue.levels()["requests"] == 10_000  # 50 over 9,950 is within 1%
    queue.observe("requests", remaining=9_000, limit=None, reset=None)
    assert queue.levels()["requests"] == 9_000
    queue.observe("requests", remaining=5, limit=None, reset=None)
    assert queue.levels()["requests"] == 5
    queue.observe("requests", remaining=4, limit=None, reset=None)
    assert queue.levels()["requests"] == 4  # one request near the limit matters
    queue.observe("requests", remaining=3, limit=None, reset=None)
    assert queue.levels()["requests"] == 3


def test_a_cancelled_request_leaves_the_line() -> None:
    from rakka_runtime.errors import Cancelled

    queue = AdmissionQueue(concurrent_requests=1)  # the real clock: this wait is real
    held = queue.admit(0)
    flag = threading.Event()
    threading.Timer(0.2, flag.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled, match="queued"):
        queue.admit(0, deadline=time.monotonic() + 30, cancelled=flag.is_set)
    assert time.monotonic() - started < 2  # within a poll of the cancel, not 30 s
    queue.release(held, requests_used=1, tokens_used=0)
    queue.release(queue.admit(0, wait=False), requests_used=1, tokens_used=0)  # slot free


def test_request_larger_than_the_bucket_waits_for_a_full_bucket() -> None:
    clock = FakeClock()
    queue = AdmissionQueue(tokens_per_minute=600, clock=clock)
    queue.admit(1000, wait=False)  # fits once the bucket is full, and leaves a debt
    assert queue.levels()["tokens"] == pytest.approx(-400)
    with pytest.raises(Backpressure) as info:
        queue.admit(1, wait=False)
    assert info.value.retry_after == pytest.approx(401 / 10)


# --- reserve and reconcile -----------------------------------------------------------------


def test_reserves_estimate_before_sending_and_reconciles_with_usage(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    limits = RecordingLimits(FakeClock())  # frozen: no refill blurs the arithmetic
    rt = limited_runtime(
        make_runtime, emulator, "deployment.rate_limits.tokens_per_minute=100000", limits=limits
    )
    prompt = "count the tokens of this prompt please"
    request = rt.request(prompt, stream=True, max_tokens=40)
    reserved = estimate_input_tokens(request.messages) + 40
    handle = rt.execute(request)
    chunks = iter(handle)
    next(chunks)
    assert limits.admission.levels()["tokens"] == 100000 - reserved  # reserved up front
    for _ in chunks:
        pass
    usage = handle.result().usage
    assert usage is not None
    used = usage.input_tokens + usage.output_tokens
    assert used != reserved
    assert limits.admission.levels()["tokens"] == 100000 - used  # replaced by the usage


def test_default_output_reservation_and_n() -> None:
    messages = [{"role": "user", "content": "hi"}]
    prompt = estimate_input_tokens(messages)
    assert reserved_tokens(ExecuteBatch(messages), prompt) == prompt + DEFAULT_OUTPUT_RESERVATION
    request = ExecuteBatch(messages, sampling=SamplingParams(max_tokens=100, n=3))
    assert reserved_tokens(request, prompt) == prompt + 300


@pytest.mark.parametrize(
    ("fault", "error", "kept"),
    [
        ("server_error", ServerError, "input"),  # the provider read the prompt
        ("rate_limit;retry_after_ms=1", RateLimited, "nothing"),  # refused: counted nothing
    ],
)
def test_failed_attempt_keeps_only_what_the_provider_counted(
    emulator: Emulator,
    make_runtime: RuntimeFactory,
    fault: str,
    error: type[Exception],
    kept: str,
) -> None:
    emulator.set_scenario({"rules": [{"fault": fault}]})
    limits = RecordingLimits(FakeClock())
    rt = limited_runtime(
        make_runtime,
        emulator,
        "deployment.rate_limits.tokens_per_minute=100000",
        "deployment.rate_limits.requests_per_minute=100",
        limits=limits,
    )
    request = rt.request("hello there", stream=False, max_tokens=500)
    with pytest.raises(error):
        rt.execute(request).result()
    levels = limits.admission.levels()
    if kept == "input":
        assert levels["tokens"] == 100000 - estimate_input_tokens(request.messages)
        assert levels["requests"] == 99
    else:
        assert levels == {"tokens": 100000, "requests": 100}


def test_use_beyond_the_reservation_is_charged() -> None:
    clock = FakeClock()
    queue = AdmissionQueue(tokens_per_minute=1000, clock=clock)
    queue.release(queue.admit(100, wait=False), requests_used=1, tokens_used=250)
    assert queue.levels()["tokens"] == 750


# --- queueing ------------------------------------------------------------------------------


def test_queue_is_first_come_first_served_across_threads() -> None:
    # 100 tokens a second, emptied: "big" needs 0.8 s of refill. "small" would fit long
    # before that, but arrived later, so it must not overtake.
    queue = AdmissionQueue(tokens_per_minute=6000)
    started = time.monotonic()
    queue.release(queue.admit(6000), requests_used=1, tokens_used=6000)
    plan = [("big", 80), ("small", 1), ("medium", 10)]
    admitted: list[tuple[str, float]] = []
    lock = threading.Lock()

    def waiter(index: int) -> None:
        name, tokens = plan[index]
        grant = queue.admit(tokens, deadline=time.monotonic() + 5)
        with lock:
            admitted.append((name, time.monotonic() - started))
        queue.release(grant, requests_used=1, tokens_used=tokens)

    threads = []
    for index in range(len(plan)):
        thread = threading.Thread(target=waiter, args=(index,))
        thread.start()
        threads.append(thread)
        wait_for_waiters(queue, index + 1)  # arrival order is fixed
    for thread in threads:
        thread.join(5)
    # When each was admitted, not which granted thread appended first (threads granted a
    # few ms apart may return in either order on a loaded host): nobody before big's 80
    # tokens refilled, medium's 10 on top of them.
    after = dict(admitted)
    assert set(after) == {"big", "small", "medium"}
    assert min(after.values()) >= 0.75, after
    assert after["medium"] >= 0.85, after


def test_queue_order_holds_for_concurrency_slots() -> None:
    queue = AdmissionQueue(concurrent_requests=1)
    holder = queue.admit(0)
    order: list[int] = []

    def waiter(index: int) -> None:
        grant = queue.admit(0, deadline=time.monotonic() + 5)
        order.append(index)
        queue.release(grant, requests_used=1, tokens_used=0)

    threads = []
    for index in range(5):
        thread = threading.Thread(target=waiter, args=(index,))
        thread.start()
        threads.append(thread)
        wait_for_waiters(queue, index + 1)
    queue.release(holder, requests_used=1, tokens_used=0)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_queue_fails_at_once_when_capacity_comes_after_the_deadline(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    rt = limited_runtime(make_runtime, emulator, "deployment.rate_limits.requests_per_minute=1")
    rt.chat("hi")
    started = time.monotonic()
    with pytest.raises(Backpressure) as info:
        rt.chat("hi", deadline=2.0)  # the next request is a minute away
    assert time.monotonic() - started < 1.5  # did not wait just to fail
    assert info.value.retry_after == pytest.approx(60, abs=1)
    assert emulator.stats.requests == 1


def test_queue_wait_for_a_slot_is_bounded_by_the_deadline() -> None:
    queue = AdmissionQueue(concurrent_requests=1)
    queue.admit(0)
    started = time.monotonic()
    with pytest.raises(Backpressure):
        queue.admit(0, deadline=started + 0.2)
    waited = time.monotonic() - started
    assert 0.15 <= waited < 2.0  # a slot's wait is not predictable, so it waits it out
    assert queue.waiting == 0


def test_queue_on_a_fake_clock_waits_in_fake_time() -> None:
    # Nobody else advances the clock: the waiter itself must sleep on it, not hang.
    clock = FakeClock()
    queue = AdmissionQueue(requests_per_minute=60, clock=clock)
    queue.release(queue.admit(0), requests_used=60, tokens_used=0)  # empty: 1 a second
    queue.pause(5.0)
    with pytest.raises(Backpressure):
        queue.admit(0, deadline=clock.now + 4.0)  # the pause outlasts it: at once
    assert clock.slept == []
    waiter = threading.Thread(target=queue.admit, args=(0,), daemon=True)
    waiter.start()
    waiter.join(3.0)
    assert not waiter.is_alive(), "the waiter hung on a clock nobody advances"
    assert queue.in_flight == 1
    assert sum(clock.slept) == pytest.approx(5.0)  # the pause; the refill ran meanwhile


def test_reject_fails_at_once_with_backpressure(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    rt = limited_runtime(
        make_runtime,
        emulator,
        "deployment.rate_limits.requests_per_minute=2",
        "deployment.rate_limits.on_capacity_exhausted=reject",
    )
    rt.chat("hi")
    rt.chat("hi")
    started = time.monotonic()
    with pytest.raises(Backpressure) as info:
        rt.chat("hi")
    assert time.monotonic() - started < 1.5  # queueing would have waited 30 s
    assert info.value.retry_after == pytest.approx(30, abs=1)  # 2 a minute: one in 30 s
    assert emulator.stats.requests == 2


# --- concurrency ---------------------------------------------------------------------------


def count_in_flight(emu: Emulator) -> Callable[[], int]:
    """Wrap the emulator's request handler to track the most requests it served at once."""
    app: Any = emu._app
    inner = app.handle
    lock = threading.Lock()
    now = [0]
    peak = [0]

    def handle(respond: Any, request: Any) -> bool:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        try:
            return bool(inner(respond, request))
        finally:
            with lock:
                now[0] -= 1

    app.handle = handle
    return lambda: peak[0]


def test_concurrency_limit_holds_under_16_threads(make_runtime: RuntimeFactory) -> None:
    with Emulator(chunk_delay=0.003) as emu:
        peak = count_in_flight(emu)
        rt = limited_runtime(make_runtime, emu, "deployment.rate_limits.concurrent_requests=4")
        failures: list[BaseException] = []

        def worker(_: int) -> None:
            try:
                for _ in range(2):
                    assert rt.chat("tell me something", stream=True).text
            except BaseException as exc:  # collected: a thread's failure must fail the test
                failures.append(exc)

        run_threads(16, worker)
        assert not failures
        assert emu.stats.requests == 32
        assert 2 <= peak() <= 4


def test_closing_a_handle_early_releases_the_slot(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    limits = RecordingLimits()
    rt = limited_runtime(
        make_runtime,
        emulator,
        "deployment.rate_limits.concurrent_requests=1",
        "deployment.rate_limits.on_capacity_exhausted=reject",
        limits=limits,
    )
    handle = rt.stream("tell me a long story")
    chunks = iter(handle)  # kept: dropping the iterator would close the stream
    next(chunks)
    with pytest.raises(Backpressure):
        rt.chat("hi")  # the only slot is taken
    handle.close()
    assert limits.admission.in_flight == 0
    assert rt.chat("hi").text


# --- provider feedback ---------------------------------------------------------------------


def test_ratelimit_headers_are_read() -> None:
    headers = {
        "X-RateLimit-Limit-Requests": "500",
        "X-RateLimit-Remaining-Requests": "499",
        "X-RateLimit-Reset-Requests": "120ms",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "29000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert ratelimit_feedback(headers) == (
        ("requests", 499, 500, pytest.approx(0.12)),
        ("tokens", 29000, 30000, 360.0),
    )
    assert ratelimit_feedback({"x-ratelimit-remaining-tokens": "lots"}) == ()
    # Only ASCII digits count: "²" passes str.isdigit() but not int(); "٣" is not ASCII.
    assert ratelimit_feedback({"x-ratelimit-remaining-tokens": "²"}) == ()
    odd = {"x-ratelimit-remaining-tokens": "5", "x-ratelimit-limit-tokens": "٣"}
    assert ratelimit_feedback(odd) == (("tokens", 5, None, None),)


@pytest.mark.parametrize(
    "configured",
    [
        "deployment.rate_limits.requests_per_minute=600",  # tightened below config
        "deployment.rate_limits.requests_per_minute=null",  # learned from the headers
    ],
)
def test_provider_headers_tighten_the_local_buckets(
    make_runtime: RuntimeFactory, configured: str
) -> None:
    # The emulator reports a 3-a-minute bucket but never refuses: only the headers can stop
    # the fourth request.
    with Emulator(requests_per_minute=3) as emu:
        rt = limited_runtime(
            make_runtime,
            emu,
            configured,
            "deployment.rate_limits.on_capacity_exhausted=reject",
            limits=RecordingLimits(FakeClock()),
        )
        for _ in range(3):
            rt.chat("hi")
        with pytest.raises(Backpressure):
            rt.chat("hi")
        assert emu.stats.requests == 3


def test_provider_headers_never_loosen_the_config(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    limits = RecordingLimits(FakeClock())
    rt = limited_runtime(
        make_runtime,
        emulator,
        "deployment.rate_limits.requests_per_minute=2",
        "deployment.rate_limits.on_capacity_exhausted=reject",
        limits=limits,
    )
    rt.chat("hi")  # the emulator says thousands remain
    assert limits.admission.levels()["requests"] == 1
    rt.chat("hi")
    with pytest.raises(Backpressure):
        rt.chat("hi")


@pytest.mark.parametrize("mode", ["queue", "reject"])
def test_a_429_pauses_the_whole_deployment(
    emulator: Emulator, make_runtime: RuntimeFactory, mode: str
) -> None:
    emulator.set_scenario({"rules": [{"fault": "rate_limit;retry_after_ms=1500", "requests": [1]}]})
    rt = limited_runtime(
        make_runtime, emulator, f"deployment.rate_limits.on_capacity_exhausted={mode}"
    )
    with pytest.raises(RateLimited):
        rt.chat("hi")
    paused_at = time.monotonic()
    if mode == "queue":
        with pytest.raises(Backpressure):
            rt.chat("hi", deadline=0.5)  # the pause outlasts this deadline: fails at once
        assert time.monotonic() - paused_at < 1.2
        assert rt.chat("hi").text  # waits the pause out, then goes
        assert time.monotonic() - paused_at >= 1.4
    else:
        with pytest.raises(Backpressure) as info:
            rt.chat("hi")
        assert info.value.retry_after is not None
        assert 0.5 < info.value.retry_after <= 1.5
    assert emulator.stats.requests == (2 if mode == "queue" else 1)


def test_disabled_rate_limits_install_nothing(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    limits = RecordingLimits()
    limited_runtime(
        make_runtime,
        emulator,
        "deployment.rate_limits.enabled=false",
        "deployment.rate_limits.requests_per_minute=1",
        limits=limits,
    ).chat("hi")
    assert limits.built == []


# --- a hostile retry-after (issue 13, item 2) --------------------------------------------


def test_a_huge_retry_after_pauses_the_deployment_for_at_most_max_pause(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    emulator.set_scenario({"rules": [{"fault": "rate_limit;retry_after=999999", "requests": [1]}]})
    limits = RecordingLimits()
    rt = limited_runtime(make_runtime, emulator, limits=limits)
    with pytest.raises(RateLimited):
        rt.chat("hi")
    paused_until = limits.admission.paused_until
    assert paused_until is not None
    assert paused_until - time.monotonic() <= 60.0  # the default max_pause, not 11.6 days


def test_max_pause_bounds_how_long_a_429_blocks_later_requests(
    emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    emulator.set_scenario({"rules": [{"fault": "rate_limit;retry_after=999999", "requests": [1]}]})
    rt = limited_runtime(make_runtime, emulator, "deployment.rate_limits.max_pause=300ms")
    with pytest.raises(RateLimited):
        rt.chat("hi")
    started = time.monotonic()
    assert rt.chat("hi").text  # queued through the (capped) pause, then sent
    assert 0.1 < time.monotonic() - started < 5.0


def test_a_huge_reset_with_nothing_remaining_is_capped_too() -> None:
    clock = FakeClock()
    queue = AdmissionQueue(clock=clock, max_pause=2.0)
    queue.observe("requests", remaining=0, limit=None, reset=1e300)
    assert queue.paused_until == pytest.approx(clock.monotonic() + 2.0)
    queue.pause(float("nan"))  # nonsense never pauses, never raises
    queue.pause(float("inf"))
    assert queue.paused_until == pytest.approx(clock.monotonic() + 2.0)
