"""Host states (core/hoststates.py): pure rules, explicit times, and properties over any story."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartwatch.core.hoststates import (
    Ears,
    Hearing,
    HostAlertKind,
    HostRules,
    HostState,
    host_alert,
    host_alert_text,
    receive_message,
)

LIVE, STALE, UNREACHABLE = HostState.LIVE, HostState.STALE, HostState.UNREACHABLE
RULES = HostRules(stale_after=15.0, unreachable_after=45.0, start_grace=60.0)


@pytest.mark.parametrize(
    ("state", "silent_for", "hub_age", "expected"),
    [
        (LIVE, 0.0, 100.0, LIVE),
        (LIVE, 14.9, 100.0, LIVE),
        (LIVE, 15.0, 100.0, STALE),
        (LIVE, 45.0, 100.0, UNREACHABLE),  # a sweep that missed stale goes straight on
        (STALE, 44.9, 100.0, STALE),
        (STALE, 45.0, 100.0, UNREACHABLE),
        (STALE, 500.0, 59.9, STALE),  # within the hub's start grace: at most stale
        (STALE, 500.0, 60.0, UNREACHABLE),
        (STALE, 0.0, 100.0, STALE),  # a sweep never makes a host better
        (UNREACHABLE, 0.0, 100.0, UNREACHABLE),
        (UNREACHABLE, 500.0, 1.0, UNREACHABLE),  # grace does not undo an outage seen before
    ],
)
def test_hoststates_a_sweep_moves_silent_hosts_only_toward_worse(
    state: HostState, silent_for: float, hub_age: float, expected: HostState
) -> None:
    """The transition table of a sweep."""
    assert RULES.swept(state, silent_for, hub_age) is expected


@pytest.mark.parametrize(
    ("previous", "new", "alert"),
    [
        (LIVE, STALE, None),
        (STALE, UNREACHABLE, "unreachable"),
        (LIVE, UNREACHABLE, "unreachable"),
        (UNREACHABLE, LIVE, "back"),
        (STALE, LIVE, None),
        (UNREACHABLE, UNREACHABLE, None),
    ],
)
def test_hoststates_alerts_follow_the_changes(
    previous: HostState, new: HostState, alert: HostAlertKind | None
) -> None:
    """Unreachable and back are said; stale alone is not an outage."""
    assert host_alert(previous, new) == alert


def test_hoststates_a_message_makes_a_host_live_and_back_only_from_unreachable() -> None:
    """Any message: live; 'back' only when it was unreachable."""
    assert receive_message(UNREACHABLE) == (LIVE, "back")
    assert receive_message(STALE) == (LIVE, None)
    assert receive_message(LIVE) == (LIVE, None)


def test_hoststates_next_sweep_is_when_a_threshold_falls_due() -> None:
    """The driver may sleep until the next threshold (or the grace's end), not tick."""
    assert RULES.next_sweep_in(10.0, 100.0) == 5.0
    assert RULES.next_sweep_in(20.0, 100.0) == 25.0
    assert RULES.next_sweep_in(50.0, 30.0) == 30.0  # unreachable once the grace is over
    assert RULES.next_sweep_in(50.0, 100.0) == float("inf")


def test_hoststates_rules_refuse_thresholds_out_of_order() -> None:
    """unreachable_after must be longer than stale_after."""
    with pytest.raises(ValueError, match="stale_after < unreachable_after"):
        HostRules(stale_after=45.0, unreachable_after=15.0)


def test_hoststates_alert_texts_name_the_host() -> None:
    """Every host alert says which host."""
    assert "farm-07" in host_alert_text("farm-07", "unreachable", 46.0)
    assert "46.0 s" in host_alert_text("farm-07", "unreachable", 46.0)
    assert host_alert_text("farm-07", "back", None) == "host farm-07 is reachable again"


# A story: the hub's clock advances; at each step the host sends a message or a sweep runs.
_steps = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=40.0), st.sampled_from(["message", "sweep"])),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=_steps,
    stale=st.floats(min_value=1.0, max_value=30.0),
    extra=st.floats(min_value=1.0, max_value=60.0),
    grace=st.floats(min_value=0.0, max_value=120.0),
)
def test_hoststates_any_story_one_unreachable_per_outage_and_back_after_it(
    steps: list[tuple[float, str]], stale: float, extra: float, grace: float
) -> None:
    """Over any sequence of messages and sweeps: unreachable only past its silence and the
    grace, alerts alternate unreachable / back (one each per outage), and a sweep leaves the
    host no better than its silence says."""
    rules = HostRules(stale_after=stale, unreachable_after=stale + extra, start_grace=grace)
    now, last_message, state = 0.0, 0.0, LIVE
    alerts: list[HostAlertKind] = []
    for advance, what in steps:
        now += advance
        previous = state
        if what == "message":
            state, alert = receive_message(state)
            last_message = now
        else:
            state = rules.swept(state, now - last_message, now)
            alert = host_alert(previous, state)
            if state is UNREACHABLE and previous is not UNREACHABLE:
                assert now - last_message >= rules.unreachable_after
                assert now >= rules.start_grace
            due = rules.due(now - last_message, now)
            assert list(HostState).index(state) >= list(HostState).index(due)
        if alert is not None:
            alerts.append(alert)
    # unreachable, back, unreachable, back, ...: never two of one kind in a row
    assert all(a != b for a, b in itertools.pairwise(alerts))
    assert not alerts or alerts[0] == "unreachable"
    assert (state is UNREACHABLE) == (bool(alerts) and alerts[-1] == "unreachable")


def test_hoststates_a_hub_hears_only_connected_writing_and_caught_up() -> None:
    """Deaf: the broker away, the database failing, or a backlog stale_after old."""
    assert RULES.hears(Ears())
    assert not RULES.hears(Ears(broker=False))
    assert not RULES.hears(Ears(database=False))
    assert RULES.hears(Ears(backlog=14.9))
    assert not RULES.hears(Ears(backlog=15.0))


def test_hoststates_hearing_restarts_the_grace_when_the_hub_hears_again() -> None:
    """A database outage: deaf meanwhile (at most stale), then start_grace from its end."""
    hearing = Hearing(RULES, since=0.0)
    assert hearing.observe(100.0, Ears()) == 100.0
    assert hearing.observe(101.0, Ears(database=False)) is None
    assert RULES.swept(LIVE, 500.0, None) is STALE  # deaf: never unreachable
    assert hearing.observe(200.0, Ears()) == 0.0  # hears again: the grace starts anew
    assert RULES.swept(STALE, 500.0, hearing.observe(259.9, Ears())) is STALE
    assert RULES.swept(STALE, 500.0, hearing.observe(260.0, Ears())) is UNREACHABLE
    assert RULES.next_sweep_in(50.0, None) == float("inf")  # nothing more falls due while deaf
    assert RULES.next_sweep_in(10.0, None) == 5.0


_ears = st.builds(
    Ears,
    broker=st.booleans(),
    database=st.booleans(),
    backlog=st.floats(min_value=0.0, max_value=40.0),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=40.0), st.booleans(), _ears), max_size=80
    ),
    stale=st.floats(min_value=1.0, max_value=30.0),
    extra=st.floats(min_value=1.0, max_value=60.0),
    grace=st.floats(min_value=0.0, max_value=120.0),
)
def test_hoststates_no_host_goes_unreachable_unless_heard_through_the_grace(
    steps: list[tuple[float, bool, Ears]], stale: float, extra: float, grace: float
) -> None:
    """Over any story of the hub's hearing (broker, database, backlog) and a host's messages:
    a host is made unreachable only when the hub has heard without a break for start_grace
    and the host has been silent unreachable_after."""
    rules = HostRules(stale_after=stale, unreachable_after=stale + extra, start_grace=grace)
    hearing = Hearing(rules, since=0.0)
    now, last_message, state = 0.0, 0.0, LIVE
    heard_since: float | None = 0.0  # the story's own account of since when it hears
    for advance, message, ears in steps:
        now += advance
        if message:
            state, _ = receive_message(state)
            last_message = now
        deaf = not ears.broker or not ears.database or ears.backlog >= stale
        heard_since = None if deaf else (now if heard_since is None else heard_since)
        previous = state
        state = rules.swept(state, now - last_message, hearing.observe(now, ears))
        if state is UNREACHABLE and previous is not UNREACHABLE:
            assert heard_since is not None and now - heard_since >= grace
            assert now - last_message >= rules.unreachable_after
