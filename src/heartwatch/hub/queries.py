"""What the hub's API and feed read from PostgreSQL: the fleet, a host, events, commands.

One query per table, rows turned into plain dicts in the API's shapes (``docs/api.md``).
JSON columns are read as text and passed through as ``orjson.Fragment``: a fleet of 5,000
services is 5,000 agent status objects, and decoding them only to encode them again would
be most of an answer's time. So these dicts are written with ``orjson`` (``dumps``), never
``json``.

A service's ``state`` is what the hub can vouch for: while its host is unreachable it is
``unknown`` (``last_state`` keeps what the agent last said), since a silent host's services
may be running or not; nothing here ever asks an agent.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

UNKNOWN: Final = "unknown"
UNREACHABLE: Final = "unreachable"
# States that want a person's eyes (counted in a host's ``problems``, listed first).
PROBLEM_STATES: Final = frozenset({"unresponsive", "restarting", "backoff", "failed", UNKNOWN})
# Seconds a request waits for one of the pool's connections: a database that is away makes
# the answer a quick 503 (api.py), not a request that hangs.
DB_TIMEOUT: Final = 1.0
# A service's name as the agent's configuration allows it (config.py), or an instance's
# (``name@N``); a command's id as the hub makes them (hex), leniently.
_SERVICE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(@[0-9]{1,4})?")
_COMMAND_ID: Final = re.compile(r"[A-Za-z0-9_.-]{1,128}")
CHANNEL: Final = "heartwatch_fleet"  # as hub/store.py NOTIFYs
MAX_EVENTS: Final = 1000
DEFAULT_EVENTS: Final = 100
MAX_COMMANDS: Final = 1000

Row = dict[str, Any]


def _status_field(key: str, json_type: str, sql_type: str) -> str:
    """A field of the agent's status JSON, or NULL if the agent sent anything else there."""
    return (
        f"CASE WHEN jsonb_typeof(s.status->'{key}') = '{json_type}' "
        f"THEN (s.status->>'{key}')::{sql_type} END"
    )


_HOST_COLUMNS = (
    "host, state, labels::text, boot, version, config_hash, "
    "extract(epoch FROM clock_timestamp() - last_seen)::float8, "
    "extract(epoch FROM state_since)::float8"
)
_SERVICE_COLUMNS = ", ".join(
    [
        "s.host, s.service, s.instance_of, s.state, s.reason, s.since",
        _status_field("pid", "number", "float8"),
        _status_field("restarts", "number", "float8"),
        _status_field("ready", "boolean", "boolean"),
        _status_field("uptime", "number", "float8"),
        _status_field("last_heartbeat_age", "number", "float8"),
        "s.status::text, h.state",
    ]
)
_SERVICES_FROM = "services s JOIN hosts h ON h.host = s.host"
_EVENT_COLUMNS = "host, boot, seq, at, type, kind, service, reason, state, previous, detail::text"
_COMMAND_COLUMNS = (
    "id, host, service, verb, args::text, status, reason, issued_at, expires_at, issued_by"
)


def is_service_name(name: str) -> bool:
    return _SERVICE_NAME.fullmatch(name) is not None


def is_command_id(command_id: str) -> bool:
    return _COMMAND_ID.fullmatch(command_id) is not None


def _fragment(text: str | None) -> Any:
    return None if text is None else orjson.Fragment(text)


def host_row(row: Sequence[Any], services: int = 0, problems: int = 0) -> Row:
    return {
        "host": row[0],
        "state": row[1],
        "labels": _fragment(row[2]),
        "boot": row[3],
        "version": row[4],
        "config_hash": row[5],
        "last_seen_age": round(max(0.0, row[6]), 3),
        "state_since": row[7],
        "services": services,
        "problems": problems,
    }


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def service_row(row: Sequence[Any]) -> Row:
    host_state = row[12]
    return {
        "host": row[0],
        "name": row[1],
        "instance_of": row[2],
        "state": UNKNOWN if host_state == UNREACHABLE else row[3],
        "last_state": row[3],
        "reason": row[4],
        "since": row[5],
        "pid": _int(row[6]),
        "restarts": _int(row[7]),
        "ready": row[8],
        "uptime": row[9],
        "last_heartbeat_age_at_report": row[10],
        "status": _fragment(row[11]),
    }


def event_row(row: Sequence[Any]) -> Row:
    return {
        "host": row[0],
        "boot": row[1],
        "seq": row[2],
        "at": row[3],
        "type": row[4],
        "kind": row[5],
        "service": row[6],
        "reason": row[7],
        "state": row[8],
        "previous": row[9],
        "detail": _fragment(row[10]),
    }


def command_row(row: Sequence[Any]) -> Row:
    return {
        "id": row[0],
        "host": row[1],
        "service": row[2],
        "verb": row[3],
        "args": _fragment(row[4]),
        "status": row[5],
        "reason": row[6],
        "issued_at": row[7],
        "expires_at": row[8],
        "issued_by": row[9],
    }


def _with_counts(hosts: Iterable[Sequence[Any]], services: Sequence[Row]) -> list[Row]:
    counts: dict[str, list[int]] = {}
    for service in services:
        tally = counts.setdefault(service["host"], [0, 0])
        tally[0] += 1
        if service["state"] in PROBLEM_STATES:
            tally[1] += 1
    return [host_row(row, *counts.get(row[0], (0, 0))) for row in hosts]


async def _all(connection: AsyncConnection[Any], sql: str, params: Sequence[Any] = ()) -> list[Any]:
    cursor = await connection.execute(sql, params)
    return await cursor.fetchall()


_LIGHT_COLUMNS = (
    "s.host, s.service, s.instance_of, s.state, s.reason, s.since, s.updated_seq, "
    "s.updated_at, h.state"
)
_HEAVY_COLUMNS = ", ".join(
    [
        "s.host, s.service, s.updated_seq, s.updated_at",
        _status_field("pid", "number", "float8"),
        _status_field("restarts", "number", "float8"),
        _status_field("ready", "boolean", "boolean"),
        _status_field("uptime", "number", "float8"),
        _status_field("last_heartbeat_age", "number", "float8"),
        "s.status::text",
    ]
)


class StatusCache:
    """Each service's agent status as text (and the fields read from it), kept while its
    version (``updated_seq``, ``updated_at``) stays: PostgreSQL takes ~20 µs to write a
    status as text, and a fleet answer with 5,000 of them would spend most of its time
    there; a status changes far less often than it is read."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[tuple[Any, Any], tuple[Any, ...]]] = {}

    async def statuses(
        self, connection: AsyncConnection[Any], light: Sequence[Sequence[Any]]
    ) -> list[tuple[Any, ...]]:
        """The status part (pid, restarts, ready, uptime, heartbeat age, text) of each row."""
        entries = self._entries
        stale = [
            (row[0], row[1])
            for row in light
            if (found := entries.get((row[0], row[1]))) is None or found[0] != (row[6], row[7])
        ]
        if stale:
            if len(stale) * 2 > len(light):
                fresh = await _all(connection, f"SELECT {_HEAVY_COLUMNS} FROM services s")
            else:
                fresh = await _all(
                    connection,
                    f"SELECT {_HEAVY_COLUMNS} FROM services s WHERE (s.host, s.service) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                    [[h for h, _ in stale], [n for _, n in stale]],
                )
            for row in fresh:
                entries[(row[0], row[1])] = ((row[2], row[3]), tuple(row[4:]))
            if len(entries) > 2 * len(light) + 1000:  # services gone: forget them
                keep = {(row[0], row[1]) for row in light}
                self._entries = entries = {k: v for k, v in entries.items() if k in keep}
        missing = (None, None, None, None, None, "{}")  # removed between the two reads
        return [entries.get((row[0], row[1]), (None, missing))[1] for row in light]


async def read_fleet(pool: AsyncConnectionPool[Any], cache: StatusCache | None = None) -> Row:
    """``GET /api/v1/fleet``: every host and every service, in one trip per table (and one
    for the statuses that changed since ``cache`` last saw them)."""
    cache = cache or StatusCache()
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        hosts = await _all(connection, f"SELECT {_HOST_COLUMNS} FROM hosts ORDER BY host")
        light = await _all(
            connection,
            f"SELECT {_LIGHT_COLUMNS} FROM {_SERVICES_FROM} ORDER BY s.host, s.service",
        )
        heavy = await cache.statuses(connection, light)
    services = [
        service_row((*row[:6], *status, row[8])) for row, status in zip(light, heavy, strict=True)
    ]
    return {
        "generated_at": time.time(),
        "hosts": _with_counts(hosts, services),
        "services": services,
    }


async def read_hosts(pool: AsyncConnectionPool[Any]) -> list[Row]:
    """Every host with its counts (no service list)."""
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        hosts = await _all(connection, f"SELECT {_HOST_COLUMNS} FROM hosts ORDER BY host")
        counted = await _all(
            connection, _COUNTS_SQL, [sorted(PROBLEM_STATES), UNREACHABLE, None, None]
        )
    tallies = {row[0]: (row[1], row[2]) for row in counted}
    return [host_row(row, *tallies.get(row[0], (0, 0))) for row in hosts]


async def read_host(pool: AsyncConnectionPool[Any], host: str) -> Row | None:
    """One host with its services under ``service_list``; ``None``: no such host."""
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        hosts = await _all(connection, f"SELECT {_HOST_COLUMNS} FROM hosts WHERE host = %s", [host])
        if not hosts:
            return None
        rows = await _all(
            connection,
            f"SELECT {_SERVICE_COLUMNS} FROM {_SERVICES_FROM} WHERE s.host = %s ORDER BY s.service",
            [host],
        )
    services = [service_row(row) for row in rows]
    answer = _with_counts(hosts, services)[0]
    answer["service_list"] = services
    return answer


# Each host's services and problems (all hosts when the third parameter is NULL).
_COUNTS_SQL = (
    "SELECT s.host, count(*), count(*) FILTER (WHERE s.state = ANY(%s) OR h.state = %s) "
    "FROM services s JOIN hosts h ON h.host = s.host "
    "WHERE %s::text[] IS NULL OR s.host = ANY(%s) GROUP BY s.host"
)


async def read_changes(
    connection: AsyncConnection[Any],
    hosts: Sequence[str],
    services: Sequence[tuple[str, str]],
    commands: Sequence[str],
) -> tuple[list[Row], list[Row], list[tuple[str, str]], list[Row]]:
    """What a change notice names, as it is now: the hosts (with counts), the services, the
    services named that are gone (removed), and the commands."""
    host_rows: list[Row] = []
    if hosts:
        found = await _all(
            connection, f"SELECT {_HOST_COLUMNS} FROM hosts WHERE host = ANY(%s)", [list(hosts)]
        )
        # A host's counts cover all its services, changed or not.
        counted = await _all(
            connection,
            _COUNTS_SQL,
            [sorted(PROBLEM_STATES), UNREACHABLE, list(hosts), list(hosts)],
        )
        tallies = {row[0]: (row[1], row[2]) for row in counted}
        host_rows = [host_row(row, *tallies.get(row[0], (0, 0))) for row in found]
    service_rows: list[Row] = []
    removed: list[tuple[str, str]] = []
    if services:
        wanted = list(dict.fromkeys(services))
        found = await _all(
            connection,
            f"SELECT {_SERVICE_COLUMNS} FROM {_SERVICES_FROM} "
            "WHERE (s.host, s.service) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
            [[h for h, _ in wanted], [s for _, s in wanted]],
        )
        service_rows = [service_row(row) for row in found]
        present = {(row["host"], row["name"]) for row in service_rows}
        removed = [pair for pair in wanted if pair not in present]
    command_rows: list[Row] = []
    if commands:
        found = await _all(
            connection,
            f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = ANY(%s)",
            [list(commands)],
        )
        command_rows = [command_row(row) for row in found]
    return host_rows, service_rows, removed, command_rows


async def read_host_services(pool: AsyncConnectionPool[Any], host: str) -> list[Row]:
    """Every service of a host (for the feed, when a host's state changes theirs)."""
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        rows = await _all(
            connection,
            f"SELECT {_SERVICE_COLUMNS} FROM {_SERVICES_FROM} WHERE s.host = %s ORDER BY s.service",
            [host],
        )
    return [service_row(row) for row in rows]


async def known_targets(
    pool: AsyncConnectionPool[Any], hosts: Sequence[str]
) -> dict[str, list[tuple[str, str | None]]]:
    """For each of ``hosts`` that exists: its services and their ``instance_of``, by name."""
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        found = await _all(connection, "SELECT host FROM hosts WHERE host = ANY(%s)", [list(hosts)])
        rows = await _all(
            connection,
            "SELECT host, service, instance_of FROM services WHERE host = ANY(%s) "
            "ORDER BY host, service",
            [list(hosts)],
        )
    known: dict[str, list[tuple[str, str | None]]] = {row[0]: [] for row in found}
    for host, service, instance_of in rows:
        known.setdefault(host, []).append((service, instance_of))
    return known


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventCursor:
    """Where a page of events ended: the next page is everything strictly older."""

    at: float
    host: str
    boot: str
    seq: int

    def text(self) -> str:
        return f"{self.at!r},{self.host},{self.boot},{self.seq}"

    @classmethod
    def parse(cls, text: str) -> EventCursor:
        """Raises ``ValueError`` for anything but what ``text()`` wrote."""
        parts = text.split(",")
        if len(parts) != 4:
            raise ValueError("a cursor is at,host,boot,seq (as next_before gives it)")
        at, host, boot, seq = parts
        return cls(float(at), host, boot, int(seq))


async def read_events(
    pool: AsyncConnectionPool[Any],
    *,
    host: str | None = None,
    service: str | None = None,
    kinds: Sequence[str] = (),
    since: float | None = None,
    until: float | None = None,
    before: EventCursor | None = None,
    limit: int = DEFAULT_EVENTS,
) -> tuple[list[Row], EventCursor | None]:
    """Events newest first (by the agent's ``at``, then host, boot, seq) and the cursor of
    the next page (``None``: this was the last)."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("host", host), ("service", service)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if kinds:
        where.append("kind = ANY(%s)")
        params.append(list(kinds))
    if since is not None:
        where.append("at >= %s")
        params.append(since)
    if until is not None:
        where.append("at <= %s")
        params.append(until)
    if before is not None:
        # ``at <=`` alone is what an index range can use; the row comparison breaks the ties.
        where.append("at <= %s AND (at, host, boot, seq) < (%s, %s, %s, %s)")
        params.extend([before.at, before.at, before.host, before.boot, before.seq])
    limit = max(1, min(limit, MAX_EVENTS))
    order = "ORDER BY at DESC, host DESC, boot DESC, seq DESC LIMIT %s"
    if host is not None:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} {order}"
        params.append(limit + 1)
    else:
        # Across hosts: the newest of each kind asked for through the (kind, at) index, or of
        # each host through its (host, at) index, then merged. The events table has no index
        # on ``at`` alone: one query over it would sort them all (1.3 s for 2 million).
        if kinds:
            where[where.index("kind = ANY(%s)")] = "e.kind = k.kind"
            params.remove(list(kinds))
            source, bind = "unnest(%s::text[]) AS k(kind)", [list(dict.fromkeys(kinds))]
        else:
            where.insert(0, "e.host = h.host")
            source, bind = "hosts h", []
        outer = ", ".join(f"e.{column.strip()}" for column in _EVENT_COLUMNS.split(","))
        sql = (
            f"SELECT {outer} FROM {source} CROSS JOIN LATERAL (SELECT * FROM events e "
            f"WHERE {' AND '.join(where) or 'true'} {order}) AS e "
            "ORDER BY e.at DESC, e.host DESC, e.boot DESC, e.seq DESC LIMIT %s"
        )
        params = [*bind, *params, limit + 1, limit + 1]
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        rows = await _all(connection, sql, params)
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = EventCursor(rows[-1][3], rows[-1][0], rows[-1][1], rows[-1][2]) if more else None
    return [event_row(row) for row in rows], cursor


LIVE_EVENT_WINDOW: Final = 120.0  # seconds of agent time a live push looks back (index range)


async def read_new_events(
    connection: AsyncConnection[Any],
    hosts: Sequence[str],
    after: tuple[Any, ...] | None,
    limit: int,
) -> tuple[list[Row], tuple[Any, ...]]:
    """Events of ``hosts`` stored after the mark ``after`` (received_at, host, boot, seq),
    oldest first, and the mark for the next read; a first read (``after`` None) takes what
    was stored in the last second.

    Read through the ``(host, at)`` index over the last ``LIVE_EVENT_WINDOW`` of the agents'
    time: a live feed shows what just happened; an outbox replayed from long ago is history
    (``/api/v1/events``). One ingesting hub commits its batches one after the other, so the
    marks only grow."""
    if after is None:
        start = "received_at > clock_timestamp() - interval '1 second'"
        params: list[Any] = []
    else:
        start = "(received_at, host, boot, seq) > (%s, %s, %s, %s)"
        params = list(after)
    cursor = await connection.execute(
        f"SELECT received_at, {_EVENT_COLUMNS} FROM events "
        "WHERE host = ANY(%s) AND at > extract(epoch FROM now())::float8 - %s "
        f"AND {start} ORDER BY received_at, host, boot, seq LIMIT %s",
        [list(hosts), LIVE_EVENT_WINDOW, *params, limit],
    )
    rows = await cursor.fetchall()
    if not rows:
        if after is not None:
            return [], after
        cursor = await connection.execute("SELECT clock_timestamp(), '', '', 0")
        return [], tuple(await cursor.fetchone() or ())
    last = rows[-1]
    return [event_row(row[1:]) for row in rows], (last[0], last[1], last[2], last[3])


# -- commands ----------------------------------------------------------------------------------


async def read_command(pool: AsyncConnectionPool[Any], command_id: str) -> Row | None:
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        rows = await _all(
            connection, f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = %s", [command_id]
        )
    return command_row(rows[0]) if rows else None


async def read_commands(
    pool: AsyncConnectionPool[Any],
    *,
    host: str | None = None,
    verbs: Sequence[str] = (),
    limit: int = 100,
) -> list[Row]:
    """Commands newest first, a host's if given; of ``verbs`` if given, else every verb but
    ``tail`` (the log relay's leases, renewed every few seconds while someone watches)."""
    where: list[str] = []
    params: list[Any] = []
    if host is not None:
        where.append("host = %s")
        params.append(host)
    if verbs:
        where.append("verb = ANY(%s)")
        params.append(list(verbs))
    else:
        where.append("verb <> 'tail'")
    limit = max(1, min(limit, MAX_COMMANDS))
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        rows = await _all(
            connection,
            f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE {' AND '.join(where)} "
            "ORDER BY issued_at DESC, id DESC LIMIT %s",
            [*params, limit],
        )
    return [command_row(row) for row in rows]


def dumps(value: Any) -> bytes:
    """An answer as JSON (the fragments above need orjson)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


async def read_log_target(
    pool: AsyncConnectionPool[Any], host: str, service: str
) -> tuple[str, float, bool] | None:
    """A host's state, seconds since it was last heard, and whether it has ``service``;
    ``None``: no such host."""
    async with pool.connection(timeout=DB_TIMEOUT) as connection:
        rows = await _all(
            connection,
            "SELECT state, extract(epoch FROM clock_timestamp() - last_seen)::float8, "
            "EXISTS (SELECT 1 FROM services WHERE host = %s AND service = %s) "
            "FROM hosts WHERE host = %s",
            [host, service, host],
        )
    return None if not rows else (rows[0][0], rows[0][1], rows[0][2])


async def forget_host(
    pool: AsyncConnectionPool[Any], host: str, *, force: bool = False
) -> tuple[str, list[str] | None] | None:
    """Delete ``host`` and its services (``ON DELETE CASCADE``; its events and commands stay:
    history), unless it still speaks (live or stale) and not ``force``. Returns its state and
    the services removed (None: refused, it still speaks); ``None``: no such host. The change
    is NOTIFYed: every hub's feed tells its pages the host is gone."""
    async with pool.connection(timeout=DB_TIMEOUT) as connection, connection.transaction():
        rows = await _all(connection, "SELECT state FROM hosts WHERE host = %s FOR UPDATE", [host])
        if not rows:
            return None
        state = rows[0][0]
        if state != UNREACHABLE and not force:
            return state, None
        services = await _all(
            connection, "SELECT service FROM services WHERE host = %s ORDER BY service", [host]
        )
        await connection.execute("DELETE FROM hosts WHERE host = %s", [host])
        await connection.execute(
            "SELECT pg_notify(%s, %s)", [CHANNEL, json.dumps({"hosts": [host]})]
        )
    return state, [service for (service,) in services]
