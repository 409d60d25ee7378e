"""Per-minute counts into chart buckets, absences and gaps (core/rates.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartwatch.core.rates import Gap, bucket_step, rates

DAY = 86400


@pytest.mark.parametrize(
    ("span", "points", "step"),
    [(3600, 360, 60), (DAY, 360, 240), (7 * DAY, 360, 1680), (30 * DAY, 360, 7200)],
)
def test_the_step_is_whole_minutes_and_at_most_the_points_asked(
    span: int, points: int, step: int
) -> None:
    """A 30-day chart gets 360 buckets of two hours, never 43,200 minutes."""
    start = 1_700_000_040  # a whole minute (an unaligned one may need one minute more)
    first, got, count = bucket_step(start, start + span, points)
    assert got == step and count <= points and first == start


@settings(max_examples=200, deadline=None)
@given(since=st.floats(0, 1e10), span=st.floats(1, 40 * DAY), points=st.integers(1, 2000))
def test_buckets_always_cover_the_window(since: float, span: float, points: int) -> None:
    until = since + span
    first, step, count = bucket_step(since, until, points)
    assert step % 60 == 0 and 1 <= count <= points
    assert first <= since and first + step * count >= until


def test_a_bad_window_or_no_points_is_refused() -> None:
    with pytest.raises(ValueError, match="points"):
        bucket_step(0, 60, 0)
    with pytest.raises(ValueError, match="before since"):
        bucket_step(60, 0, 10)


def test_rates_are_per_minute_averaged_over_the_bucket() -> None:
    """Six beats a minute is 6.0 in a 5-minute bucket; a minute counted twice (stored and
    still running) adds up; every kind has a value per bucket."""
    counts = [(m * 60, "heartbeat", 6) for m in range(10)]
    counts += [(0, "heartbeat", 0), (540, "heartbeat", 6)]  # minute 9 twice: 12
    counts += [(120, "poi", 30)]
    result = rates(counts, since=0, until=600, points=2)
    assert result.step_seconds == 300 and result.times == [0, 300]
    assert result.kinds["heartbeat"] == [6.0, pytest.approx((24 + 12) / 5)]
    assert result.kinds["poi"] == [6.0, 0.0]
    assert result.gaps == []


def test_a_bucket_the_daemon_missed_is_none_and_a_half_one_is_not_halved() -> None:
    counts = [(m * 60, "heartbeat", 6) for m in range(5)]  # up for the first 5 minutes only
    result = rates(counts, since=0, until=900, points=3, absent=[(300, 750)])
    assert result.kinds["heartbeat"] == [6.0, None, 0.0]
    half = rates(
        [(0, "heartbeat", 6), (60, "heartbeat", 6)],
        since=0,
        until=240,
        points=1,
        absent=[(120, 240)],
    )
    assert half.kinds["heartbeat"] == [6.0]  # 12 beats over the 2 minutes it counted


def test_a_kind_with_a_timeout_gets_a_line_and_its_gaps_while_the_service_beat() -> None:
    """Data stopped at minute 10 while heartbeats went on until minute 30, then the service
    went silent: one gap, from the first silent minute it beat to its last beat."""
    counts = [(m * 60, "heartbeat", 6) for m in range(30)]
    counts += [(m * 60, "poi", 2) for m in range(10)]
    result = rates(counts, since=0, until=3600, points=60, timeouts={"poi": 300, "ais": 60})
    assert result.gaps == [
        Gap("ais", 0, 1800),  # configured, never came
        Gap("poi", 600, 1800),
    ]
    assert result.kinds["ais"][:3] == [0.0, 0.0, 0.0]
    short = rates(counts, since=0, until=3600, points=60, timeouts={"poi": 1500})
    assert short.gaps == []  # 20 minutes of silence is within a 25-minute timeout


def test_silence_of_a_silent_service_is_no_gap() -> None:
    """Neither data nor beats: the service was down, which the state strip tells."""
    counts = [(m * 60, "heartbeat", 6) for m in range(5)]
    counts += [(m * 60, "poi", 1) for m in range(5)]
    counts += [(3000, "heartbeat", 6), (3000, "poi", 1)]
    result = rates(counts, since=0, until=3600, points=60, timeouts={"poi": 60})
    assert result.gaps == []
