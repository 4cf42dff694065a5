"""Rate limits shared through a real Redis: the local rules, held across processes.

Each ``SharedAdmission`` built here stands for one process (they share nothing but Redis);
where a process must really die, a child process holds the capacity and is killed.
Time is real (Redis's clock decides refills), so amounts are checked with a tolerance of
the refill that can happen meanwhile.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from redis_support import RedisServer, redis_overrides

from rakka_provider_openai.emulator import Emulator
from rakka_runtime.config.schema import RateLimitPolicy
from rakka_runtime.config.validation import validate
from rakka_runtime.errors import Backpressure, RateLimited
from rakka_runtime.plugins import BUILTIN_PLUGINS, PluginHooks, make_plugin_manager
from rakka_runtime.policies.shared.redis_admission import SharedAdmission, SharedGrant
from rakka_testing import RuntimeFactory, count_calls


def replica(server: RedisServer, prefix: str, **limits: Any) -> SharedAdmission:
    """One process's view of deployment ``d``'s shared limits."""
    redis = {"url": server.url, "key_prefix": prefix, **limits.pop("redis", {})}
    policy = validate(RateLimitPolicy, {"backend": "redis", "redis": redis, **limits})
    return SharedAdmission.from_policy("d", policy)


# --- buckets -------------------------------------------------------------------------------


def test_one_bucket_for_every_process_refilling_continuously(
    redis_server: RedisServer, prefix: str
) -> None:
    a = replica(redis_server, prefix, requests_per_minute=60)
    b = replica(redis_server, prefix, requests_per_minute=60)
    for _ in range(60):  # a full minute's worth may burst, taken by one process
        a.release(a.admit(0, wait=False), requests_used=1, tokens_used=0)
    with pytest.raises(Backpressure) as info:
        b.admit(0, wait=False)  # the other process finds it empty
    assert info.value.retry_after == pytest.approx(1.0, abs=0.1)  # one a second
    time.sleep(0.5)
    with pytest.raises(Backpressure) as info:
        b.admit(0, wait=False)
    assert info.value.retry_after == pytest.approx(0.5, abs=0.15)  # refilled meanwhile
    time.sleep(info.value.retry_after or 0)
    b.admit(0, wait=False)  # a fixed window would wait for the minute to turn
    assert a.levels()["requests"] == pytest.approx(0.0, abs=0.2)


def test_reserve_then_reconcile_refunds_and_charges_in_the_shared_bucket(
    redis_server: RedisServer, prefix: str
) -> None:
    # 600 a minute: 10 tokens a second of refill blur the arithmetic at most that much.
    a = replica(redis_server, prefix, tokens_per_minute=600)
    b = replica(redis_server, prefix, tokens_per_minute=600)
    grant = a.admit(300, wait=False)
    assert b.levels()["tokens"] == pytest.approx(300, abs=5)  # reserved up front
    a.release(grant, requests_used=1, tokens_used=100)
    assert b.levels()["tokens"] == pytest.approx(500, abs=8)  # the unused 200 came back
    b.release(b.admit(100, wait=False), requests_used=1, tokens_used=250)
    assert a.levels()["tokens"] == pytest.approx(250, abs=10)  # 150 beyond it charged


def test_request_larger_than_the_bucket_waits_for_a_full_bucket_and_leaves_a_debt(
    redis_server: RedisServer, prefix: str
) -> None:
    a = replica(redis_server, prefix, tokens_per_minute=600)
    b = replica(redis_server, prefix, tokens_per_minute=600)
    a.admit(1000, wait=False)
    assert b.levels()["tokens"] == pytest.approx(-400, abs=2)
    with pytest.raises(Backpressure) as info:
        b.admit(1, wait=False)
    assert info.value.retry_after == pytest.approx(401 / 10, abs=0.3)


def test_a_wait_beyond_the_deadline_fails_at_once(redis_server: RedisServer, prefix: str) -> None:
    a = replica(redis_server, prefix, requests_per_minute=1)
    b = replica(redis_server, prefix, requests_per_minute=1)
    a.admit(0)
    started = time.monotonic()
    with pytest.raises(Backpressure) as info:
        b.admit(0, deadline=started + 2.0)  # the next one is a minute away
    assert time.monotonic() - started < 0.5
    assert info.value.retry_after == pytest.approx(60, abs=1)
    assert b.waiting == 0


def test_waiters_of_one_process_keep_their_order(redis_server: RedisServer, prefix: str) -> None:
    # 100 tokens a second, emptied by another process: "big" needs 0.8 s of refill.
    # "small" would fit long before that but arrived later, so it must not overtake; nor
    # may "medium" (0.1 s of refill on its own). Once big is granted the others may be
    # granted with it, so what is checked is when each was admitted, not which thread
    # appended first (threads granted together return in any order).
    other = replica(redis_server, prefix, tokens_per_minute=6000)
    queue = replica(redis_server, prefix, tokens_per_minute=6000)
    emptied = time.monotonic()
    other.admit(6000, wait=False)
    plan = [("big", 80), ("small", 1), ("medium", 10)]
    admitted_after: dict[str, float] = {}

    def waiter(index: int) -> None:
        name, tokens = plan[index]
        queue.admit(tokens, deadline=time.monotonic() + 5)
        admitted_after[name] = time.monotonic() - emptied

    threads = []
    for index in range(len(plan)):
        thread = threading.Thread(target=waiter, args=(index,))
        thread.start()
        threads.append(thread)
        end = time.monotonic() + 5
        while queue.waiting != index + 1:  # arrival order is fixed
            assert time.monotonic() < end
            time.sleep(0.002)
    for thread in threads:
        thread.join(5)
    assert set(admitted_after) == {"big", "small", "medium"}
    # Nobody before big's 80 tokens had refilled; medium's 10 come on top of them.
    assert min(admitted_after.values()) >= 0.75, admitted_after
    assert admitted_after["medium"] >= 0.85, admitted_after


def test_a_waiter_asking_beside_the_head_is_not_granted_ahead_of_it(
    redis_server: RedisServer, prefix: str
) -> None:
    # The moment the old order defect lived in: "small" asks Redis beside the head ("big",
    # whose first answer has not come back) because the levels this process last saw say
    # both fit. Another process emptied the bucket meanwhile, so big is refused, and small
    # must be refused too rather than granted past it, though what is left (about 5 tokens)
    # would fit it. On one loop the two asks interleave the same way every time: big sends
    # first, small's step runs while big awaits.
    other = replica(redis_server, prefix, tokens_per_minute=6000)
    queue = replica(redis_server, prefix, tokens_per_minute=6000)
    queue.release(queue.admit(1, wait=False), requests_used=1, tokens_used=1)  # levels: full
    other.admit(5995, wait=False)

    async def both() -> list[Any]:
        deadline = time.monotonic() + 5
        return list(
            await asyncio.gather(
                queue.areserve(80, deadline=deadline), queue.areserve(1, deadline=deadline)
            )
        )

    big, small = asyncio.run(both())
    assert not isinstance(big, SharedGrant)
    assert not isinstance(small, SharedGrant), "small was granted ahead of big"
    assert queue.waiting == 2


# --- the 429 pause and provider headers -----------------------------------------------------


def test_a_429_in_one_process_pauses_all(redis_server: RedisServer, prefix: str) -> None:
    a = replica(redis_server, prefix)
    b = replica(redis_server, prefix)
    a.pause(1.0)
    with pytest.raises(Backpressure) as info:
        b.admit(0, wait=False)
    assert info.value.retry_after == pytest.approx(1.0, abs=0.15)
    assert "paused" in str(info.value)
    started = time.monotonic()
    b.admit(0, deadline=started + 3)  # waits the pause out
    assert 0.7 < time.monotonic() - started < 2.0


def test_a_huge_retry_after_pauses_the_fleet_for_at_most_max_pause(
    redis_server: RedisServer, prefix: str, emulator: Emulator, make_runtime: RuntimeFactory
) -> None:
    emulator.set_scenario({"rules": [{"fault": "rate_limit;retry_after=999999", "requests": [1]}]})
    pm = make_plugin_manager(disabled=set(BUILTIN_PLUGINS) - {"rate_limits"})
    rt = make_runtime(
        emulator,
        *redis_overrides(redis_server.url, prefix),
        "deployment.rate_limits.max_pause=2s",
        hooks=PluginHooks(pm),
    )
    with pytest.raises(RateLimited):
        rt.chat("hi")
    policy = {"backend": "redis", "redis": {"url": redis_server.url, "key_prefix": prefix}}
    fresh = SharedAdmission.from_policy("openai", validate(RateLimitPolicy, policy))
    paused, _, _ = fresh._store.call(fresh._redis.peek([]))
    assert 0.5 < paused <= 2.0  # stored fleet-wide, but capped: not 11.6 days
    fresh.close()


def test_a_longer_pause_already_in_redis_is_cut_to_max_pause(
    redis_server: RedisServer, prefix: str
) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros / 1000
    # Written by a process with no cap (an older version): 11.6 days from now.
    client.set(f"{prefix}:{{rl:d}}:pause", repr(now_ms + 999_999_000.0))
    client.close()
    fresh = replica(redis_server, prefix, max_pause="500ms")
    started = time.monotonic()
    fresh.admit(0, deadline=started + 5)
    assert time.monotonic() - started < 2.0
    fresh.close()


def test_provider_headers_lower_the_shared_bucket(redis_server: RedisServer, prefix: str) -> None:
    a = replica(redis_server, prefix, requests_per_minute=100)
    b = replica(redis_server, prefix, requests_per_minute=100)
    a.observe("requests", remaining=3, limit=None, reset=None)
    assert b.levels()["requests"] == pytest.approx(3, abs=0.1)
    a.observe("requests", remaining=50, limit=None, reset=None)  # never raised
    assert b.levels()["requests"] == pytest.approx(3, abs=0.1)
    a.observe("tokens", remaining=5, limit=1000, reset=None)  # an unset dimension is learned
    assert a.levels()["tokens"] == pytest.approx(5, abs=0.5)


# --- concurrency slots ---------------------------------------------------------------------


def test_concurrency_slots_are_counted_across_processes(
    redis_server: RedisServer, prefix: str
) -> None:
    a = replica(redis_server, prefix, concurrent_requests=2)
    b = replica(redis_server, prefix, concurrent_requests=2)
    held = [a.admit(0, wait=False), a.admit(0, wait=False)]
    assert b.slots_in_use() == 2
    with pytest.raises(Backpressure, match="concurrent"):
        b.admit(0, wait=False)
    threading.Timer(0.3, lambda: a.release(held[0], requests_used=1, tokens_used=0)).start()
    started = time.monotonic()
    grant = b.admit(0, deadline=started + 3)  # a slot another process frees is seen by polling
    waited = time.monotonic() - started
    assert 0.25 < waited < 1.0
    a.release(held[1], requests_used=1, tokens_used=0)
    b.release(grant, requests_used=1, tokens_used=0)
    assert a.slots_in_use() == 0


CHILD = textwrap.dedent(
    """
    import sys, time
    from rakka_runtime.config.schema import RateLimitPolicy
    from rakka_runtime.config.validation import validate
    from rakka_runtime.policies.shared.redis_admission import SharedAdmission
    policy = validate(RateLimitPolicy, dict(
        backend="redis", concurrent_requests=1,
        redis={"url": sys.argv[1], "key_prefix": sys.argv[2], "lease": "600ms"},
    ))
    SharedAdmission.from_policy("d", policy).admit(0, wait=False)
    print("held", flush=True)
    time.sleep(60)
    """
)


def test_a_dead_process_frees_its_slot_when_its_lease_expires(
    redis_server: RedisServer, prefix: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, redis_server.url, prefix],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        mine = replica(redis_server, prefix, concurrent_requests=1, redis={"lease": "600ms"})
        time.sleep(1.5)  # well past one lease: the live child kept renewing it
        with pytest.raises(Backpressure):
            mine.admit(0, wait=False)
        child.kill()
        child.wait(10)
        killed = time.monotonic()
        grant = mine.admit(0, deadline=killed + 5)
        assert time.monotonic() - killed < 1.2  # at most one lease (0.6 s) plus polling
        mine.release(grant, requests_used=1, tokens_used=0)
    finally:
        child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()


# --- through the runtime -------------------------------------------------------------------


def test_two_runtimes_share_one_request_quota(
    redis_server: RedisServer,
    prefix: str,
    emulator: Emulator,
    make_runtime: RuntimeFactory,
) -> None:
    def runtime() -> Any:
        pm = make_plugin_manager(disabled=set(BUILTIN_PLUGINS) - {"rate_limits"})
        return make_runtime(
            emulator,
            "deployment.retry.enabled=false",
            "deployment.rate_limits.requests_per_minute=2",
            "deployment.rate_limits.on_capacity_exhausted=reject",
            *redis_overrides(redis_server.url, prefix),
            hooks=PluginHooks(pm),
        )

    first, second = runtime(), runtime()
    first.chat("hi")
    second.chat("hi")
    with pytest.raises(Backpressure) as info:
        first.chat("hi")  # local limits would each have allowed 2
    assert info.value.retry_after == pytest.approx(30, abs=1)
    with pytest.raises(Backpressure):
        second.chat("hi")
    assert emulator.stats.requests == 2


# --- asyncio: the same steps on redis-py's asyncio client ----------------------------------


def test_hundreds_of_asyncio_reservations_at_once_share_without_refusal(
    redis_server: RedisServer, prefix: str
) -> None:
    """300 reservations in one event loop at once: with capacity to spare they ask Redis
    side by side (none waits for the others' round trips), all are granted in Redis (none
    falls back: redis-py's default asyncio pool refused the 101st call at once, which
    counted as Redis down), and the releases give every token back."""
    # Long timeouts: on a loaded machine the loop itself may take longer than the default
    # 250 ms to open 300 connections or read 300 replies (CI once timed out connecting),
    # which is not what this test is about.
    limits: dict[str, Any] = {
        "requests_per_minute": 1_000,
        "tokens_per_minute": 100_000,
        "redis": {"socket_timeout": "5s", "socket_connect_timeout": "5s"},
    }
    a = replica(redis_server, prefix, **limits)
    other = replica(redis_server, prefix, **limits)

    async def main() -> list[SharedGrant]:
        try:
            steps = await asyncio.gather(*(a.areserve(10) for _ in range(300)))
            grants = [s for s in steps if isinstance(s, SharedGrant)]
            assert len(grants) == 300, f"{300 - len(grants)} waited in line"
            assert a.shared, "the asyncio client counted Redis as down"
            assert all(g.local is None for g in grants)
            await asyncio.gather(*(a.arelease(g, requests_used=1, tokens_used=0) for g in grants))
            return grants
        finally:
            await a.aclose()

    asyncio.run(main())
    assert a.in_flight == 0
    levels = other.levels()  # another process sees the requests spent, the tokens back
    assert 700 <= levels["requests"] < 760  # 300 spent (and a few seconds' refill at most)
    assert levels["tokens"] == pytest.approx(100_000, abs=1)  # 3,000 reserved, all refunded
    a.close()
    other.close()


@pytest.mark.parametrize("driver", ["thread", "async"])
def test_a_release_wakes_the_head_of_a_shared_line_not_everyone(
    redis_server: RedisServer, prefix: str, driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 requests of one process behind one shared slot: each release wakes the head of
    the line (it asks Redis), not all 40 (each asked only to find it was not the head)."""
    a = replica(redis_server, prefix, concurrent_requests=1, requests_per_minute=100_000)
    steps = count_calls(monkeypatch, a, "_step")

    def one_thread() -> None:
        grant = a.admit(10, deadline=time.monotonic() + 20)
        time.sleep(0.005)
        a.release(grant, requests_used=1, tokens_used=10)

    async def one_task() -> None:
        step: Any = None
        waiter = None
        while True:
            step = await a.areserve(10, waiter=waiter, deadline=time.monotonic() + 20)
            if isinstance(step, SharedGrant):
                break
            waiter = step.waiter
            assert step.wait.notifier is not None
            await step.wait.notifier.wait_async(step.wait.seen, step.wait.seconds)
        await asyncio.sleep(0.005)
        await a.arelease(step, requests_used=1, tokens_used=10)

    async def tasks() -> None:
        try:
            await asyncio.gather(*(one_task() for _ in range(40)))
        finally:
            await a.aclose()

    if driver == "thread":
        threads = [threading.Thread(target=one_thread) for _ in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    else:
        asyncio.run(tasks())
    assert a.in_flight == 0 and a.waiting == 0
    # Per request: an ask on arrival, one when it becomes the head, one granted, and the
    # head's polls for the slot (every 20 ms; each holder keeps it about 5 ms).
    assert steps.count <= 5 * 40, f"{steps.count} steps for 40 requests"
    a.close()
