"""A host's past, from the events the hub stored: the answers of the agent's history API.

    GET /api/v1/hosts/{host}/history?since=&until=&window=&service=
    GET /api/v1/hosts/{host}/history/{service}?since=&until=&window=
    GET /api/v1/hosts/{host}/history/{service}/rates?since=&until=&window=&points=

The same shapes as the agent's ``/api/v1/history`` and ``/api/v1/history/{name}``
(``web/history_api.py``: its models, its window rules and bounds), computed by the same pure
code (``core/uptime.py``, ``core/recoveries.py``, ``core/rates.py``) from the same journal
entries and per-minute counts (the agent publishes both): the agent
published each one (``entry`` events, ``JournalEntry.to_json()`` as the body), so the hub
rebuilds them and reads them as the agent's store does (``store/sqlite.py``
``history_entries``, ``last_sign_of_life``, ``recoveries``, ``entries_around``), in SQL
against ``events``. Entries are ordered by the agent's clock, then its journal id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response

from heartwatch.core.journal import JournalEntry
from heartwatch.core.rates import DEFAULT_POINTS, MAX_POINTS, bucket_step, rates
from heartwatch.core.recoveries import TRIGGER_EXIT_LOOKBACK, members_of, recovery_steps
from heartwatch.core.uptime import UNKNOWN, History, killed_starts, service_history
from heartwatch.hub.queries import DB_TIMEOUT
from heartwatch.web.history_api import (
    MAX_ANSWER_ENTRIES,
    MAX_HISTORY_ENTRIES,
    MAX_OVERVIEW_SERVICES,
    MAX_RECOVERIES,
    RECOVERY_HORIZON,
    STEP_ENTRIES,
    GapOut,
    HistoryOverviewOut,
    RatesOut,
    RecoveryOut,
    ServiceHistoryOut,
    TimeQuery,
    WindowQuery,
    _json_off_loop,
    _strip,
    recovery_out,
    resolve_window,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

# A state no incident can be open across (the agent's store starts its walk at the last one).
SETTLED = ["running", "stopped", "stopping", "exited"]
_ENTRY_COLUMNS = (
    "(body->>'id')::bigint, at, kind, service, coalesce(reason, ''), state, previous, detail"
)


def _entry(row: Sequence[Any]) -> JournalEntry:
    return JournalEntry(
        id=int(row[0]),
        at=float(row[1]),
        kind=row[2],
        service=row[3],
        reason=row[4],
        state=row[5],
        previous=row[6],
        detail=row[7] if isinstance(row[7], dict) else None,
    )


async def _rows(connection: AsyncConnection[Any], sql: str, params: Sequence[Any]) -> list[Any]:
    cursor = await connection.execute(sql, params)
    return await cursor.fetchall()


async def history_entries(
    connection: AsyncConnection[Any],
    host: str,
    service: str,
    since: float,
    until: float,
    limit: int,
) -> list[JournalEntry]:
    """What ``service_history`` needs for [since, until]: from the service's last settled
    state before the window (or, never settled, the failure that began its trouble and its
    last state), with the daemon's last word before that, to ``until``."""
    entry = f"SELECT {_ENTRY_COLUMNS} FROM events WHERE host = %s AND type = 'entry' "
    settled = await _rows(
        connection,
        "SELECT at FROM events WHERE host = %s AND service = %s AND type = 'entry' "
        "AND kind = 'transition' AND at <= %s AND state = ANY(%s) ORDER BY at DESC LIMIT 1",
        [host, service, since, SETTLED],
    )
    seeds: list[Any] = []
    if settled:
        anchor = float(settled[0][0])
    else:
        anchor = since
        seeds += await _rows(
            connection,
            entry + "AND service = %s AND kind = 'transition' AND at <= %s "
            "AND detail @> '{\"failure\": true}' ORDER BY at LIMIT 1",
            [host, service, since],
        )
        seeds += await _rows(
            connection,
            entry + "AND service = %s AND kind = 'transition' AND at <= %s "
            "ORDER BY at DESC LIMIT 1",
            [host, service, since],
        )
    seeds += await _rows(
        connection,
        entry + "AND service IS NULL AND kind = 'daemon' AND at <= %s ORDER BY at DESC LIMIT 1",
        [host, anchor],
    )
    rows = await _rows(
        connection,
        f"SELECT * FROM ({entry} AND service = %s AND kind = 'transition' AND at >= %s "
        f"AND at <= %s UNION ALL {entry} AND service IS NULL AND kind = 'daemon' AND at > %s "
        "AND at <= %s) AS walk ORDER BY 2, 1 LIMIT %s",
        [host, service, anchor, until, host, anchor, until, limit],
    )
    unique = {(float(row[1]), int(row[0])): row for row in [*seeds, *rows]}
    return [_entry(unique[key]) for key in sorted(unique)]


async def last_sign_of_life(
    connection: AsyncConnection[Any], host: str, before: float
) -> float | None:
    """The agent's last sign of life before a start that no "stopping" preceded: its last
    entry before it, or the end of its last counted minute that ended before it."""
    found = await _rows(
        connection,
        "SELECT (SELECT at FROM events WHERE host = %s AND type = 'entry' AND at < %s "
        "ORDER BY at DESC LIMIT 1), (SELECT max(minute) FROM counts WHERE host = %s "
        "AND minute <= %s)",
        [host, before, host, before - 60],
    )
    entry_at, minute = found[0]
    times = [float(entry_at)] if entry_at is not None else []
    if minute is not None:
        times.append(float(minute) + 60)
    return max(times) if times else None


async def read_histories(
    pool: AsyncConnectionPool[Any], host: str, names: Sequence[str], since: float, until: float
) -> list[tuple[History, bool]]:
    """Each service's history over the window, and whether its entries were cut short."""
    limit = min(MAX_HISTORY_ENTRIES, max(1000, MAX_ANSWER_ENTRIES // max(1, len(names))))
    reads: list[tuple[list[JournalEntry], dict[int, float]]] = []
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        lives: dict[int, float | None] = {}
        for name in names:
            entries = await history_entries(connection, host, name, since, until, limit)
            for start in killed_starts(entries):
                if start.id not in lives:
                    lives[start.id] = await last_sign_of_life(connection, host, start.at)
            alive = {s.id: at for s in killed_starts(entries) if (at := lives[s.id]) is not None}
            reads.append((entries, alive))

    def compute() -> list[tuple[History, bool]]:
        found = []
        for name, (entries, alive) in zip(names, reads, strict=True):
            truncated = len(entries) >= limit
            history = service_history(
                entries,
                service=name,
                since=since,
                until=until,
                last_alive=alive,
                read_until=entries[-1].at if truncated else None,
            )
            found.append((history, truncated))
        return found

    return await asyncio.to_thread(compute)  # pure work off the loop, as the agent's


async def read_recoveries(
    pool: AsyncConnectionPool[Any], host: str, service: str, since: float, until: float
) -> list[RecoveryOut]:
    """The recoveries that touched ``service`` (newest first), each with its steps."""
    recovery = (
        f"SELECT {_ENTRY_COLUMNS} FROM events WHERE host = %s AND type = 'entry' "
        "AND kind = 'recovery' AND at >= %s AND at <= %s"
    )
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        found = [
            _entry(row)
            for row in await _rows(
                connection,
                recovery + " AND (service = %s OR detail->'members' ? %s) "
                "ORDER BY at DESC, 1 DESC LIMIT %s",
                [host, since, until, service, service, MAX_RECOVERIES],
            )
        ]
        if not found:
            return []
        later = [
            _entry(row)
            for row in await _rows(
                connection,
                recovery + " ORDER BY at DESC, 1 DESC LIMIT %s",
                [
                    host,
                    min(r.at for r in found),
                    max(r.at for r in found) + RECOVERY_HORIZON,
                    2 * MAX_RECOVERIES,
                ],
            )
        ]
        around = []
        for entry in found:
            rows = await _rows(
                connection,
                f"SELECT {_ENTRY_COLUMNS} FROM events WHERE host = %s AND type = 'entry' "
                "AND service = ANY(%s) AND at >= %s AND at <= %s ORDER BY at, 1 LIMIT %s",
                [
                    host,
                    members_of(entry),
                    entry.at - TRIGGER_EXIT_LOOKBACK,
                    entry.at + RECOVERY_HORIZON,
                    STEP_ENTRIES,
                ],
            )
            around.append([_entry(row) for row in rows])
    return await asyncio.to_thread(
        lambda: [
            recovery_out(recovery_steps(r, entries, later))
            for r, entries in zip(found, around, strict=True)
        ]
    )


async def read_rate_inputs(
    pool: AsyncConnectionPool[Any], host: str, service: str, first: int, until: float
) -> tuple[list[tuple[int, str, int]], dict[str, float]]:
    """The service's stored minutes from ``first`` to ``until`` (minute, kind, count), and
    each data kind's ``data_timeout`` as its agent last reported it."""
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        counts = await _rows(
            connection,
            "SELECT minute, kind, count FROM counts WHERE host = %s AND service = %s "
            "AND minute >= %s AND minute < %s",
            [host, service, first, until],
        )
        status = await _rows(
            connection,
            "SELECT status->'data' FROM services WHERE host = %s AND service = %s",
            [host, service],
        )
    data = status[0][0] if status and isinstance(status[0][0], dict) else {}
    timeouts = {
        str(kind): float(item["timeout"])
        for kind, item in data.items()
        if isinstance(item, dict)
        and isinstance(item.get("timeout"), int | float)
        and not isinstance(item.get("timeout"), bool)
        and item["timeout"] > 0
    }
    return [(int(m), str(k), int(c)) for m, k, c in counts], timeouts


async def _host_services(pool: AsyncConnectionPool[Any], host: str) -> list[str] | None:
    """The host's services now (``None``: no such host)."""
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        hosts = await _rows(connection, "SELECT 1 FROM hosts WHERE host = %s", [host])
        if not hosts:
            return None
        rows = await _rows(
            connection, "SELECT service FROM services WHERE host = %s ORDER BY service", [host]
        )
    return [row[0] for row in rows]


async def _known(pool: AsyncConnectionPool[Any], host: str, name: str, now: list[str]) -> None:
    """404 for a name that is neither the host's service now nor one with history there."""
    if name in now:
        return
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        if await _rows(
            connection,
            "SELECT 1 FROM events WHERE host = %s AND service = %s LIMIT 1",
            [host, name],
        ):
            return
    raise HTTPException(
        404, {"code": "unknown_service", "message": f"no service {name!r} on {host}"}
    )


async def _services_of(pool: AsyncConnectionPool[Any], host: str) -> list[str]:
    found = await _host_services(pool, host)
    if found is None:
        raise HTTPException(404, {"code": "unknown_host", "message": f"no host {host!r}"})
    return found


def create_hub_history_router(pool: AsyncConnectionPool[Any]) -> APIRouter:
    router = APIRouter()
    answers: dict[int | str, dict[str, Any]] = {
        404: {"description": "no such host, or no such service there, now or in the history"},
        422: {"description": "a bad range: since not before until, or too long"},
    }

    @router.get(
        "/api/v1/hosts/{host}/history",
        response_model=HistoryOverviewOut,
        tags=["history"],
        responses=answers,
    )
    async def host_history(
        host: str,
        since: TimeQuery = None,
        until: TimeQuery = None,
        window: WindowQuery = None,
        service: Annotated[
            list[str] | None,
            Query(description="only these services (repeatable); default: every one"),
        ] = None,
    ) -> Response:
        """Every service's strip on the host (as the agent's ``/api/v1/history``)."""
        start, end = resolve_window(since, until, window, time.time())
        now = await _services_of(pool, host)
        if service:
            names = list(dict.fromkeys(service))[:MAX_OVERVIEW_SERVICES]
            for name in names:
                await _known(pool, host, name, now)
        else:
            names = now[:MAX_OVERVIEW_SERVICES]
        histories = await read_histories(pool, host, names, start, end)
        return await _json_off_loop(
            lambda: HistoryOverviewOut(
                since=start,
                until=end,
                services=[
                    _strip(name, history, truncated, start, end)
                    for name, (history, truncated) in zip(names, histories, strict=True)
                ],
            )
        )

    @router.get(
        "/api/v1/hosts/{host}/history/{service}",
        response_model=ServiceHistoryOut,
        tags=["history"],
        responses=answers,
    )
    async def host_service_history(
        host: str,
        service: str,
        since: TimeQuery = None,
        until: TimeQuery = None,
        window: WindowQuery = None,
    ) -> Response:
        """One service's segments, summary, incidents and recoveries (as the agent's
        ``/api/v1/history/{name}``)."""
        start, end = resolve_window(since, until, window, time.time())
        await _known(pool, host, service, await _services_of(pool, host))
        ((history, truncated),) = await read_histories(pool, host, [service], start, end)
        recoveries = await read_recoveries(pool, host, service, start, end)
        return await _json_off_loop(
            lambda: ServiceHistoryOut(
                **dict(_strip(service, history, truncated, start, end)), recoveries=recoveries
            )
        )

    @router.get(
        "/api/v1/hosts/{host}/history/{service}/rates",
        response_model=RatesOut,
        tags=["history"],
        responses=answers,
    )
    async def host_service_rates(
        host: str,
        service: str,
        since: TimeQuery = None,
        until: TimeQuery = None,
        window: WindowQuery = None,
        points: Annotated[
            int, Query(ge=1, le=MAX_POINTS, description="at most this many buckets")
        ] = DEFAULT_POINTS,
    ) -> RatesOut:
        """Heartbeats and each data kind per minute, bucketed, with the gaps (as the agent's
        ``/api/v1/history/{name}/rates``), from the minutes the agent published."""
        start, end = resolve_window(since, until, window, time.time())
        await _known(pool, host, service, await _services_of(pool, host))
        ((history, _),) = await read_histories(pool, host, [service], start, end)
        absent = [(s.start, s.end) for s in history.segments if s.state == UNKNOWN]
        first, _, _ = bucket_step(start, end, points)
        counts, timeouts = await read_rate_inputs(pool, host, service, first, end)
        found = await asyncio.to_thread(
            lambda: rates(
                counts, since=start, until=end, points=points, timeouts=timeouts, absent=absent
            )
        )
        return RatesOut(
            service=service,
            since=start,
            until=end,
            step_seconds=found.step_seconds,
            times=found.times,
            kinds=found.kinds,
            timeouts=timeouts,
            gaps=[GapOut(kind=g.kind, start=g.start, end=g.end) for g in found.gaps],
        )

    return router
