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
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[JournalEntry]:
        """Newest first; ``since``: only entries after this Unix time; ``before_id``: only
        entries older than that one (the next page)."""
        ...

    def counts(self, *, service: str | None = None, since: float) -> list[MinuteCount]:
        """Oldest first, minutes starting at or after ``since``."""
        ...

    def prune(self, before: float) -> int:
        """Forget what happened before this Unix time; return how many rows went."""
        ...

    def close(self) -> None: ...
