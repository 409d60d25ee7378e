"""Each recovery's steps from fixed journals (core/recoveries.py), and the store's query of
the recoveries a service took part in."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from heartwatch.core.journal import JournalEntry
from heartwatch.core.recoveries import Step, recovery_steps
from heartwatch.store.sqlite import SQLiteHistory


class Journal:
    def __init__(self) -> None:
        self.entries: list[JournalEntry] = []
        self._ids = itertools.count(1)

    def add(
        self,
        at: float,
        kind: str,
        service: str,
        *,
        state: str | None = None,
        **detail: Any,
    ) -> JournalEntry:
        entry = JournalEntry(
            next(self._ids),
            at,
            kind,
            service,
            f"{kind} {service}",
            state,
            None,
            detail or None,  # type: ignore[arg-type]
        )
        self.entries.append(entry)
        return entry

    def recovery(self, at: float, trigger: str, *members: str) -> JournalEntry:
        return self.add(at, "recovery", trigger, members=list(members))

    def recoveries(self) -> list[JournalEntry]:
        return [e for e in self.entries if e.kind == "recovery"]


def test_a_hung_collector_and_its_emulator_step_by_step() -> None:
    """Stops in reverse start order, starts in start order; every step's time; the duration
    runs from the recovery entry to the last member ready."""
    j = Journal()
    j.add(90, "transition", "collector", state="running")
    recovery = j.recovery(100, "collector", "emulator", "collector")
    j.add(101, "exit", "collector", stopped=True, stop_sent=100.5)
    j.add(102, "exit", "emulator", stopped=True, stop_sent=101.2)
    j.add(103, "restart", "emulator", cause="recovery")
    j.add(104, "transition", "emulator", state="running")
    j.add(105, "restart", "collector", cause="recovery")
    j.add(105.5, "transition", "collector", state="starting")
    j.add(106, "transition", "collector", state="running")
    found = recovery_steps(recovery, j.entries, j.recoveries())
    assert (found.id, found.trigger, found.members) == (
        recovery.id,
        "collector",
        ["emulator", "collector"],
    )
    assert found.reason == "recovery collector"
    assert found.steps == [
        Step("emulator", 101.2, 102, 103, 104),
        Step("collector", 100.5, 101, 105, 106),
    ]
    assert found.duration_seconds == 6


def test_a_crashed_trigger_was_gone_before_its_recovery_began() -> None:
    """Its exit precedes the recovery entry (no stop was sent); an older exit, before its
    last start or beyond the look-back, is not it."""
    j = Journal()
    j.add(10, "exit", "worker")  # an old crash, followed by a start
    j.add(11, "restart", "worker", cause="recovery")
    j.add(12, "transition", "worker", state="running")
    j.add(99.9, "exit", "worker")
    recovery = j.recovery(100, "worker", "worker")
    j.add(101, "restart", "worker", cause="recovery")
    j.add(102, "transition", "worker", state="running")
    found = recovery_steps(recovery, j.entries, j.recoveries())
    assert found.steps == [Step("worker", None, 99.9, 101, 102)]
    assert found.duration_seconds == pytest.approx(2)

    k = Journal()
    k.add(10, "exit", "worker")
    late = k.recovery(100, "worker", "worker")  # the exit is 90 s older: not this one's
    assert recovery_steps(late, k.entries).steps == [Step("worker", None, None, None, None)]


def test_a_second_failure_during_a_recovery_ends_the_first_ones_steps() -> None:
    """The collector crashes again while starting: the first recovery has no ready for it
    (no duration); the second begins with that crash as its gone."""
    j = Journal()
    first = j.recovery(100, "collector", "emulator", "collector")
    j.add(101, "exit", "collector", stopped=True, stop_sent=100.1)
    j.add(102, "exit", "emulator", stopped=True, stop_sent=101.1)
    j.add(103, "restart", "emulator")
    j.add(104, "transition", "emulator", state="running")
    j.add(105, "restart", "collector")
    j.add(106, "exit", "collector")
    second = j.recovery(106, "collector", "collector")
    j.add(110, "restart", "collector")
    j.add(111, "transition", "collector", state="running")
    one = recovery_steps(first, j.entries, j.recoveries())
    assert one.steps == [
        Step("emulator", 101.1, 102, 103, 104),
        Step("collector", 100.1, 101, 105, None),
    ]
    assert one.duration_seconds is None
    two = recovery_steps(second, j.entries, j.recoveries())
    assert two.steps == [Step("collector", None, 106, 110, 111)]
    assert two.duration_seconds == 5


def test_overlapping_recoveries_of_two_services_keep_their_own_steps() -> None:
    j = Journal()
    a = j.recovery(100, "a", "a")
    j.add(100.5, "exit", "a", stopped=True, stop_sent=100.1)
    b = j.recovery(101, "b", "b")
    j.add(101.5, "exit", "b", stopped=True, stop_sent=101.1)
    j.add(102, "restart", "b")
    j.add(103, "restart", "a")
    j.add(104, "transition", "a", state="running")
    j.add(105, "transition", "b", state="running")
    assert recovery_steps(a, j.entries, j.recoveries()).steps == [Step("a", 100.1, 100.5, 103, 104)]
    assert recovery_steps(b, j.entries, j.recoveries()).steps == [Step("b", 101.1, 101.5, 102, 105)]


def test_a_watch_only_member_has_no_process_steps_and_a_non_recovery_is_refused() -> None:
    j = Journal()
    recovery = j.recovery(100, "queue", "queue")
    j.add(101, "transition", "queue", state="running")  # back by itself, never spawned
    found = recovery_steps(recovery, j.entries)
    assert found.steps == [Step("queue", None, None, None, None)]
    assert found.duration_seconds is None
    with pytest.raises(ValueError, match="not a recovery"):
        recovery_steps(j.entries[-1], j.entries)


def test_the_store_lists_the_recoveries_a_service_took_part_in() -> None:
    j = Journal()
    j.recovery(100, "collector", "emulator", "collector")
    j.recovery(200, "other", "other")
    j.recovery(300, "emulator", "emulator", "collector")
    j.add(301, "exit", "emulator")
    store = SQLiteHistory(":memory:")
    store.add_entries(j.entries)
    assert [r.at for r in store.recoveries(service="collector")] == [300, 100]
    assert [r.at for r in store.recoveries(service="emulator", until=250)] == [100]
    assert [r.at for r in store.recoveries(since=150)] == [300, 200]
    assert [r.at for r in store.recoveries(limit=1)] == [300]
    around = store.entries_around(services=["emulator"], since=250, until=400, limit=10)
    assert [(e.at, e.kind) for e in around] == [(300, "recovery"), (301, "exit")]
