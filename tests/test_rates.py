"""Per-minute counts into chart buckets, absences and gaps (core/rates.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartwatch.core.rates import Gap, bucket_step, chart, gaps, rates
from heartwatch.store import MinuteCount
from heartwatch.store.sqlite import SQLiteHistory

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


def _store_rates(
    counts: list[tuple[int, str, int]],
    since: float,
    until: float,
    points: int,
    timeouts: dict[str, float],
) -> tuple[dict[str, list[float | None]], list[Gap]]:
    """The daemon's way: sums and silences found by the store, then the same arithmetic."""
    store = SQLiteHistory(":memory:")
    store.add_counts([MinuteCount(m, "c", kind, n) for m, kind, n in counts])
    store.add_counts([MinuteCount(m, "other", "heartbeat", 1) for m in range(0, 7200, 60)])
    first, step, count = bucket_step(since, until, points)
    totals = store.count_buckets(service="c", first=first, step=step, until=until)
    silences = [
        s
        for kind, timeout in timeouts.items()
        for s in store.silences(
            service="c", kind=kind, first=first, until=until, longer_than=timeout, limit=100
        )
    ]
    lines = chart(
        totals,
        first=first,
        step=step,
        count=count,
        since=since,
        until=until,
        kinds=timeouts,
    )
    return lines, gaps(silences, timeouts, since, until)


@settings(max_examples=120, deadline=None)
@given(
    minutes=st.lists(
        st.tuples(st.integers(0, 119), st.sampled_from(["heartbeat", "poi", "ais"])),
        max_size=150,
    ),
    since=st.integers(0, 3600),
    span=st.integers(60, 4000),
    points=st.integers(1, 80),
    timeout=st.sampled_from([30.0, 120.0, 600.0]),
)
def test_the_store_sums_and_silences_give_what_the_minutes_give(
    minutes: list[tuple[int, str]], since: int, span: int, points: int, timeout: float
) -> None:
    """SQL sums and window-function silences, then chart and gaps: the same answer as the
    plain per-minute arithmetic, for any counts."""
    counts = [(m * 60, kind, 1 + m % 3) for m, kind in minutes]
    timeouts = {"poi": timeout, "ais": timeout * 2}
    until = since + span
    expected = rates(counts, since=since, until=until, points=points, timeouts=timeouts)
    lines, found = _store_rates(counts, since, until, points, timeouts)
    assert lines == expected.kinds
    assert found == expected.gaps


def test_the_minute_still_running_ends_a_silence_or_extends_it() -> None:
    """The recorder adds the current minute (not stored yet) to the store's sums and to the
    open silence after a kind's last stored event."""
    import asyncio

    from heartwatch.daemon.recorder import Recorder

    totals: dict[str, tuple[int, dict[str, int]]] = {"c": (0, {})}

    async def main() -> tuple[list[Gap], list[Gap], dict[str, list[float | None]]]:
        store = SQLiteHistory(":memory:")
        store.add_counts([MinuteCount(m, "c", "heartbeat", 6) for m in range(0, 1200, 60)])
        store.add_counts([MinuteCount(m, "c", "poi", 1) for m in range(0, 300, 60)])
        recorder = Recorder(store, lambda: totals, retention=DAY, clock=lambda: 1230.0)
        first, step, count = bucket_step(0, 1260, 21)
        timeouts = {"poi": 120.0}

        async def read() -> tuple[list[Gap], dict[str, list[float | None]]]:
            sums, silences = await recorder.rate_inputs(
                service="c", first=first, step=step, until=1260, timeouts=timeouts
            )
            lines = chart(sums, first=first, step=step, count=count, since=0, until=1260)
            return gaps(silences, timeouts, 0, 1260), lines

        totals["c"] = (6, {})  # beats, no poi yet: the silence goes on into this minute
        going, _ = await read()
        totals["c"] = (8, {"poi": 2})  # poi again in the minute still running
        ended, lines = await read()
        await recorder.close()
        return going, ended, lines

    going, ended, lines = asyncio.run(main())
    assert going == [Gap("poi", 300, 1260)]
    assert ended == [Gap("poi", 300, 1200)]
    assert lines["poi"][-1] == 2.0 and lines["heartbeat"][-1] == 6.0
