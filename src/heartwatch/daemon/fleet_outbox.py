"""The fleet agent's outbox: events waiting for the broker's confirm, and the commands it ran.

One SQLite file in the state directory (``fleet.sqlite3``), two tables:

- ``outbox``: every event (``entry``, ``counts``, ``reply``: ``core/fleetwire.py``) as it will
  be published (its boot, seq, routing key and encoded envelope), in ``rowid`` order. A row
  leaves when the broker confirmed it. The table is bounded (``[fleet] outbox_max``): beyond
  it the oldest rows are dropped and counted (``dropped``, kept in ``meta`` across restarts
  until the agent has said so). Events of an earlier boot that the broker never confirmed are
  still there after a restart (a SIGKILL included) and go first.
- ``ran``: the ids of the commands this host ran, with when, kept across restarts so a
  command runs at most once; ids older than ``RAN_KEPT`` are pruned (a command lives a day at
  most, ``fleetcommands.MAX_LIFETIME``, so an id that old can only come back expired).

``OutboxStore`` is the synchronous store; ``Outbox`` drives it from the event loop in one
worker thread of its own, writes batched per loop turn (as ``recorder.py`` does), so the
supervision never waits for the disk. Ran ids are also held in memory, so ``has_ran`` is
answered on the loop at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from loguru import logger

T = TypeVar("T")

RAN_KEPT = 2 * 86400.0  # seconds a ran command id is kept
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    -- AUTOINCREMENT: a rowid is never used again. A plain rowid is "the largest + 1", so once
    -- the sender had deleted the newest confirmed rows, the next events took numbers at or
    -- below where it reads from, and went out late, after later ones (seq 8, 9, then 7).
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    boot TEXT NOT NULL, seq INTEGER NOT NULL, routing_key TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ran (id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """An event as it is published; ``rowid`` 0 until it is stored."""

    boot: str
    seq: int
    routing_key: str
    body: bytes
    rowid: int = 0


class OutboxStore:
    """The SQLite file; every method is blocking (the ``Outbox``'s thread calls them)."""

    def __init__(self, path: Path, *, max_events: int) -> None:
        self.max_events = max_events
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # An event is on disk once written (a SIGKILL loses nothing committed); NORMAL with
        # WAL may lose the last transactions to a power cut, not to a killed process.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._count = int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    @property
    def count(self) -> int:
        return self._count

    def add(self, events: Sequence[OutboxEvent]) -> int:
        """Store ``events`` after the others; drop the oldest beyond the bound. Returns how
        many were dropped by this call (also added to ``dropped``)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO outbox (boot, seq, routing_key, body) VALUES (?, ?, ?, ?)",
                [(e.boot, e.seq, e.routing_key, e.body) for e in events],
            )
            self._count += len(events)
            excess = self._count - self.max_events
            if excess > 0:
                self._db.execute(
                    "DELETE FROM outbox WHERE rowid IN "
                    "(SELECT rowid FROM outbox ORDER BY rowid LIMIT ?)",
                    (excess,),
                )
                self._count -= excess
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('dropped', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                    (excess,),
                )
        return max(0, excess)

    def read(self, after: int, limit: int) -> list[OutboxEvent]:
        """Up to ``limit`` events after ``rowid`` ``after``, oldest first."""
        rows = self._db.execute(
            "SELECT rowid, boot, seq, routing_key, body FROM outbox WHERE rowid > ? "
            "ORDER BY rowid LIMIT ?",
            (after, limit),
        ).fetchall()
        return [
            OutboxEvent(boot, seq, key, bytes(body), rowid) for rowid, boot, seq, key, body in rows
        ]

    def delete(self, rowids: Sequence[int]) -> None:
        """The events the broker confirmed."""
        with self._db:
            self._db.execute("BEGIN")
            gone = self._db.executemany(
                "DELETE FROM outbox WHERE rowid = ?", [(rowid,) for rowid in rowids]
            ).rowcount
        self._count -= max(0, gone)

    def dropped(self) -> int:
        """Events dropped for the bound since the agent last said so (``clear_dropped``)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        return 0 if row is None else int(row[0])

    def clear_dropped(self, said: int) -> None:
        """``said`` drops were reported: only those are forgotten (more may have come since)."""
        self._db.execute("UPDATE meta SET value = max(0, value - ?) WHERE key = 'dropped'", (said,))

    def record_ran(self, command_id: str, at: float) -> bool:
        """Note that ``command_id`` runs; False if it was noted before (it must not run)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO ran (id, at) VALUES (?, ?)", (command_id, at)
        )
        return cursor.rowcount == 1

    def ran_ids(self) -> dict[str, float]:
        """Every ran id kept, with when it was recorded."""
        return dict(self._db.execute("SELECT id, at FROM ran").fetchall())

    def prune_ran(self, before: float) -> int:
        return self._db.execute("DELETE FROM ran WHERE at < ?", (before,)).rowcount

    def close(self) -> None:
        self._db.close()


class Outbox:
    """The store on its own worker thread; events added on the loop, batched per turn."""

    def __init__(
        self,
        store: OutboxStore,
        ran: dict[str, float],
        *,
        on_stored: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._ran = ran
        self.on_stored = on_stored  # told (on the loop) after each batch is on disk
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleet-outbox")
        self._pending: list[OutboxEvent] = []
        self._flush_scheduled = False
        self._closed = False
        self.dropped_now = 0  # dropped for the bound by this run (the store keeps the rest)

    @classmethod
    async def open(
        cls, path: Path, *, max_events: int, on_stored: Callable[[], None] = lambda: None
    ) -> Outbox:
        """Open (or create) ``path`` in a worker thread and prune old ran ids."""

        def opening() -> tuple[OutboxStore, dict[str, float]]:
            store = OutboxStore(path, max_events=max_events)
            store.prune_ran(time.time() - RAN_KEPT)
            return store, store.ran_ids()

        store, ran = await asyncio.to_thread(opening)
        return cls(store, ran, on_stored=on_stored)

    def add(self, event: OutboxEvent) -> None:
        """Store ``event`` soon (this loop turn's events in one transaction)."""
        if self._closed:
            return
        self._pending.append(event)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    async def read(self, after: int, limit: int) -> list[OutboxEvent]:
        """Stored events after ``rowid`` ``after`` (those added before this call included)."""
        return await self._call(lambda: self._store.read(after, limit))

    async def delete(self, rowids: Sequence[int]) -> None:
        await self._call(lambda: self._store.delete(rowids))

    async def dropped(self) -> int:
        return await self._call(self._store.dropped)

    async def clear_dropped(self, said: int) -> None:
        await self._call(lambda: self._store.clear_dropped(said))

    async def count(self) -> int:
        return await self._call(lambda: self._store.count)

    def has_ran(self, command_id: str) -> bool:
        """Whether ``command_id`` ran here (or is being recorded to run): on the loop, at once."""
        return command_id in self._ran

    async def record_ran(self, command_id: str) -> bool:
        """Record ``command_id`` as run, on disk, before it runs; False if it ran before.

        It is taken in memory at once, so a second delivery of it while this one is being
        written is refused too."""
        if command_id in self._ran:
            return False
        at = self._clock()
        self._ran[command_id] = at
        try:
            return await self._call(lambda: self._store.record_ran(command_id, at))
        except BaseException:
            # Not on disk: not run either (the caller does not run it); it may come again.
            self._ran.pop(command_id, None)
            raise

    def prune_ran(self) -> None:
        """Forget ids older than ``RAN_KEPT``, here and on disk."""
        before = self._clock() - RAN_KEPT
        for command_id in [i for i, at in self._ran.items() if at < before]:
            del self._ran[command_id]
        self._submit(lambda: self._store.prune_ran(before))

    async def close(self) -> None:
        """Write what is pending, then close the file."""
        if self._closed:
            return
        self._flush()
        self._closed = True
        await asyncio.wrap_future(self._thread.submit(self._store.close))
        self._thread.shutdown(wait=True)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending or self._closed:
            return
        batch, self._pending = self._pending, []
        future = self._thread.submit(self._store.add, batch)
        future.add_done_callback(self._stored)

    def _submit(self, job: Callable[[], object]) -> None:
        if not self._closed:
            self._thread.submit(job).add_done_callback(_log_failure)

    def _stored(self, future: Future[int]) -> None:
        """In the thread: the batch is on disk (or could not be written)."""
        error = future.exception()
        if error is not None:
            logger.opt(exception=error).error("fleet: events could not be written to the outbox")
            return
        dropped = future.result()
        self._loop.call_soon_threadsafe(self._after_store, dropped)

    def _after_store(self, dropped: int) -> None:
        if dropped:
            if not self.dropped_now:
                logger.warning(
                    "fleet: the outbox is full ({} events waiting for the broker): the oldest "
                    "are dropped from now on, and counted",
                    self._store.max_events,
                )
            self.dropped_now += dropped
        if not self._closed:
            self.on_stored()

    async def _call(self, job: Callable[[], T]) -> T:
        if self._closed:
            raise OutboxClosed("the outbox is closed")
        self._flush()  # what was added before the question is in the answer
        return await asyncio.wrap_future(self._thread.submit(job))


class OutboxClosed(RuntimeError):
    """The agent is stopping: the outbox takes no more work."""


def _log_failure(future: Future[object]) -> None:
    error = future.exception()
    if error is not None:
        logger.opt(exception=error).error("fleet: an outbox write failed")
