"""History: the journal, the SQLite store, and per-minute counts from the watchdog's totals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from heartwatch.core.journal import Journal, JournalEntry
from heartwatch.daemon.recorder import Recorder, count_differences
from heartwatch.store import MinuteCount
from heartwatch.store.sqlite import SQLiteHistory


def entry(id_: int, at: float, service: str | None = "c", kind: str = "transition") -> JournalEntry:
    return JournalEntry(id_, at, kind, service, f"reason {id_}", "running", "starting")  # type: ignore[arg-type]


def test_journal_numbers_entries_and_tells_every_listener() -> None:
    """Ids go on from first_id; a listener that raises does not stop the next one."""
    errors: list[Exception] = []
    journal = Journal(first_id=41, on_error=errors.append)
    heard: list[int] = []
    services: list[str | None] = []

    def broken(_: JournalEntry) -> None:
        raise RuntimeError("bug")

    journal.subscribe(broken)
    stop = journal.subscribe(lambda e: (heard.append(e.id), services.append(e.service)))
    for at in range(5):
        journal.append("transition", "a" if at % 2 else "b", "why", float(at))
    stop()
    journal.append("daemon", None, "stopping", 9.0)
    assert heard == [41, 42, 43, 44, 45]
    assert len(errors) == 6
    last = journal.append("daemon", None, "stopped", 10.0)
    assert (last.id, last.service) == (47, None)  # numbering goes on with nobody listening
    assert services == ["b", "a", "b", "a", "b"]
    assert [i for i, s in zip(heard, services, strict=True) if s == "a"] == [42, 44]


def test_store_keeps_entries_and_adds_counts(tmp_path: Path) -> None:
    """Entries come back newest first and filtered; counts of one minute add up; reopen keeps."""
    path = tmp_path / "h.sqlite3"
    store = SQLiteHistory(path)
    store.add_entries([entry(1, 100.0), entry(2, 200.0, "d"), entry(3, 300.0, None, "daemon")])
    store.add_counts([MinuteCount(60, "c", "heartbeat", 3), MinuteCount(120, "c", "poiid", 1)])
    store.add_counts([MinuteCount(60, "c", "heartbeat", 4)])
    store.close()
    store = SQLiteHistory(path)
    assert store.last_entry_id() == 3
    assert [e.id for e in store.entries()] == [3, 2, 1]
    assert [e.id for e in store.entries(service="c")] == [1]
    assert [e.id for e in store.entries(since=150.0, limit=1)] == [3]
    assert store.entries(service="d")[0].detail is None
    assert store.counts(since=0) == [
        MinuteCount(60, "c", "heartbeat", 7),
        MinuteCount(120, "c", "poiid", 1),
    ]
    assert store.counts(service="c", since=100) == [MinuteCount(120, "c", "poiid", 1)]
    # Two minutes go; c's running at 100 stays: its later history starts from it (test_uptime).
    assert store.prune(before=150.0) == 2
    assert [e.id for e in store.entries()] == [3, 2, 1]
    store.close()


def test_count_differences_split_heartbeats_from_data() -> None:
    """Heartbeats are the messages that were not data events; only growth is counted."""
    previous = {"c": (10, {"poiid": 2})}
    current = {"c": (25, {"poiid": 5, "photo": 1}), "new": (1, {})}
    assert count_differences(previous, current, 600) == [
        MinuteCount(600, "c", "poiid", 3),
        MinuteCount(600, "c", "photo", 1),
        MinuteCount(600, "c", "heartbeat", 11),
        MinuteCount(600, "new", "heartbeat", 1),
    ]
    assert count_differences(current, current, 660) == []


def test_recorder_samples_minutes_and_answers_with_the_current_one(tmp_path: Path) -> None:
    """Counts are stored per minute; the running minute is answered from memory."""
    totals = {"c": (0, {"poiid": 0})}
    clock = [1000.0]

    async def main() -> None:
        recorder = Recorder(
            SQLiteHistory(tmp_path / "h.sqlite3"),
            lambda: totals,
            retention=86400,
            clock=lambda: clock[0],
        )
        recorder.receive(entry(1, 1000.0))
        assert [e.id for e in await recorder.entries()] == [1]  # read after the write
        totals["c"] = (10, {"poiid": 4})
        recorder._on_minute(960)  # the minute 960..1019 ends
        clock[0] = 1030.0
        totals["c"] = (12, {"poiid": 4})
        counts = await recorder.counts(since=0)
        assert counts == [
            MinuteCount(960, "c", "heartbeat", 6),
            MinuteCount(960, "c", "poiid", 4),
            MinuteCount(1020, "c", "heartbeat", 2),
        ]
        await recorder.close()

    asyncio.run(main())


def test_recorder_close_stores_the_minute_so_far(tmp_path: Path) -> None:
    """A daemon stopping mid-minute keeps what that minute counted."""
    path = tmp_path / "h.sqlite3"
    totals = {"c": (0, {})}

    async def main() -> None:
        recorder = Recorder(SQLiteHistory(path), lambda: totals, retention=86400)
        totals["c"] = (5, {})
        await recorder.close()

    asyncio.run(main())
    counts = SQLiteHistory(path).counts(since=0)
    assert [(c.kind, c.count) for c in counts] == [("heartbeat", 5)]


@pytest.mark.parametrize("count", [1, 500])
def test_store_batches_of_any_size(tmp_path: Path, count: int) -> None:
    """Batches go in as one transaction each, whatever their size."""
    store = SQLiteHistory(tmp_path / "h.sqlite3")
    store.add_entries([entry(i, float(i)) for i in range(1, count + 1)])
    assert store.last_entry_id() == count
    assert len(store.entries(limit=1000)) == count


def test_store_pages_back_by_id(tmp_path: Path) -> None:
    """``before_id`` gives the next older page, newest first."""
    store = SQLiteHistory(tmp_path / "h.sqlite3")
    store.add_entries([entry(i, float(i)) for i in range(1, 11)])
    first = store.entries(limit=4)
    second = store.entries(before_id=first[-1].id, limit=4)
    assert [e.id for e in first] == [10, 9, 8, 7]
    assert [e.id for e in second] == [6, 5, 4, 3]
    assert [e.id for e in store.entries(before_id=3, limit=4)] == [2, 1]


def test_events_csv_keeps_text_as_text() -> None:
    """The export: a header, the csv module's quoting (commas, quotes, newlines survive), and
    no cell a spreadsheet would run: = + - @ (and tab, CR) get a leading quote."""
    import csv
    import io

    from heartwatch.web.export import events_csv, formula_safe

    assert [formula_safe(t) for t in ("=1+1", "+x", "-2", "@SUM(A1)", "\tx", "ok", "")] == [
        "'=1+1",
        "'+x",
        "'-2",
        "'@SUM(A1)",
        "'\tx",
        "ok",
        "",
    ]
    entries = [
        JournalEntry(
            7,
            1700000000.25,
            "exit",
            "=cmd",
            'exit code 1: "bad", worse\nline',
            None,
            None,
            {"pid": 3},
        ),
        JournalEntry(8, 1700000001.0, "daemon", None, "heartwatch stopping"),
    ]
    rows = list(csv.reader(io.StringIO(events_csv(entries), newline="")))
    assert rows[0] == [
        "id",
        "at",
        "time",
        "kind",
        "service",
        "state",
        "previous",
        "reason",
        "detail",
    ]
    assert rows[1] == [
        "7",
        "1700000000.25",
        "2023-11-14T22:13:20.250+00:00",
        "exit",
        "'=cmd",
        "",
        "",
        'exit code 1: "bad", worse\nline',
        '{"pid": 3}',
    ]
    assert rows[2][3:5] == ["daemon", ""] and len(rows) == 3
