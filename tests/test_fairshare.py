"""The fair share of the loop among busy readers (pure: no sockets, the clock passed in)."""

from __future__ import annotations

import pytest

from heartwatch.core.fairshare import FairShare, Turn


def test_light_readers_never_wait() -> None:
    share: FairShare[str] = FairShare(slots=1)
    assert share.read("bulk", busy=True, now=0.0) == Turn()
    for reader in "abcdef":
        assert share.read(reader, busy=False, now=0.1) == Turn()
    assert share.waiting == 0


def test_a_lone_busy_reader_keeps_the_whole_loop() -> None:
    share: FairShare[str] = FairShare(slots=2)
    for step in range(100):
        assert share.read("bulk", busy=True, now=step * 0.001) == Turn()
    assert share.holds_slot("bulk")


def test_busy_readers_beyond_the_slots_wait_and_take_turns_round_robin() -> None:
    share: FairShare[str] = FairShare(slots=2, quantum=1)
    assert share.read("a", True, 0.0) == Turn()
    assert share.read("b", True, 0.0) == Turn()
    assert share.read("c", True, 0.0) == Turn(pause=True)
    assert share.read("d", True, 0.0) == Turn(pause=True)
    # Each holder's next busy read hands its slot to the first in line.
    assert share.read("a", True, 0.001) == Turn(pause=True, resume=("c",))
    assert share.read("b", True, 0.001) == Turn(pause=True, resume=("d",))
    assert share.read("c", True, 0.002) == Turn(pause=True, resume=("a",))
    assert share.read("d", True, 0.002) == Turn(pause=True, resume=("b",))
    assert {r for r in "abcd" if share.holds_slot(r)} == {"a", "b"}
    assert share.waiting == 2


def test_a_holder_that_drains_or_leaves_frees_its_slot() -> None:
    share: FairShare[str] = FairShare(slots=1, quantum=1)
    share.read("a", True, 0.0)
    share.read("b", True, 0.0)
    share.read("c", True, 0.0)
    assert share.read("a", busy=False, now=0.01) == Turn(resume=("b",))  # a drained
    assert share.forget("b", 0.02) == ("c",)  # b closed
    assert share.forget("zzz", 0.02) == ()
    assert share.forget("c", 0.03) == ()
    assert share.waiting == 0


def test_sweep_frees_slots_of_holders_that_stopped_reading() -> None:
    share: FairShare[str] = FairShare(slots=1, idle_after=0.05)
    share.read("a", True, 0.0)  # filled its buffer, then its sender went quiet
    share.read("b", True, 0.01)
    assert share.sweep(0.04) == ()  # a read 40 ms ago: not yet
    assert share.sweep(0.05) == ("b",)
    assert share.sweep(0.2) == ()  # nobody waits: b keeps its slot however long it takes
    assert share.holds_slot("b") and not share.holds_slot("a")


def test_a_read_already_under_way_when_paused_keeps_its_place() -> None:
    share: FairShare[str] = FairShare(slots=1, quantum=1)
    share.read("a", True, 0.0)
    share.read("b", True, 0.0)
    assert share.read("b", True, 0.0) == Turn(pause=True)
    assert share.read("a", True, 0.01) == Turn(pause=True, resume=("b",))


def test_a_holder_yields_after_its_quantum_of_busy_reads() -> None:
    share: FairShare[str] = FairShare(slots=1, quantum=3)
    share.read("a", True, 0.0)  # takes the free slot
    assert share.read("b", True, 0.0) == Turn(pause=True)
    assert share.read("a", True, 0.001) == Turn()
    assert share.read("a", True, 0.002) == Turn()
    assert share.read("a", True, 0.003) == Turn(pause=True, resume=("b",))
    for step in range(2):
        assert share.read("b", True, 0.004 + step) == Turn()
    assert share.read("b", True, 0.01) == Turn(pause=True, resume=("a",))


def test_at_least_one_slot_and_one_read() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        FairShare(slots=0)
    with pytest.raises(ValueError, match="one read"):
        FairShare(quantum=0)
