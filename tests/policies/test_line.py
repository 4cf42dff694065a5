"""The line's bookkeeping and wake-ups agree with walking it: what is ahead of each waiter
after any joins and leaves, whom a lower level or a pause wakes, and how many a grant lets
ask at once. Property tests over random lines."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from rakka_runtime.policies.line import Level, Line, Waiter, eta

NOW = 1_000.0

waiters = st.lists(
    st.tuples(st.integers(0, 3_000), st.floats(NOW, NOW + 120)), min_size=1, max_size=12
)
levels = st.lists(
    st.tuples(
        st.sampled_from(["requests", "tokens"]),
        st.floats(-500, 5_000),
        st.floats(1, 5_000),
    ),
    min_size=0,
    max_size=2,
    unique_by=lambda level: level[0],
).map(lambda rows: [(dim, level, capacity, capacity / 60.0) for dim, level, capacity in rows])


def demand(waiters: list[Waiter]) -> tuple[int, int]:
    return len(waiters), sum(w.tokens for w in waiters)


def line_of(rows: list[tuple[int, float]]) -> tuple[Line, list[Waiter]]:
    line = Line()
    return line, [line.join(tokens, limit) for tokens, limit in rows]


@given(waiters, levels, st.floats(NOW - 1, NOW + 60))
@example([(10, NOW + 60), (3_000, NOW + 1)], [("tokens", 2_000.0, 1_000.0, 1_000 / 60)], NOW)
def test_a_lower_level_or_pause_wakes_the_head_and_exactly_those_out_of_reach(
    rows: list[tuple[int, float]], buckets: list[Level], paused_until: float
) -> None:
    line, joined = line_of(rows)
    versions = [w.woken.version for w in joined]
    line.wake_unreachable(buckets, NOW, paused_until)
    for index, waiter in enumerate(joined):
        at, _ = eta(buckets, demand(joined[:index]), waiter.tokens, NOW)
        out_of_reach = max(at, paused_until) > waiter.limit
        woken = waiter.woken.version != versions[index]
        assert woken == (index == 0 or out_of_reach), (index, at, waiter.limit)


@given(waiters, levels, st.integers(0, 15))
# One larger than a whole bucket fits a full one (else it would never be admitted).
@example([(3_000, NOW + 60)], [("tokens", 2_000.0, 1_000.0, 1_000 / 60)], 1)
def test_a_grant_wakes_the_waiters_that_fit_now_one_after_another(
    rows: list[tuple[int, float]], buckets: list[Level], room: int
) -> None:
    line, joined = line_of(rows)
    count = line.fitting(buckets, room)
    assert count <= room
    for index, waiter in enumerate(joined[:count]):
        at, _ = eta(buckets, demand(joined[:index]), waiter.tokens, NOW)
        assert at <= NOW, (index, at)
    if count < min(room, len(joined)):
        at, _ = eta(buckets, demand(joined[:count]), joined[count].tokens, NOW)
        assert at > NOW


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3_000), st.integers(0, 50)), max_size=60))
def test_what_is_ahead_of_each_waiter_after_any_joins_and_leaves(
    moves: list[tuple[bool, int, int]],
) -> None:
    """Joins, the head leaving (admitted) and others leaving from anywhere (cancelled):
    the running totals always say what walking the line says."""
    line = Line()
    waiting: list[Waiter] = []
    for join, tokens, pick in moves:
        if join or not waiting:
            waiting.append(line.join(tokens, NOW + 60))
        else:
            leaving = waiting.pop(0 if pick % 2 else pick % len(waiting))
            line.leave(leaving)
            line.leave(leaving)  # twice: the second changes nothing
        assert line.demand() == demand(waiting)
        for index, waiter in enumerate(waiting):
            assert line.ahead(waiter) == demand(waiting[:index]), index
    assert list(line) == waiting
