"""Where history is kept: the interface, so that SQLite now and PostgreSQL later are alike.

A store is synchronous and used from one thread at a time (the daemon gives it a thread of
its own, so the event loop never waits on a disk). It keeps two things:

- journal entries (``heartwatch.core.journal.JournalEntry``): transitions, restarts, exits,
  recoveries, alerts, the daemon's own start and stop;
- per-minute counts: for each service, minute and kind (``heartbeat`` or a data kind), how
  many messages came.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from heartwatch.core.journal import JournalEntry
from heartwatch.core.rates import Silence


@dataclass(frozen=True, slots=True)
class MinuteCount:
    minute: int  # Unix time of the minute's start, a multiple of 60
    service: str
    kind: str  # "heartbeat" or a data kind
    count: int


class HistoryStore(Protocol):
    def last_entry_id(self) -> int:
        """The highest entry id stored (0 if none): the journal goes on from the next."""
        ...

    def add_entries(self, entries: Sequence[JournalEntry]) -> None: ...

    def add_counts(self, counts: Sequence[MinuteCount]) -> None:
        """Add to the stored counts (a minute written twice adds up)."""
        ...

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
        """Newest first; ``since``: only entries after this Unix time; ``until``: only
        entries at or before it; ``before_id``: only entries older than that one (the next
        page); ``kinds``: only entries of these kinds."""
        ...

    def history_entries(
        self, *, service: str, since: float, until: float, limit: int
    ) -> list[JournalEntry]:
        """In journal order: ``service``'s transitions and the daemon's own entries up to
        ``until``, from early enough to know its state and any incident open at ``since``
        (its last running or not-wanted transition at or before ``since``, and the daemon's
        last entry before that). At most ``limit`` entries (the oldest)."""
        ...

    def last_sign_of_life(self, before_id: int, before: float) -> float | None:
        """The last time the daemon before entry ``before_id`` (a start) showed it was alive:
        its last entry, or the end of its last minute of counts stored before ``before``."""
        ...

    def recoveries(
        self,
        *,
        service: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[JournalEntry]:
        """Recovery entries, newest first; ``service``: those it triggered or was a member
        of."""
        ...

    def entries_around(
        self, *, services: Sequence[str], since: float, until: float, limit: int
    ) -> list[JournalEntry]:
        """In journal order: entries of ``services`` between ``since`` and ``until``
        (inclusive); at most ``limit`` (the oldest)."""
        ...

    def count_buckets(
        self, *, service: str, first: int, step: int, until: float
    ) -> list[tuple[int, str, int]]:
        """(bucket index, kind, sum) of ``service``'s counts from minute ``first`` to
        ``until``, in buckets of ``step`` seconds (summed by the store)."""
        ...

    def silences(
        self, *, service: str, kind: str, first: int, until: float, longer_than: float, limit: int
    ) -> list[Silence]:
        """``service``'s stretches without ``kind`` events from minute ``first`` to
        ``until`` that are longer than ``longer_than`` seconds (at most ``limit``), then the
        open one after its last event, each with the first and last minute it sent anything."""
        ...

    def counts(
        self, *, service: str | None = None, since: float, until: float | None = None
    ) -> list[MinuteCount]:
        """Oldest first, minutes starting at or after ``since`` (and before ``until``)."""
        ...

    def prune(self, before: float) -> int:
        """Forget what happened before this Unix time; return how many rows went."""
        ...

    def close(self) -> None: ...
