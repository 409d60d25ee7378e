"""The host sweep: silent hosts made stale, then unreachable, by the database's clock.

About once a second: read every host that is not unreachable with the silence the database
measures (``now() - last_seen``: one clock for all hubs), decide with ``core/hoststates.py``,
and write the changes in ONE statement that changes a row only if it is still as it was read
(same state, same ``last_seen``) — a compare-and-set. Two hubs sweeping at once: exactly one
write changes each row, and only that hub (``RETURNING``) raises the host's alert; a message
that came meanwhile (``last_seen`` moved) wins over the sweep. Changes are NOTIFYed.

Silence counts only while this hub could hear (``core/hoststates.py`` rule 3): ``ears`` says,
at each sweep, whether the broker is connected and the ingest is writing and caught up; the
sweep's own database failures count too. While deaf, and for ``start_grace`` after hearing
again, no host goes unreachable (a database outage longer than ``unreachable_after`` with
every host still heartbeating must not alert them all).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import psycopg
from loguru import logger

from heartwatch.core.hoststates import (
    Ears,
    Hearing,
    HostAlertKind,
    HostRules,
    HostState,
    host_alert,
)
from heartwatch.hub.store import CHANNEL, BatchResult, FleetStore, Storable

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from heartwatch.hub.ingest import Ingest

SWEEP_INTERVAL: Final = 1.0


@dataclass(frozen=True, slots=True)
class HostChange:
    host: str
    previous: HostState
    state: HostState
    since: float  # unix time of the change (the database's clock)
    silent_for: float


class HostSweeper:
    """Sweeps ``hosts`` (``sweep``), on a timer once started; ``on_alert`` gets each change
    that calls for an alert, only in the hub whose write made the change. ``ears``: this
    hub's hearing now (default: always hears, from ``started``)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        rules: HostRules,
        on_alert: Callable[[str, HostAlertKind, float, float], None] = lambda *_: None,
        *,
        interval: float = SWEEP_INTERVAL,
        started: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        ears: Callable[[], Ears] = Ears,
    ) -> None:
        self.pool = pool
        self.rules = rules
        self.on_alert = on_alert
        self.interval = interval
        self._monotonic = monotonic
        self.started = monotonic() if started is None else started
        self.ears = ears
        self.hearing = Hearing(rules, self.started)
        self._database_ok = True  # the last sweep's database work went through
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hub host sweep")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.sweep()
                if failing:
                    logger.info("hub host sweep: the database answers again")
                failing = False
            except (psycopg.Error, OSError) as error:
                if not failing:
                    logger.warning(
                        "hub host sweep: the database failed ({}); trying on", type(error).__name__
                    )
                failing = True
            await asyncio.sleep(self.interval)

    async def sweep(self) -> list[HostChange]:
        """One sweep: the changes this hub's write made (each also handed to ``on_alert``)."""
        ears = self.ears()
        if not self._database_ok:
            ears = replace(ears, database=False)
        heard_for = self.hearing.observe(self._monotonic(), ears)
        try:
            changes = await self._sweep(heard_for)
        except (psycopg.Error, OSError):
            self._database_ok = False
            raise
        self._database_ok = True
        for change in changes:
            logger.info(
                "host {}: {} -> {} (silent {:.1f} s)",
                change.host,
                change.previous,
                change.state,
                change.silent_for,
            )
            kind = host_alert(change.previous, change.state)
            if kind is not None:
                self.on_alert(change.host, kind, change.since, change.silent_for)
        return changes

    async def _sweep(self, heard_for: float | None) -> list[HostChange]:
        async with self.pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT host, state, last_seen, extract(epoch FROM now() - last_seen)::float8"
                " FROM hosts WHERE state <> %s",
                [HostState.UNREACHABLE.value],
            )
            planned = []
            for host, state, last_seen, silent_for in await cursor.fetchall():
                current = HostState(state)
                new = self.rules.swept(current, silent_for, heard_for)
                if new is not current:
                    planned.append((host, current.value, new.value, last_seen, silent_for))
            if not planned:
                return []
            planned.sort()
            async with connection.transaction():
                cursor = await connection.execute(
                    "UPDATE hosts h SET state = u.new, state_since = now()"
                    " FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[],"
                    " %s::float8[]) AS u(host, old, new, last_seen, silent_for)"
                    " WHERE h.host = u.host AND h.state = u.old AND h.last_seen = u.last_seen"
                    " RETURNING h.host, u.old, u.new, extract(epoch FROM h.state_since)::float8,"
                    " u.silent_for",
                    [list(column) for column in zip(*planned, strict=True)],
                )
                changes = [
                    HostChange(row[0], HostState(row[1]), HostState(row[2]), row[3], row[4])
                    for row in await cursor.fetchall()
                ]
                if changes:
                    payload = BatchResult(hosts={change.host for change in changes})
                    await connection.execute(
                        "SELECT pg_notify(%s, %s)", [CHANNEL, payload.notify_payload()]
                    )
        return changes


class HearingStore(FleetStore):
    """The store the ingest writes through, keeping what the host sweep must know of this
    hub's hearing: whether the database failed the last write (a connection's failure, not
    a refusal of some data), and since when a write has been waiting to succeed (a backlog:
    the database away, a message that cannot be written, an ingest behind)."""

    def __init__(
        self, pool: AsyncConnectionPool[Any], monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(pool)
        self.failing = False
        self.waiting_since: float | None = None
        self._monotonic = monotonic

    async def write_batch(self, batch: Sequence[Storable]) -> BatchResult:
        if self.waiting_since is None:
            self.waiting_since = self._monotonic()
        try:
            result = await super().write_batch(batch)
        except (psycopg.OperationalError, OSError):
            self.failing = True
            raise
        self.failing = False
        self.waiting_since = None
        return result


def ingest_ears(
    ingest: Ingest, store: HearingStore, monotonic: Callable[[], float] = time.monotonic
) -> Ears:
    """This hub's hearing through ``ingest`` and its ``store``: deaf before the broker is
    first reached and while its connection is down, while the database fails the writes,
    and (the rules judge the age) while a write waits to succeed."""
    connection = ingest.connection
    waiting = store.waiting_since
    return Ears(
        broker=connection is not None and connection.connected.is_set(),
        database=not store.failing,
        backlog=0.0 if waiting is None else monotonic() - waiting,
    )
