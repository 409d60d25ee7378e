"""Restart policy, liveness rules and the log throttle: pure, with explicit ``now``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartwatch.core.liveness import Liveness, LivenessRules
from heartwatch.core.policy import RestartPolicy, RestartRules
from heartwatch.core.throttle import LogThrottle


def policy(**overrides: float) -> RestartPolicy:
    settings: dict[str, float] = {
        "initial": 1.0,
        "maximum": 8.0,
        "factor": 2.0,
        "jitter": 0.0,
        "healthy_after": 60.0,
        "max_restarts": 100,
        "window": 300.0,
        **overrides,
    }
    rules = RestartRules(
        initial=settings["initial"],
        maximum=settings["maximum"],
        factor=settings["factor"],
        jitter=settings["jitter"],
        healthy_after=settings["healthy_after"],
        max_restarts=int(settings["max_restarts"]),
        window=settings["window"],
    )
    return RestartPolicy(rules, random=lambda: 1.0)


def test_backoff_first_at_once_then_doubles_up_to_the_cap() -> None:
    """Delays run 0, 1, 2, 4, 8, 8 seconds."""
    p = policy()
    delays = [p.receive_failure(float(i), healthy_since=float(i)).delay for i in range(6)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_backoff_jitter_spreads_but_respects_the_cap() -> None:
    """Jitter moves a delay by at most its fraction, and never past the maximum."""
    p = policy(jitter=0.5)  # random() == 1.0: the top of the spread
    p.receive_failure(0.0, None)
    assert p.receive_failure(1.0, None).delay == 1.5
    for now in range(2, 10):
        delay = p.receive_failure(float(now), None).delay
        assert delay is not None and delay <= 8.0


def test_backoff_resets_after_a_healthy_run() -> None:
    """A run of healthy_after seconds starts a new streak: restart at once again."""
    p = policy(healthy_after=30.0)
    p.receive_failure(0.0, 0.0)
    assert p.receive_failure(1.0, 0.5).delay == 1.0
    assert p.receive_failure(100.0, 60.0).delay == 0.0


def test_crash_loop_gives_up_after_max_restarts_in_window() -> None:
    """max_restarts restarts inside the window are allowed; the next failure gives up."""
    p = policy(max_restarts=3, window=60.0)
    assert [p.receive_failure(t, None).delay is not None for t in (0.0, 1.0, 2.0)] == [True] * 3
    decision = p.receive_failure(3.0, None)
    assert decision.delay is None and decision.restarts_in_window == 3


def test_crash_loop_window_forgets_old_restarts() -> None:
    """Restarts older than the window no longer count towards giving up."""
    p = policy(max_restarts=2, window=10.0)
    p.receive_failure(0.0, None)
    p.receive_failure(1.0, None)
    assert p.receive_failure(20.0, None).delay is not None


def test_long_streak_cannot_overflow() -> None:
    """Thousands of consecutive failures keep a finite, capped delay."""
    p = policy(max_restarts=5000, window=1.0)
    for t in range(3000):
        delay = p.receive_failure(float(t), None).delay
    assert delay == 8.0


@settings(max_examples=300)
@given(
    initial=st.floats(0.0, 100.0),
    maximum=st.floats(0.0, 1000.0),
    factor=st.floats(1.0, 10.0),
    jitter=st.floats(0.0, 1.0),
    randoms=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40),
    gaps=st.lists(st.floats(0.0, 50.0), min_size=1, max_size=40),
)
def test_backoff_stays_within_its_bounds(
    initial: float,
    maximum: float,
    factor: float,
    jitter: float,
    randoms: list[float],
    gaps: list[float],
) -> None:
    """Any streak: the first delay is 0; each later one is within ``jitter`` of
    ``initial * factor ** (n - 1)`` and never above ``maximum`` nor below 0; a healthy run
    starts a fresh streak (0 again)."""
    draws = iter(randoms * 40)
    p = RestartPolicy(
        RestartRules(initial, maximum, factor, jitter, 1000.0, max_restarts=10_000, window=1.0),
        random=lambda: next(draws),
    )
    now = 0.0
    for streak, gap in enumerate(gaps):
        now += gap
        delay = p.receive_failure(now, None).delay
        assert delay is not None
        if streak == 0:
            assert delay == 0.0
            continue
        base = initial * factor ** min(streak - 1, 64)
        assert 0.0 <= delay <= maximum
        assert delay >= min(maximum, base * (1.0 - jitter)) * (1 - 1e-9)
        assert delay <= base * (1.0 + jitter) * (1 + 1e-9)
    assert p.receive_failure(now + 2000.0, now + 1.0).delay == 0.0  # healthy for 1000 s


@settings(max_examples=300)
@given(
    max_restarts=st.integers(0, 6),
    window=st.floats(1.0, 100.0),
    gaps=st.lists(st.floats(0.0, 40.0), max_size=60),
)
def test_crash_loop_window_counts_exactly_the_restarts_inside_it(
    max_restarts: int, window: float, gaps: list[float]
) -> None:
    """A failure is given up on exactly when ``max_restarts`` restarts were already granted
    within ``window`` seconds before it; a given-up failure is not counted as a restart; so no
    window ever holds more than ``max_restarts`` restarts."""
    p = policy(max_restarts=max_restarts, window=window)
    granted: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        inside = [t for t in granted if now - t <= window]
        decision = p.receive_failure(now, None)
        if len(inside) >= max_restarts:
            assert decision.delay is None
            assert decision.restarts_in_window == len(inside)
        else:
            assert decision.delay is not None
            assert decision.restarts_in_window == len(inside) + 1
            granted.append(now)
        assert len([t for t in granted if now - t <= window]) <= max_restarts


RULES = LivenessRules(
    ready_on_message=True,
    ready_delay=0.0,
    startup_grace=100.0,
    heartbeat_timeout=10.0,
    data_timeout={"poiid": 50.0},
)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (99.9, None),
        (100.0, "no heartbeat within 1 min 40 s startup grace"),
    ],
)
def test_liveness_grace_without_any_message(now: float, expected: str | None) -> None:
    """A beating service with no message by the end of its grace is overdue."""
    live = Liveness(RULES, started_at=0.0)
    assert live.next_deadline() == 100.0
    assert live.overdue(now) == expected


def test_liveness_heartbeat_and_data_deadlines() -> None:
    """After readiness: heartbeat deadline from the last message, data deadline per kind."""
    live = Liveness(RULES, started_at=0.0)
    live.receive_message("heartbeat", 5.0)
    live.ready_at = 5.0
    assert live.next_deadline() == 15.0
    live.receive_message("poiid", 12.0)
    assert live.next_deadline() == 22.0
    assert live.overdue(22.0) == "no heartbeat for 10.0 s"
    for t in range(20, 130, 5):
        live.receive_message("heartbeat", float(t))
    assert live.overdue(125.0) == "no poiid for 1 min 53 s"


def test_liveness_data_never_received_is_named() -> None:
    """A kind that never arrived is reported relative to readiness."""
    live = Liveness(RULES, started_at=0.0, ready_at=1.0, last_seen_at=1.0)
    for t in range(5, 101, 5):
        live.receive_message("heartbeat", float(t))
    assert live.overdue(100.0) == "no poiid since it became ready 99.0 s ago"


def test_liveness_delay_ready_service_has_no_grace_failure() -> None:
    """A service that never beats is ready at its delay and never overdue for silence."""
    rules = LivenessRules(False, 60.0, 10.0, None, {})
    live = Liveness(rules, started_at=0.0)
    assert live.ready_deadline() == 60.0
    assert live.overdue(1000.0) is None


def test_log_throttle_says_it_once_then_counts() -> None:
    """One log line per interval per key, with the number suppressed in between."""
    throttle = LogThrottle(interval=10.0)
    assert throttle.admit("json", 0.0) == 0
    assert throttle.admit("json", 1.0) is None
    assert throttle.admit("json", 2.0) is None
    assert throttle.admit("other", 2.0) == 0
    assert throttle.admit("json", 10.5) == 2
