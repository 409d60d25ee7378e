"""History, the driver: the journal and per-minute counts into the store, off the event loop.

The store is synchronous (``store/``); here it gets one worker thread of its own, so a slow
disk never delays a deadline. Journal entries are batched per loop turn; reads are queued on
the same thread *after* the writes already asked for, so an answer always includes every
entry made before the question.

Counts cost nothing on the hot path: the watchdog already counts messages and data events per
service. Once a minute (a timer at the wall-clock minute's end) the recorder takes the
difference from the previous reading and stores it as that minute's counts. The minute still
running is answered from memory. Every few hours the same timer prunes what is older than the
retention.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from loguru import logger

from heartwatch.core.journal import JournalEntry
from heartwatch.core.rates import Silence
from heartwatch.core.recoveries import members_of
from heartwatch.core.uptime import killed_starts
from heartwatch.core.wire import HEARTBEAT
from heartwatch.store import HistoryStore, MinuteCount

T = TypeVar("T")

PRUNE_EVERY_MINUTES = 360
MAX_SILENCES = 2000  # per kind and answer: a bound on the work of one chart

# service -> (messages, {data kind: count}): the watchdog's running totals.
Totals = Mapping[str, tuple[int, Mapping[str, int]]]


def count_differences(previous: Totals, current: Totals, minute: int) -> list[MinuteCount]:
    """What came between two readings of the totals, as counts of ``minute``.

    Heartbeats are the messages that were not data events (any message counts as alive).
    """
    counts = []
    for service, (messages, kinds) in current.items():
        old_messages, old_kinds = previous.get(service, (0, {}))
        data_total = 0
        for kind, total in kinds.items():
            grown = total - old_kinds.get(kind, 0)
            if grown > 0:
                counts.append(MinuteCount(minute, service, kind, grown))
                data_total += grown
        beats = messages - old_messages - data_total
        if beats > 0:
            counts.append(MinuteCount(minute, service, HEARTBEAT, beats))
    return counts


class Recorder:
    def __init__(
        self,
        store: HistoryStore,
        read_totals: Callable[[], Totals],
        *,
        retention: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._read_totals = read_totals
        self._retention = retention
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        self._pending: list[JournalEntry] = []
        self._flush_scheduled = False
        self._totals = _copy(read_totals())
        self._timer: asyncio.TimerHandle | None = None
        self._minutes = 0
        self._closed = False

    def start(self) -> None:
        """Prune once now, then sample at every minute's end."""
        self._submit(self._prune)
        self._arm()

    def receive(self, entry: JournalEntry) -> None:
        """A journal listener: store ``entry`` soon (batched per loop turn)."""
        if self._closed:
            return
        self._pending.append(entry)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    async def entries(
        self,
        *,
        service: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        kinds: Sequence[str] | None = None,
        limit: int = 100,
    ) -> list[JournalEntry]:
        return await self._read(
            lambda: self._store.entries(
                service=service,
                since=since,
                until=until,
                before_id=before_id,
                kinds=kinds,
                limit=limit,
            )
        )

    async def histories(
        self, services: Sequence[str], *, since: float, until: float, limit: int
    ) -> list[tuple[list[JournalEntry], dict[int, float]]]:
        """For each service, in one trip to the store's thread: the entries its history is
        computed from (``HistoryStore.history_entries``), and for each daemon start in them
        that followed a killed daemon, that daemon's last sign of life."""

        def read() -> list[tuple[list[JournalEntry], dict[int, float]]]:
            found = []
            lives: dict[int, float | None] = {}  # the same starts for every service
            for service in services:
                entries = self._store.history_entries(
                    service=service, since=since, until=until, limit=limit
                )
                for start in killed_starts(entries):
                    if start.id not in lives:
                        lives[start.id] = self._store.last_sign_of_life(start.id, start.at)
                alive = {
                    start.id: at
                    for start in killed_starts(entries)
                    if (at := lives[start.id]) is not None
                }
                found.append((entries, alive))
            return found

        return await self._read(read)

    async def recovery_reads(
        self,
        *,
        service: str | None,
        since: float | None,
        until: float | None,
        limit: int,
        lookback: float,
        horizon: float,
        step_limit: int,
    ) -> tuple[list[JournalEntry], list[JournalEntry], list[list[JournalEntry]]]:
        """In one trip to the store's thread: the recoveries (newest first, ``service``'s if
        given), every recovery up to ``horizon`` after the newest (a member's steps end at its
        next one), and for each recovery its members' entries from ``lookback`` before it to
        ``horizon`` after."""

        def read() -> tuple[list[JournalEntry], list[JournalEntry], list[list[JournalEntry]]]:
            found = self._store.recoveries(service=service, since=since, until=until, limit=limit)
            if not found:
                return [], [], []
            later = self._store.recoveries(
                since=min(r.at for r in found),
                until=max(r.at for r in found) + horizon,
                limit=2 * limit,
            )
            around = [
                self._store.entries_around(
                    services=members_of(r),
                    since=r.at - lookback,
                    until=r.at + horizon,
                    limit=step_limit,
                )
                for r in found
            ]
            return found, later, around

        return await self._read(read)

    async def rate_inputs(
        self,
        *,
        service: str,
        first: int,
        step: int,
        until: float,
        timeouts: Mapping[str, float],
    ) -> tuple[list[tuple[int, str, int]], list[Silence]]:
        """Bucket sums and the silences of each kind with a timeout, summed by the store in
        one trip to its thread, with the minute still running added."""
        limit = MAX_SILENCES

        def read() -> tuple[list[tuple[int, str, int]], list[Silence]]:
            totals = self._store.count_buckets(service=service, first=first, step=step, until=until)
            silences = [
                silence
                for kind, timeout in timeouts.items()
                for silence in self._store.silences(
                    service=service,
                    kind=kind,
                    first=first,
                    until=until,
                    longer_than=timeout,
                    limit=limit,
                )
            ]
            return totals, silences

        totals, silences = await self._read(read)
        current = [
            c for c in self.current_counts() if c.service == service and first <= c.minute < until
        ]
        if not current:
            return totals, silences
        totals += [((c.minute - first) // step, c.kind, c.count) for c in current]
        minute = current[0].minute
        sent = {c.kind for c in current}
        # The open silence after a kind's last stored event: the minute running may end it,
        # and it is a minute the service was alive in.
        for i, silence in enumerate(silences):
            if silence.quiet_to is None:
                silences[i] = Silence(
                    silence.kind,
                    silence.quiet_from,
                    minute if silence.kind in sent else None,
                    silence.first_alive if silence.first_alive is not None else minute,
                    minute if silence.kind not in sent else silence.last_alive,
                )
        return totals, silences

    async def counts(
        self, *, service: str | None = None, since: float, until: float | None = None
    ) -> list[MinuteCount]:
        """Stored minutes since ``since``, then the current minute's counts so far."""
        stored = await self._read(
            lambda: self._store.counts(service=service, since=since, until=until)
        )
        current = self.current_counts()
        if service is not None:
            current = [c for c in current if c.service == service]
        if until is not None:
            current = [c for c in current if c.minute < until]
        current = [c for c in current if c.minute >= since]
        return stored + current

    def current_counts(self) -> list[MinuteCount]:
        """The minute still running, counted so far (not stored yet)."""
        minute = int(self._clock()) // 60 * 60
        return count_differences(self._totals, self._read_totals(), minute)

    async def close(self) -> None:
        """Store the minute so far and everything pending, then let the store go."""
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._sample(int(self._clock()) // 60 * 60)
        self._flush()
        self._closed = True
        await asyncio.wrap_future(self._thread.submit(self._store.close))
        self._thread.shutdown(wait=True)

    # -- the minute timer ------------------------------------------------------------------

    def _arm(self) -> None:
        now = self._clock()
        boundary = (int(now) // 60 + 1) * 60
        self._timer = self._loop.call_at(
            self._loop.time() + boundary - now, self._on_minute, boundary - 60
        )

    def _on_minute(self, minute: int) -> None:
        self._sample(minute)
        self._minutes += 1
        if self._minutes % PRUNE_EVERY_MINUTES == 0:
            self._submit(self._prune)
        self._arm()

    def _sample(self, minute: int) -> None:
        totals = _copy(self._read_totals())
        counts = count_differences(self._totals, totals, minute)
        self._totals = totals
        if counts:
            self._submit(lambda: self._store.add_counts(counts))

    def _prune(self) -> None:
        gone = self._store.prune(self._clock() - self._retention)
        if gone:
            logger.info("history: pruned {} rows older than the retention", gone)

    # -- the worker thread -----------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._pending:
            batch, self._pending = self._pending, []
            self._submit(lambda: self._store.add_entries(batch))

    def _submit(self, job: Callable[[], object]) -> None:
        if self._closed:
            return
        future = self._thread.submit(job)
        future.add_done_callback(_log_failure)

    async def _read(self, job: Callable[[], T]) -> T:
        self._flush()  # what was journaled before the question is in the answer
        return await asyncio.wrap_future(self._thread.submit(job))


def _copy(totals: Totals) -> dict[str, tuple[int, dict[str, int]]]:
    return {service: (messages, dict(kinds)) for service, (messages, kinds) in totals.items()}


def _log_failure(future: Future[object]) -> None:
    error = future.exception()
    if error is not None:
        logger.opt(exception=error).error("history: a write failed")
