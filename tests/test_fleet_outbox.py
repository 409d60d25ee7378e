"""The fleet agent's outbox: order, bound, drops counted, ran command ids across reopening."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from heartwatch.daemon.fleet_outbox import RAN_KEPT, Outbox, OutboxClosed, OutboxEvent, OutboxStore

BOOT = "a" * 32


def event(seq: int, boot: str = BOOT) -> OutboxEvent:
    return OutboxEvent(boot, seq, f"farm.-.{seq}", f'{{"seq":{seq}}}'.encode())


def test_outbox_replays_in_the_order_added_across_boots(tmp_path: Path) -> None:
    """Rows come back in rowid order (an earlier boot's first), after a given rowid."""
    store = OutboxStore(tmp_path / "fleet.sqlite3", max_events=100)
    store.add([event(1), event(2)])
    store.add([event(1, "b" * 32), event(2, "b" * 32)])
    rows = store.read(0, 10)
    assert [(r.boot[0], r.seq) for r in rows] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert rows[0].body == b'{"seq":1}' and rows[0].routing_key == "farm.-.1"
    assert [r.seq for r in store.read(rows[1].rowid, 10)] == [1, 2]
    assert [r.seq for r in store.read(0, 3)] == [1, 2, 1]


def test_outbox_deletes_what_was_confirmed_and_keeps_the_rest(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "fleet.sqlite3", max_events=100)
    store.add([event(seq) for seq in range(1, 6)])
    rows = store.read(0, 10)
    store.delete([rows[0].rowid, rows[2].rowid])
    assert [r.seq for r in store.read(0, 10)] == [2, 4, 5]
    assert store.count == 3
    store.delete([rows[0].rowid])  # twice: counted once
    assert store.count == 3


def test_outbox_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    """Beyond ``max_events`` the oldest go; how many is kept until it was said."""
    store = OutboxStore(tmp_path / "fleet.sqlite3", max_events=10)
    assert store.add([event(seq) for seq in range(1, 9)]) == 0
    assert store.add([event(seq) for seq in range(9, 14)]) == 3
    assert [r.seq for r in store.read(0, 100)] == list(range(4, 14))
    assert store.dropped() == 3
    store.add([event(14)])
    assert store.dropped() == 4
    store.clear_dropped(3)  # said 3; one more came meanwhile
    assert store.dropped() == 1
    store.close()
    reopened = OutboxStore(tmp_path / "fleet.sqlite3", max_events=10)
    assert reopened.count == 10
    assert reopened.dropped() == 1
    assert [r.seq for r in reopened.read(0, 100)] == list(range(5, 15))


def test_outbox_ran_ids_survive_reopening_and_are_pruned_by_age(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite3"
    store = OutboxStore(path, max_events=10)
    assert store.record_ran("1" * 32, at=1000.0) is True
    assert store.record_ran("1" * 32, at=1001.0) is False
    assert store.record_ran("2" * 32, at=5000.0) is True
    store.close()
    reopened = OutboxStore(path, max_events=10)
    assert reopened.ran_ids() == {"1" * 32: 1000.0, "2" * 32: 5000.0}
    assert reopened.prune_ran(before=2000.0) == 1
    assert set(reopened.ran_ids()) == {"2" * 32}


def test_outbox_rows_are_on_disk_once_stored(tmp_path: Path) -> None:
    """Another connection (a process after a SIGKILL) sees a committed batch."""
    path = tmp_path / "fleet.sqlite3"
    store = OutboxStore(path, max_events=10)
    store.add([event(1), event(2)])
    other = sqlite3.connect(path)
    assert other.execute("SELECT seq FROM outbox ORDER BY rowid").fetchall() == [(1,), (2,)]
    other.close()


def test_outbox_driver_batches_a_loop_turn_and_says_when_stored(tmp_path: Path) -> None:
    """Adds on the loop go in one write; the agent is told once it is on disk; a read asked
    after an add includes it; ran ids are known at once, and across reopening."""

    async def scenario() -> None:
        stored: list[int] = []
        outbox = await Outbox.open(
            tmp_path / "fleet.sqlite3", max_events=5, on_stored=lambda: stored.append(1)
        )
        for seq in range(1, 4):
            outbox.add(event(seq))
        assert [r.seq for r in await outbox.read(0, 10)] == [1, 2, 3]
        for _ in range(20):
            if stored:
                break
            await asyncio.sleep(0.01)
        assert stored == [1]  # one batch
        for seq in range(4, 9):
            outbox.add(event(seq))
        assert [r.seq for r in await outbox.read(0, 10)] == [4, 5, 6, 7, 8]
        assert await outbox.dropped() == 3
        for _ in range(20):
            if outbox.dropped_now:
                break
            await asyncio.sleep(0.01)
        assert outbox.dropped_now == 3
        assert await outbox.record_ran("c" * 32) is True
        assert outbox.has_ran("c" * 32)
        assert await outbox.record_ran("c" * 32) is False
        await outbox.close()
        with pytest.raises(OutboxClosed):
            await outbox.read(0, 10)
        again = await Outbox.open(tmp_path / "fleet.sqlite3", max_events=5, on_stored=lambda: None)
        assert again.has_ran("c" * 32)
        assert not again.has_ran("d" * 32)
        assert await again.count() == 5
        await again.close()

    asyncio.run(scenario())


def test_outbox_driver_prunes_old_ran_ids_in_memory_and_on_disk(tmp_path: Path) -> None:
    async def scenario() -> None:
        now = [10_000_000.0]
        store = OutboxStore(tmp_path / "fleet.sqlite3", max_events=5)
        outbox = Outbox(store, store.ran_ids(), on_stored=lambda: None, clock=lambda: now[0])
        assert await outbox.record_ran("e" * 32)
        now[0] += RAN_KEPT + 1
        assert await outbox.record_ran("f" * 32)
        outbox.prune_ran()
        assert not outbox.has_ran("e" * 32) and outbox.has_ran("f" * 32)
        await outbox.close()
        assert set(OutboxStore(tmp_path / "fleet.sqlite3", max_events=5).ran_ids()) == {"f" * 32}

    asyncio.run(scenario())


def test_rows_are_never_numbered_again_after_the_newest_were_deleted(tmp_path: Path) -> None:
    """The sender reads after the last row it sent: a new event must come after it, even
    when every row it sent is gone (SQLite's plain rowid would give the next one number 1)."""
    store = OutboxStore(tmp_path / "fleet.sqlite3", max_events=100)
    store.add([event(seq) for seq in (1, 2, 3)])
    sent = store.read(0, 10)
    store.delete([row.rowid for row in sent])
    store.add([event(4)])
    assert [row.seq for row in store.read(sent[-1].rowid, 10)] == [4]
    store.close()
