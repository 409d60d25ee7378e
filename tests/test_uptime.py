"""Segments, uptime, incidents and time to recover, from fixed journals (core/uptime.py), and
the store query that feeds them (from early enough to know the state at the window's start)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartwatch.core.journal import JournalEntry
from heartwatch.core.uptime import History, service_history
from heartwatch.store.sqlite import SQLiteHistory


class Journal:
    """Fixed journals: entries numbered in the order written."""

    def __init__(self) -> None:
        self.entries: list[JournalEntry] = []
        self._ids = itertools.count(1)

    def started(self, at: float) -> JournalEntry:
        return self._add(
            JournalEntry(next(self._ids), at, "daemon", None, "heartwatch started (pid 7)")
        )

    def stopping(self, at: float) -> JournalEntry:
        return self._add(JournalEntry(next(self._ids), at, "daemon", None, "heartwatch stopping"))

    def to(
        self,
        at: float,
        state: str,
        reason: str = "",
        *,
        service: str = "c",
        failure: bool = False,
        down_since: float | None = None,
    ) -> JournalEntry:
        detail: dict[str, Any] = {}
        if failure:
            detail["failure"] = True
        if down_since is not None:
            detail["down_since"] = down_since
        previous = next(
            (e.state for e in reversed(self.entries) if e.service == service and e.state), None
        )
        entry = JournalEntry(
            next(self._ids),
            at,
            "transition",
            service,
            reason or f"to {state}",
            state,
            previous or "stopped",
            detail or None,
        )
        return self._add(entry)

    def other(self, at: float, kind: str = "exit", service: str = "c") -> JournalEntry:
        return self._add(JournalEntry(next(self._ids), at, kind, service, "exit code 1"))  # type: ignore[arg-type]

    def _add(self, entry: JournalEntry) -> JournalEntry:
        self.entries.append(entry)
        return entry

    def history(self, since: float, until: float, **kwargs: Any) -> History:
        return service_history(self.entries, service="c", since=since, until=until, **kwargs)


def spans(history: History) -> list[tuple[float, float, str]]:
    return [(s.start, s.end, s.state) for s in history.segments]


def test_a_hang_is_down_from_its_last_sign_of_life_and_recovers() -> None:
    """Unresponsive from down_since (not from when it was noticed); one incident, its MTTR."""
    j = Journal()
    j.started(0)
    j.to(0, "starting")
    j.to(10, "running")
    j.to(100, "unresponsive", "no heartbeat for 10 s", failure=True, down_since=90)
    j.to(101, "restarting")
    j.to(102, "starting")
    j.to(110, "running")
    history = j.history(0, 200)
    assert spans(history) == [
        (0, 10, "starting"),
        (10, 90, "running"),
        (90, 101, "unresponsive"),
        (101, 102, "restarting"),
        (102, 110, "starting"),
        (110, 200, "running"),
    ]
    assert history.segments[2].reason == "no heartbeat for 10 s"
    summary = history.summary
    assert (summary.running_seconds, summary.wanted_seconds) == (170, 200)
    assert summary.uptime == pytest.approx(0.85)
    assert (summary.incidents, summary.mttr_seconds, summary.longest_outage_seconds) == (1, 20, 20)
    assert history.incidents[0].start == 90 and history.incidents[0].recovered


def test_a_daemon_restart_inside_the_window_is_unknown_and_apart_from_downtime() -> None:
    """Between "stopping" and the next "started": unknown, neither running nor wanted."""
    j = Journal()
    j.started(0)
    j.to(0, "starting")
    j.to(10, "running")
    j.stopping(100)  # the daemon says so first, then stops its services
    j.to(100, "stopping", "daemon stopping")
    j.to(101, "stopped", "daemon stopping")
    j.started(160)
    j.to(160, "starting")
    j.to(165, "running")
    history = j.history(0, 200)
    assert spans(history) == [
        (0, 10, "starting"),
        (10, 100, "running"),
        (100, 101, "stopping"),
        (101, 160, "unknown"),
        (160, 165, "starting"),
        (165, 200, "running"),
    ]
    assert history.segments[3].reason == "heartwatch was not running"
    summary = history.summary
    assert summary.unknown_seconds == 59
    assert summary.running_seconds == 125
    assert summary.wanted_seconds == 10 + 90 + 5 + 35  # the stop and the absence apart
    assert summary.incidents == 0 and summary.mttr_seconds is None


def test_a_daemon_stopped_for_good_is_unknown_after_its_last_entry() -> None:
    j = Journal()
    j.started(0)
    j.to(0, "starting")
    j.to(10, "running")
    j.stopping(50)
    j.to(50, "stopping", "daemon stopping")
    j.to(52, "stopped", "daemon stopping")
    history = j.history(0, 100)
    assert spans(history)[-2:] == [(50, 52, "stopping"), (52, 100, "unknown")]
    cut = j.history(0, 51)  # the window ends while it stops
    assert spans(cut)[-1] == (50, 51, "stopping")


def test_a_killed_daemon_is_unknown_from_its_last_sign_of_life() -> None:
    """No "stopping" entry: the absence begins at the last sign of life the store found, or
    without one, at the last entry given; never painted as running."""
    j = Journal()
    j.started(0)
    j.to(0, "starting")
    j.to(10, "running")
    j.other(50)
    restart = j.started(200)
    j.to(200, "starting")
    j.to(205, "running")
    precise = j.history(0, 300, last_alive={restart.id: 120})
    assert spans(precise)[1:4] == [
        (10, 120, "running"),
        (120, 200, "unknown"),
        (200, 205, "starting"),
    ]
    assert precise.summary.unknown_seconds == 80
    rough = j.history(0, 300)
    assert spans(rough)[1:3] == [(10, 50, "running"), (50, 200, "unknown")]
    # A sign of life said to be after the start is held to the start.
    late = j.history(0, 300, last_alive={restart.id: 999})
    assert (200, 205, "starting") in spans(late)
    assert all(s.state != "unknown" for s in late.segments)


def test_a_service_never_wanted_has_no_uptime() -> None:
    """Stopped the whole window (autostart = false): uptime None, not 0 nor 100 %."""
    j = Journal()
    j.started(0)
    j.to(5, "stopped", "waiting to be started", service="other")
    history = j.history(0, 100)
    assert spans(history) == [(0, 100, "stopped")]
    summary = history.summary
    assert summary.uptime is None and summary.wanted_seconds == 0
    assert (summary.incidents, summary.mttr_seconds, summary.longest_outage_seconds) == (
        0,
        None,
        None,
    )


def test_nothing_recorded_is_one_unknown_segment() -> None:
    history = Journal().history(1000, 2000)
    assert spans(history) == [(1000, 2000, "unknown")]
    assert history.summary.uptime is None and history.summary.unknown_seconds == 1000


def test_a_window_starting_mid_outage_counts_the_whole_incident() -> None:
    """An outage that began before the window and ended in it: one incident, its whole
    duration in MTTR and the longest outage; the window's first segment is the down state."""
    j = Journal()
    j.started(0)
    j.to(0, "starting")
    j.to(10, "running")
    j.to(50, "restarting", "no heartbeat", failure=True, down_since=40)
    j.to(51, "backoff", "waiting 60 s")
    j.to(111, "starting")
    j.to(150, "running")
    history = j.history(100, 300)
    assert spans(history) == [(100, 111, "backoff"), (111, 150, "starting"), (150, 300, "running")]
    summary = history.summary
    assert summary.incidents == 1
    assert summary.mttr_seconds == 110 and summary.longest_outage_seconds == 110
    assert summary.uptime == pytest.approx(150 / 200)


def test_a_second_failure_during_a_recovery_is_the_same_incident() -> None:
    j = Journal()
    j.started(0)
    j.to(0, "starting")
    j.to(10, "running")
    j.to(50, "restarting", "exit code 3", failure=True)
    j.to(60, "starting")
    j.to(62, "backoff", "exit code 3 again", failure=True)
    j.to(70, "starting")
    j.to(80, "running")
    j.to(150, "restarting", "exit code 4", failure=True)
    j.to(160, "starting")
    j.to(170, "running")
    history = j.history(0, 200)
    assert [(i.start, i.end) for i in history.incidents] == [(50, 80), (150, 170)]
    summary = history.summary
    assert summary.incidents == 2
    assert summary.mttr_seconds == 25 and summary.longest_outage_seconds == 30


def test_an_ongoing_incident_and_one_ended_by_a_person() -> None:
    """An incident still open at the window's end is measured to it (no MTTR); one ended by a
    person's stop is over but not recovered (no MTTR either)."""
    j = Journal()
    j.started(0)
    j.to(0, "starting")
    j.to(10, "running")
    j.to(50, "backoff", "exit code 1", failure=True)
    j.to(60, "stopping", "stopped by request")
    j.to(61, "stopped", "stopped by request")
    j.to(100, "starting")
    j.to(110, "running")
    j.to(150, "failed", "gave up", failure=True)
    history = j.history(0, 200)
    assert [(i.start, i.end, i.recovered) for i in history.incidents] == [
        (50, 60, False),
        (150, None, False),
    ]
    summary = history.summary
    assert summary.incidents == 2 and summary.mttr_seconds is None
    assert summary.longest_outage_seconds == 50
    assert summary.wanted_seconds == (60 - 0) + (200 - 100)  # stopping, stopped not wanted


def test_an_exit_is_wanted_only_when_it_was_a_failure() -> None:
    j = Journal()
    j.started(0)
    j.to(0, "starting")
    j.to(10, "running")
    j.to(20, "exited", "exit code 0")
    clean = j.history(0, 40)
    assert clean.summary.wanted_seconds == 20
    k = Journal()
    k.started(0)
    k.to(0, "starting")
    k.to(10, "running")
    k.to(20, "exited", "exit code 1", failure=True)
    crashed = k.history(0, 40)
    assert crashed.summary.wanted_seconds == 40 and crashed.summary.uptime == 0.25


def test_a_backwards_window_is_refused() -> None:
    with pytest.raises(ValueError, match="until is before since"):
        Journal().history(10, 5)


STATES = ["starting", "running", "unresponsive", "restarting", "backoff", "stopped", "failed"]


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(0, 50),
            st.sampled_from([*STATES, "started", "stopping"]),
            st.booleans(),
        ),
        max_size=30,
    ),
    since=st.floats(0, 600),
    span=st.floats(0, 600),
)
def test_segments_always_cover_the_window_and_figures_add_up(
    steps: list[tuple[float, str, bool]], since: float, span: float
) -> None:
    """Whatever the journal: contiguous segments exactly covering [since, until], running
    and unknown inside it, wanted within it, uptime in [0, 1]."""
    j = Journal()
    at = 0.0
    for gap, what, failure in steps:
        at += gap
        if what == "started":
            j.started(at)
        elif what == "stopping":
            j.stopping(at)
        else:
            j.to(at, what, failure=failure, down_since=at - gap / 2 if failure else None)
    until = since + span
    history = j.history(since, until)
    segments = history.segments
    assert segments[0].start == since and segments[-1].end == until
    assert all(a.end == b.start for a, b in itertools.pairwise(segments))
    assert all(s.end > s.start for s in segments) or until == since
    summary = history.summary
    assert summary.running_seconds <= summary.wanted_seconds + 1e-9
    assert summary.wanted_seconds + summary.unknown_seconds <= span + 1e-6
    assert summary.uptime is None or 0 <= summary.uptime <= 1
    for incident in history.incidents:
        assert incident.end is None or incident.end >= incident.start


def test_the_store_starts_the_walk_early_enough() -> None:
    """From the last settled transition at or before ``since`` (so an incident open at the
    window's start is seen from its beginning) and the daemon's last word before it."""
    j = Journal()
    j.started(0)
    j.to(0, "starting")
    j.to(10, "running")
    j.to(20, "running", service="other")
    j.to(50, "restarting", "crash", failure=True)
    j.to(51, "backoff")
    j.to(500, "starting")
    j.to(510, "running")
    j.to(900, "unresponsive", failure=True)
    store = SQLiteHistory(":memory:")
    store.add_entries(j.entries)
    found = store.history_entries(service="c", since=300, until=800, limit=100)
    assert [(e.at, e.state) for e in found] == [
        (0, None),  # the daemon's start, before the anchor
        (10, "running"),
        (50, "restarting"),
        (51, "backoff"),
        (500, "starting"),
        (510, "running"),
    ]
    history = service_history(found, service="c", since=300, until=800)
    assert history.summary.mttr_seconds == 460  # 50 .. 510, though it began before 300
    assert len(store.history_entries(service="c", since=300, until=800, limit=2)) == 3


def test_pruning_keeps_what_a_steady_service_s_history_starts_from() -> None:
    """A service running since before the retention's cut-off has only that transition: the
    prune keeps it (and the daemon's start before it), so the window reads running, not
    "nothing recorded"; what a flapping service did before its last settled state goes."""
    j = Journal()
    j.started(0)
    j.to(0, "starting")
    j.to(10, "running")
    j.to(5, "starting", service="flappy")
    j.to(20, "restarting", "crash", service="flappy", failure=True)
    j.to(30, "running", service="flappy")
    j.to(40, "unresponsive", service="flappy", failure=True)
    j.to(60, "running", service="flappy")
    j.other(5)  # an exit of c's, before its settled state: nothing starts from it
    store = SQLiteHistory(":memory:")
    store.add_entries(j.entries)
    store.prune(before=1000)
    kept = store.history_entries(service="c", since=2000, until=3000, limit=100)
    history = service_history(kept, service="c", since=2000, until=3000)
    assert [(s.state, s.start, s.end) for s in history.segments] == [("running", 2000, 3000)]
    assert history.summary.uptime == 1.0
    flappy = store.history_entries(service="flappy", since=2000, until=3000, limit=100)
    assert [(e.at, e.state) for e in flappy] == [(0, None), (60, "running")]
    assert [e.at for e in store.entries(service="c", limit=100)] == [10]


def test_the_store_finds_a_killed_daemons_last_sign_of_life() -> None:
    from heartwatch.store import MinuteCount

    j = Journal()
    j.started(0)
    j.to(10, "running")
    restart = j.started(1000)
    store = SQLiteHistory(":memory:")
    store.add_entries(j.entries)
    assert store.last_sign_of_life(restart.id, restart.at) == 10
    store.add_counts(
        [
            MinuteCount(600, "c", "heartbeat", 5),
            MinuteCount(960, "c", "heartbeat", 2),  # the minute the start fell in: not before it
        ]
    )
    assert store.last_sign_of_life(restart.id, restart.at) == 660


def test_history_read_only_in_part_is_unknown_after_the_cut() -> None:
    """The store's read cut short (too many entries): after the last entry read, unknown,
    not the last state stretched to the window's end."""
    j = Journal()
    j.started(0)
    j.to(0, "starting")
    j.to(10, "running")
    history = j.history(0, 100, read_until=10)
    assert spans(history) == [(0, 10, "starting"), (10, 100, "unknown")]
    assert history.segments[-1].reason.startswith("more history than one answer reads")
    assert history.summary.unknown_seconds == 90


def test_a_service_down_since_its_first_record_is_down_at_the_windows_start() -> None:
    """Never running nor stopped before the window (a crash loop from the start): its state
    at ``since`` and the incident's beginning come from its first failure and last state."""
    j = Journal()
    j.started(0)
    j.to(0, "starting")
    for at in range(10, 400, 20):
        j.to(at, "backoff", "exit code 1", failure=True)
        j.to(at + 10, "starting")
    j.to(500, "running")
    store = SQLiteHistory(":memory:")
    store.add_entries(j.entries)
    found = store.history_entries(service="c", since=305, until=600, limit=100)
    assert found[0].reason.startswith("heartwatch started")
    assert (found[1].at, found[1].state) == (10, "backoff")  # the first failure
    assert (found[2].at, found[2].state) == (300, "starting")  # the last before the window
    assert min(e.at for e in found[3:]) > 305  # then the window
    history = service_history(found, service="c", since=305, until=600)
    assert spans(history)[:2] == [(305, 310, "starting"), (310, 320, "backoff")]
    assert [(i.start, i.end) for i in history.incidents] == [(10, 500)]
    assert history.summary.mttr_seconds == 490


def test_overlapping_incidents_of_two_services_are_each_their_own() -> None:
    """Two services down at once (one journal): each history sees only its own incident."""
    j = Journal()
    j.started(0)
    for name in ("c", "d"):
        j.to(0, "starting", service=name)
        j.to(10, "running", service=name)
    j.to(100, "restarting", "crash", service="c", failure=True)
    j.to(120, "unresponsive", "no heartbeat", service="d", failure=True, down_since=110)
    j.to(150, "running", service="c")
    j.to(200, "restarting", service="d")
    j.to(230, "running", service="d")
    c = service_history(j.entries, service="c", since=0, until=300)
    d = service_history(j.entries, service="d", since=0, until=300)
    assert [(i.start, i.end) for i in c.incidents] == [(100, 150)]
    assert [(i.start, i.end) for i in d.incidents] == [(110, 230)]
    assert (c.summary.mttr_seconds, d.summary.mttr_seconds) == (50, 120)
    assert c.summary.running_seconds == 90 + 150 and d.summary.running_seconds == 100 + 70
