from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from rakka_runtime.config.durations import (
    Duration,
    PositiveDuration,
    format_duration,
    parse_duration,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("0", 0.0),
        ("30", 30.0),
        ("1.25", 1.25),
        ("1e3", 1000.0),
        (" 10s ", 10.0),
        (30, 30.0),
        (2.5, 2.5),
        # Go time.Duration text, as sent in x-ratelimit-reset-* headers.
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("7.66s", 7.66),
        ("1m30.5s", 90.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("100ns", 1e-7),
        ("0s", 0.0),
    ],
)
def test_parse_duration_accepts(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["5 parsecs", "", "s", "1x", "10 s", "1h-2m", "inf", "nan", "1_000", "ms5", "1.2.3s", "--1"],
)
def test_parse_duration_rejects_garbage_and_says_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)
    assert "30s, 500ms, 2m" in str(info.value)


@pytest.mark.parametrize("value", ["-1s", "-5", -1, -0.5, "-1h2m"])
def test_parse_duration_rejects_negatives(value: str | float) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(value)


def test_parse_duration_rejects_bool() -> None:
    # True is an int in Python; "timeout: true" must not mean one second.
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(True)


class _Model(BaseModel):
    wait: Duration
    timeout: PositiveDuration = 1.0


def test_duration_field_converts_and_reports_the_value() -> None:
    assert _Model(wait="2m").wait == 120.0
    with pytest.raises(ValidationError) as info:
        _Model(wait="soon")
    error = info.value.errors()[0]
    assert error["type"] == "duration"
    assert error["msg"] == "'soon' is not a duration (use 30s, 500ms, 2m or a number of seconds)"


def test_positive_duration_rejects_zero() -> None:
    with pytest.raises(ValidationError, match=r"'0s' is not more than 0"):
        _Model(wait=0, timeout="0s")


@given(st.integers(min_value=0, max_value=10**9))
def test_format_duration_round_trips_milliseconds(ms: int) -> None:
    seconds = ms / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@given(
    st.integers(min_value=0, max_value=99),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=59_999),
)
def test_go_compound_equals_sum_of_parts(h: int, m: int, ms: int) -> None:
    text = f"{h}h{m}m{ms / 1000}s"
    assert parse_duration(text) == pytest.approx(h * 3600 + m * 60 + ms / 1000)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "500ms"), (90, "90s"), (120, "2m"), (3600, "1h"), (5400.5, "5400.5s")],
)
def test_format_duration_is_short(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
