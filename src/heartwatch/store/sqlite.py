"""History in SQLite: embedded, no server, one file, WAL so that readers never block writes.

``synchronous=NORMAL`` with WAL: a commit does not wait for the disk, and a power cut loses at
most the last moments, never the file's consistency. Entries keep their journal ids, so the
journal of a restarted daemon goes on from the highest id stored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from heartwatch.core.journal import EntryKind, JournalEntry
from heartwatch.core.rates import Silence
from heartwatch.store import MinuteCount

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    service TEXT,
    reason TEXT NOT NULL,
    state TEXT,
    previous TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS entries_by_time ON entries (at);
CREATE INDEX IF NOT EXISTS entries_by_service ON entries (service, at);
-- By kind, then id (the rowid every index ends with): the newest of a kind without a sort.
CREATE INDEX IF NOT EXISTS entries_of_kind ON entries (kind);
CREATE TABLE IF NOT EXISTS counts (
    minute INTEGER NOT NULL,
    service TEXT NOT NULL,
    kind TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (service, minute, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS counts_by_minute ON counts (minute);
"""


# States after which no incident is open: the walk of a service's history may start there.
_SETTLED = ("running", "stopped", "stopping", "exited")


class SQLiteHistory:
    """A ``HistoryStore`` in one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One thread uses it at a time, but not always the one that opened it.
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def last_entry_id(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM entries").fetchone()
        return int(row[0])

    def add_entries(self, entries: Sequence[JournalEntry]) -> None:
        rows = [
            (
                e.id,
                e.at,
                e.kind,
                e.service,
                e.reason,
                e.state,
                e.previous,
                None if e.detail is None else json.dumps(dict(e.detail), default=str),
            )
            for e in entries
        ]
        with self._transaction():
            self._db.executemany(
                # A plain INSERT: two daemons sharing one history file must fail loudly
                # rather than overwrite each other's entries.
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def add_counts(self, counts: Sequence[MinuteCount]) -> None:
        rows = [(c.minute, c.service, c.kind, c.count) for c in counts]
        with self._transaction():
            self._db.executemany(
                "INSERT INTO counts VALUES (?, ?, ?, ?) "
                "ON CONFLICT (service, minute, kind) DO UPDATE SET count = count + excluded.count",
                rows,
            )

    def entries(
        self,
        *,
        service: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        kinds: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[JournalEntry]:
        clauses: list[str] = []
        params: list[Any] = []
        if service is not None:
            clauses.append("service = ?")
            params.append(service)
        if since is not None:
            clauses.append("at > ?")
            params.append(since)
        if until is not None:
            clauses.append("at <= ?")
            params.append(until)
        if kinds:
            clauses.append(f"kind IN ({', '.join('?' for _ in kinds)})")
            params.extend(kinds)
        if before_id is not None:
            clauses.append("id < ?")
            params.append(before_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        query = f"SELECT * FROM entries {where} ORDER BY id DESC LIMIT ?"
        return [_entry(row) for row in self._db.execute(query, [*params, limit])]

    def history_entries(
        self, *, service: str, since: float, until: float, limit: int
    ) -> list[JournalEntry]:
        # Where the walk starts: the service's last settled state (running, or not wanted:
        # no incident can be open across it), then the daemon's last word before that.
        settled = self._db.execute(
            # "+kind": by the service's index, not the kind's (every service's transitions).
            "SELECT at FROM entries WHERE service = ? AND at <= ? AND +kind = 'transition' "
            f"AND state IN ({', '.join('?' for _ in _SETTLED)}) ORDER BY at DESC LIMIT 1",
            (service, since, *_SETTLED),
        ).fetchone()
        seeds: list[tuple[Any, ...]] = []
        if settled is not None:
            anchor = float(settled[0])
        else:
            # Never settled before the window (down since its first record, a crash loop):
            # the failure that began it, and its last state before the window, are enough.
            anchor = since
            seeds += self._db.execute(
                "SELECT * FROM entries WHERE service = ? AND at <= ? AND +kind = 'transition' "
                "AND json_extract(detail, '$.failure') = 1 ORDER BY at LIMIT 1",
                (service, since),
            ).fetchall()
            seeds += self._db.execute(
                "SELECT * FROM entries WHERE service = ? AND at <= ? AND +kind = 'transition' "
                "ORDER BY at DESC LIMIT 1",
                (service, since),
            ).fetchall()
        seeds += self._db.execute(
            "SELECT * FROM entries WHERE service IS NULL AND kind = 'daemon' AND at <= ? "
            "ORDER BY at DESC LIMIT 1",
            (anchor,),
        ).fetchall()
        rows = self._db.execute(
            "SELECT * FROM (SELECT * FROM entries WHERE service = ? AND +kind = 'transition' "
            "AND at >= ? AND at <= ? UNION ALL SELECT * FROM entries WHERE service IS NULL "
            "AND kind = 'daemon' AND at > ? AND at <= ?) ORDER BY id LIMIT ?",
            (service, anchor, until, anchor, until, limit),
        ).fetchall()
        unique = {row[0]: row for row in [*seeds, *rows]}
        return [_entry(unique[id_]) for id_ in sorted(unique)]

    def last_sign_of_life(self, before_id: int, before: float) -> float | None:
        entry = self._db.execute(
            "SELECT at FROM entries WHERE id < ? ORDER BY id DESC LIMIT 1", (before_id,)
        ).fetchone()
        # A minute's counts are written at its end: one that ended before the start was the
        # daemon before's (the minute the start fell in may be the new daemon's).
        minute = self._db.execute(
            "SELECT MAX(minute) FROM counts WHERE minute <= ?", (before - 60,)
        ).fetchone()
        times = [float(entry[0])] if entry is not None else []
        if minute is not None and minute[0] is not None:
            times.append(float(minute[0]) + 60)
        return max(times) if times else None

    def recoveries(
        self,
        *,
        service: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[JournalEntry]:
        clauses = ["kind = 'recovery'"]
        params: list[Any] = []
        if since is not None:
            clauses.append("at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("at <= ?")
            params.append(until)
        if service is not None:
            clauses.append(
                "(service = ? OR EXISTS (SELECT 1 FROM json_each(entries.detail, '$.members') "
                "WHERE json_each.value = ?))"
            )
            params.extend([service, service])
        query = f"SELECT * FROM entries WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?"
        return [_entry(row) for row in self._db.execute(query, [*params, limit])]

    def entries_around(
        self, *, services: Sequence[str], since: float, until: float, limit: int
    ) -> list[JournalEntry]:
        if not services:
            return []
        marks = ", ".join("?" for _ in services)
        query = (
            f"SELECT * FROM entries WHERE service IN ({marks}) AND at >= ? AND at <= ? "
            "ORDER BY id LIMIT ?"
        )
        return [_entry(row) for row in self._db.execute(query, (*services, since, until, limit))]

    def count_buckets(
        self, *, service: str, first: int, step: int, until: float
    ) -> list[tuple[int, str, int]]:
        rows = self._db.execute(
            "SELECT (minute - ?) / ?, kind, SUM(count) FROM counts "
            "WHERE service = ? AND minute >= ? AND minute < ? GROUP BY 1, 2",
            (first, step, service, first, until),
        )
        return [(int(index), str(kind), int(total)) for index, kind, total in rows]

    def silences(
        self, *, service: str, kind: str, first: int, until: float, longer_than: float, limit: int
    ) -> list[Silence]:
        # Consecutive minutes with events of the kind, compared in SQL (a window function):
        # only the stretches between them longer than the timeout come back, and the open
        # one after the last (the current minute may still end it).
        between = self._db.execute(
            "SELECT previous, minute FROM (SELECT minute, LAG(minute, 1, ?) OVER "
            "(ORDER BY minute) AS previous FROM counts WHERE service = ? AND kind = ? "
            "AND minute >= ? AND minute < ? AND count > 0) WHERE minute - previous - 60 > ? "
            "ORDER BY minute LIMIT ?",
            (first - 60, service, kind, first, until, longer_than, limit),
        ).fetchall()
        last = self._db.execute(
            "SELECT MAX(minute) FROM counts WHERE service = ? AND kind = ? AND minute >= ? "
            "AND minute < ? AND count > 0",
            (service, kind, first, until),
        ).fetchone()[0]
        stretches: list[tuple[int, int | None]] = [(int(a) + 60, int(b)) for a, b in between]
        stretches.append((first if last is None else int(last) + 60, None))
        found = []
        for quiet_from, quiet_to in stretches:
            lo, hi = self._db.execute(
                "SELECT MIN(minute), MAX(minute) FROM counts WHERE service = ? "
                "AND minute >= ? AND minute < ?",  # stored counts are never 0
                (service, quiet_from, until if quiet_to is None else min(quiet_to, until)),
            ).fetchone()
            found.append(Silence(kind, quiet_from, quiet_to, lo, hi))
        return found

    def counts(
        self, *, service: str | None = None, since: float, until: float | None = None
    ) -> list[MinuteCount]:
        query = "SELECT minute, service, kind, count FROM counts WHERE minute >= ?"
        params: list[Any] = [since]
        if until is not None:
            query += " AND minute < ?"
            params.append(until)
        if service is not None:
            query += " AND service = ?"
            params.append(service)
        query += " ORDER BY minute, service, kind"
        return [MinuteCount(*row) for row in self._db.execute(query, params)]

    def prune(self, before: float) -> int:
        """Forget what is older than ``before``, but for what a history after it starts from:
        each service's walk begins at its last settled transition (``history_entries``), and
        a service that has run steadily for longer than the retention has only that one: it
        is kept, with what follows it, and the daemon's last word before the earliest kept
        (else its whole window would read "nothing recorded")."""
        settled = ", ".join("?" for _ in _SETTLED)
        with self._transaction():
            db = self._db
            db.execute("DROP TABLE IF EXISTS temp.kept_from")
            # Per service: its last settled transition before the cut-off, or (never settled:
            # a crash loop older than the retention) its last transition of any state.
            db.execute(
                "CREATE TEMP TABLE kept_from AS SELECT service, COALESCE("
                f"MAX(CASE WHEN state IN ({settled}) THEN at END), MAX(at)) AS at "
                "FROM entries WHERE kind = 'transition' AND service IS NOT NULL AND at < ? "
                "GROUP BY service",
                (*_SETTLED, before),
            )
            gone = db.execute(
                "DELETE FROM entries WHERE at < ? AND service IS NOT NULL AND at < COALESCE("
                "(SELECT k.at FROM kept_from k WHERE k.service = entries.service), ?)",
                (before, before),
            ).rowcount
            earliest = db.execute("SELECT MIN(at) FROM kept_from").fetchone()[0]
            daemon_from = before
            if earliest is not None:
                word = db.execute(
                    "SELECT MAX(at) FROM entries WHERE service IS NULL AND kind = 'daemon' "
                    "AND at <= ?",
                    (earliest,),
                ).fetchone()[0]
                daemon_from = min(before, word if word is not None else earliest)
            gone += db.execute(
                "DELETE FROM entries WHERE service IS NULL AND at < ?", (daemon_from,)
            ).rowcount
            db.execute("DROP TABLE temp.kept_from")
            gone += db.execute("DELETE FROM counts WHERE minute < ?", (before,)).rowcount
        return gone

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> sqlite3.Connection:
        # The connection is in autocommit mode; "with" on it wraps BEGIN ... COMMIT/ROLLBACK.
        self._db.execute("BEGIN")
        return self._db


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    id_, at, kind, service, reason, state, previous, detail = row
    kind_: EntryKind = kind
    return JournalEntry(
        id_,
        at,
        kind_,
        service,
        reason,
        state,
        previous,
        None if detail is None else json.loads(detail),
    )
