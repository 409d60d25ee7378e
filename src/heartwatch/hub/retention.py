"""Retention: what is older than ``[hub] retention`` deleted, a little at a time.

Once an hour (and a minute after the start), one hub at a time (a session advisory lock
taken with ``pg_try_advisory_lock`` on a connection of its own: a hub that does not get it
skips this round) deletes, by the hub's clock:

- events received more than ``retention`` ago (``received_at``; an agent's clock may be off),
- per-minute counts of minutes more than ``retention`` ago,
- commands finished (not ``sent``/``accepted``) more than ``retention`` ago,
- the log relay's ``tail`` leases an hour after they were issued, once expired (one every
  few seconds per viewer: history nobody reads),
- alerts created more than ``retention`` ago,
- with ``[hub] forget_after``: hosts unreachable that long (their services with them, as
  ``DELETE /api/v1/hosts/{host}``; NOTIFYed so the pages drop them).

Each statement deletes at most ``BATCH`` rows (the oldest first when an index allows, else
any), with a ``PAUSE`` between, so ingest is never held behind one long delete and a backlog
of years is worked off over several rounds (at most ``MAX_BATCHES`` statements per table a
round). A database that fails makes a round end; the next one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from loguru import logger

from heartwatch.core.redact import redact
from heartwatch.hub.queries import CHANNEL

INTERVAL: Final = 3600.0
FIRST_DELAY: Final = 60.0
BATCH: Final = 10_000
PAUSE: Final = 0.2  # seconds between two statements
MAX_BATCHES: Final = 500  # per table per round: 5 M rows
TAIL_KEPT: Final = 3600.0  # seconds a finished tail lease is kept
LOCK_KEY: Final = 0x68770001  # pg_try_advisory_lock: "hw" 1, one pruning hub at a time

# (what, the statement deleting one batch of it: %(cutoff)s is seconds ago, %(batch)s a count)
_PRUNES: Final = (
    (
        "events",
        "DELETE FROM events WHERE ctid = ANY(ARRAY(SELECT ctid FROM events"
        " WHERE received_at < now() - make_interval(secs => %(cutoff)s) LIMIT %(batch)s))",
    ),
    (
        "counts",
        "DELETE FROM counts WHERE ctid = ANY(ARRAY(SELECT ctid FROM counts"
        " WHERE minute < extract(epoch FROM now())::bigint - %(cutoff)s::bigint"
        " LIMIT %(batch)s))",
    ),
    (
        "commands",
        "DELETE FROM commands WHERE ctid = ANY(ARRAY(SELECT ctid FROM commands"
        " WHERE status NOT IN ('sent', 'accepted')"
        " AND updated_at < now() - make_interval(secs => %(cutoff)s) LIMIT %(batch)s))",
    ),
    (
        "tail leases",
        "DELETE FROM commands WHERE ctid = ANY(ARRAY(SELECT ctid FROM commands"
        " WHERE verb = 'tail' AND issued_at < extract(epoch FROM now()) - %(tail)s"
        " AND (status NOT IN ('sent', 'accepted') OR expires_at < extract(epoch FROM now()))"
        " LIMIT %(batch)s))",
    ),
    (
        "alerts",
        "DELETE FROM alerts WHERE ctid = ANY(ARRAY(SELECT ctid FROM alerts"
        " WHERE created_at < now() - make_interval(secs => %(cutoff)s) LIMIT %(batch)s))",
    ),
)


@dataclass(slots=True)
class Pruned:
    """What one round deleted, by table (``ran``: False when another hub held the lock)."""

    ran: bool = False
    rows: dict[str, int] = field(default_factory=dict)
    forgotten: list[str] = field(default_factory=list)


class Retention:
    """Prunes the database on a timer (``start``), or once (``prune``)."""

    def __init__(
        self,
        database: str,
        retention: float,
        forget_after: float | None = None,
        *,
        batch: int = BATCH,
        pause: float = PAUSE,
        interval: float = INTERVAL,
        first_delay: float = FIRST_DELAY,
    ) -> None:
        self.database = database
        self.retention = retention
        self.forget_after = forget_after
        self.batch = batch
        self.pause = pause
        self.interval = interval
        self.first_delay = first_delay
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hub retention")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        await asyncio.sleep(self.first_delay)
        while True:
            try:
                pruned = await self.prune()
                if pruned.ran and (any(pruned.rows.values()) or pruned.forgotten):
                    logger.info(
                        "hub retention: deleted {}{}",
                        ", ".join(f"{n} {what}" for what, n in pruned.rows.items() if n) or "-",
                        f"; forgot hosts {', '.join(pruned.forgotten)}" if pruned.forgotten else "",
                    )
            except (psycopg.Error, OSError) as error:
                logger.warning(
                    "hub retention: the database failed ({}); again in {} s",
                    redact(str(error).strip())[:200],
                    self.interval,
                )
            await asyncio.sleep(self.interval)

    async def prune(self) -> Pruned:
        """One round, if this hub gets the lock (else ``ran`` is False)."""
        pruned = Pruned()
        connection = await psycopg.AsyncConnection.connect(
            self.database, autocommit=True, connect_timeout=10
        )
        async with connection:
            cursor = await connection.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
            row = await cursor.fetchone()
            if row is None or not row[0]:
                return pruned
            pruned.ran = True
            try:
                if self.forget_after is not None:
                    pruned.forgotten = await self._forget(connection, self.forget_after)
                for what, statement in _PRUNES:
                    pruned.rows[what] = await self._batches(connection, statement)
            finally:
                with contextlib.suppress(psycopg.Error):
                    await connection.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
        return pruned

    async def _batches(
        self, connection: psycopg.AsyncConnection[tuple[Any, ...]], statement: str
    ) -> int:
        params = {"cutoff": self.retention, "batch": self.batch, "tail": TAIL_KEPT}
        total = 0
        for _ in range(MAX_BATCHES):
            cursor = await connection.execute(statement, params)
            total += cursor.rowcount
            if cursor.rowcount < self.batch:
                break
            await asyncio.sleep(self.pause)
        return total

    async def _forget(
        self, connection: psycopg.AsyncConnection[tuple[Any, ...]], after: float
    ) -> list[str]:
        cursor = await connection.execute(
            "DELETE FROM hosts WHERE state = 'unreachable'"
            " AND state_since < now() - make_interval(secs => %s) RETURNING host",
            [after],
        )
        hosts = sorted(host for (host,) in await cursor.fetchall())
        if hosts:
            payload = json.dumps({"hosts": hosts})
            if len(payload) > 7000:
                payload = json.dumps({"all": True})
            await connection.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])
        return hosts
