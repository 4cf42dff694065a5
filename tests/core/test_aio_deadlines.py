"""The asyncio driver's shared timer: a wait whose time is up is cut and told so, a cancel
from elsewhere stays a cancel, and one loop timer serves every armed wait."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time

from rakka_runtime.drivers.aio_deadlines import Deadlines


async def _wait(deadlines: Deadlines, due_in: float, forever: asyncio.Future[None]) -> str:
    """Wait on ``forever`` with a due time; how the wait ended."""
    task = asyncio.current_task()
    assert task is not None
    deadlines.arm(task, time.monotonic() + due_in)
    try:
        await forever
    except asyncio.CancelledError:
        if deadlines.leave(task) is not None:
            return "timed out"
        raise
    return "timed out" if deadlines.leave(task) is not None else "done"


def test_a_wait_past_its_time_is_cut_and_told_so() -> None:
    async def main() -> tuple[str, float, int]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop)
        started = time.monotonic()
        outcome = await _wait(deadlines, 0.05, loop.create_future())
        task = asyncio.current_task()
        assert task is not None
        return outcome, time.monotonic() - started, task.cancelling()

    outcome, elapsed, cancelling = asyncio.run(main())
    assert outcome == "timed out"
    assert 0.04 <= elapsed < 1.0
    assert cancelling == 0  # the cancel was withdrawn: the task goes on normally


def test_a_wait_that_ends_in_time_is_not_cut() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop)
        done = loop.create_future()
        loop.call_later(0.01, done.set_result, None)
        outcome = await _wait(deadlines, 0.2, done)
        await asyncio.sleep(0.3)  # past the old due time: nothing fires at a task that left
        return outcome

    assert asyncio.run(main()) == "done"


def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        waiter = loop.create_task(_wait(Deadlines(loop), 10.0, loop.create_future()))
        await asyncio.sleep(0)  # armed, waiting
        waiter.cancel()
        try:
            return await waiter
        except asyncio.CancelledError:
            return "cancelled"

    assert asyncio.run(main()) == "cancelled"


def test_a_cancel_from_elsewhere_wins_over_a_time_up_at_the_same_moment() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        waiter = loop.create_task(_wait(Deadlines(loop), 0.02, loop.create_future()))
        await asyncio.sleep(0)  # the waiter arms and waits
        time.sleep(0.05)  # the loop is held past the due time: the timer is due ...
        await asyncio.sleep(0)  # ... and fires right after this step, in the same turn,
        waiter.cancel()  # so both cancels reach the waiter before it runs again
        try:
            return await waiter
        except asyncio.CancelledError:
            return "cancelled"

    assert asyncio.run(main()) == "cancelled"


def test_many_waits_share_one_timer_and_each_is_cut_at_its_own_time() -> None:
    count = 500

    async def main() -> tuple[list[str], list[float], int]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop)
        started = time.monotonic()
        timers_before = len(loop._scheduled)  # type: ignore[attr-defined]
        ended: list[float] = [0.0] * count

        async def one(i: int) -> str:
            outcome = await _wait(deadlines, 0.05 + 0.1 * (i % 3), loop.create_future())
            ended[i] = time.monotonic() - started - (0.05 + 0.1 * (i % 3))
            return outcome

        tasks = [loop.create_task(one(i)) for i in range(count)]
        await asyncio.sleep(0)
        armed_timers = len(loop._scheduled) - timers_before  # type: ignore[attr-defined]
        outcomes = await asyncio.gather(*tasks)
        return outcomes, ended, armed_timers

    outcomes, lateness, armed_timers = asyncio.run(main())
    assert outcomes == ["timed out"] * count
    assert armed_timers <= 2  # one live timer (plus at most one cancelled, left in the heap)
    assert min(lateness) >= -0.01 and max(lateness) < 0.5


def _busy_wait(
    blocks: list[tuple[float, float]], answer_at: float | None = None, cap: float = math.inf
) -> tuple[str, float | None, float]:
    """One wait due 50 ms after it starts, on a loop kept busy ``(from, for)`` seconds
    after the start, answered ``answer_at`` seconds after the start (or never). Returns
    how it ended, the lateness :meth:`Deadlines.leave` reported, and when it ended."""

    async def main() -> tuple[str, float | None, float]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop)
        task = asyncio.current_task()
        assert task is not None
        started = time.monotonic()
        deadlines.arm(task, started + 0.05, started + cap)
        for at, seconds in blocks:
            loop.call_later(at, time.sleep, seconds)  # the loop is busy, the timer waits
        answer = loop.create_future()
        if answer_at is not None:
            loop.call_later(answer_at, answer.set_result, None)
        try:
            await answer
        except asyncio.CancelledError:
            return "cut", deadlines.leave(task), time.monotonic() - started
        return "answered", deadlines.leave(task), time.monotonic() - started

    return asyncio.run(main())


def test_a_wait_the_loop_could_not_watch_gets_that_time_back() -> None:
    # Busy from 0 to 0.4 s: the timer runs 0.35 s late, so the wait may go on to about
    # 0.75 s, and the answer at 0.6 s reaches it. A timer on time cuts at 50 ms.
    assert _busy_wait([(0.0, 0.4)], answer_at=0.6)[:2] == ("answered", None)
    how, late, ended = _busy_wait([], answer_at=0.6)
    assert how == "cut" and late is not None and late < 0.2 and ended < 0.3


def test_after_its_grace_a_wait_is_cut_and_told_how_late() -> None:
    # Never answered: cut when the grace ends, on time (the server is to blame)...
    how, late, ended = _busy_wait([(0.0, 0.4)])
    assert how == "cut" and late is not None and late < 0.2 and 0.65 <= ended < 1.5
    # ...or, when the loop is busy again past the grace too, told how late (it was not).
    how, late, ended = _busy_wait([(0.0, 0.4), (0.45, 0.9)])
    assert how == "cut" and late is not None and late >= 0.4


def test_the_grace_never_passes_the_cap() -> None:
    # The deadline (the cap) is 0.1 s away: a timer 0.35 s late cuts at once.
    how, late, ended = _busy_wait([(0.0, 0.4)], answer_at=0.6, cap=0.1)
    assert how == "cut" and late is not None and late >= 0.3 and ended < 0.55


def test_bytes_that_came_while_the_loop_was_busy_win_over_the_timer() -> None:
    # The loop is busy from before the due time until after the bytes came: the bytes and
    # the timer are ready in the same pass. The wait gets the bytes; it is not cut.
    async def main() -> tuple[str, bytes]:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            reader, writer = await asyncio.open_connection(sock=ours)
            deadlines = Deadlines(loop)
            task = asyncio.current_task()
            assert task is not None
            deadlines.arm(task, time.monotonic() + 0.05)
            loop.call_soon(time.sleep, 0.4)  # busy past the due time
            threading.Timer(0.15, theirs.sendall, args=(b"late but there",)).start()
            try:
                data = await reader.read(100)
            except asyncio.CancelledError:
                deadlines.leave(task)
                return "timed out", b""
            outcome = "timed out" if deadlines.leave(task) is not None else "done"
            writer.close()
            return outcome, data
        finally:
            theirs.close()

    assert asyncio.run(main()) == ("done", b"late but there")
