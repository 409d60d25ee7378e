"""The hub's writes: a batch of agents' messages into PostgreSQL in one transaction.

Idempotent: events are keyed on ``(host, boot, seq)``; a batch is COPY'd into a temporary
table and moved into ``events`` with ``ON CONFLICT DO NOTHING RETURNING``, so an event stored
before (a redelivery, the other hub) is stored once, and only the *newly* stored events move
current state and raise alerts. Steps of ``write_batch``, in one transaction:

1. Every host in the batch: created if new (with the boot it speaks of), locked, seen now
   (``last_seen`` = the database's ``now()``, the one clock all hubs share) and live again;
   those that were unreachable are *back*.
2. Reports, in arrival order. Boots are ordered by arrival, never by the agent's clock (one
   restarted with its clock behind is as current as any): a report of a boot the host never
   had as current (not in ``boots``) makes it current; a report of one that was current
   before (in ``boots``, replaced since) is late and ignored. A switch sets the services'
   ``updated_seq`` to 0 (their states came from the old boot; the new boot's entries replace
   them) and ``snapshot_at`` to NULL (not reconciled yet). A snapshot reconciles: its services
   replace the host's (each one unless a later event already moved it: ``updated_seq`` <= the
   snapshot's seq; a name listed twice: the last item), those it no longer lists are deleted.
   Labels, config hash, version and intervals come from either report.
3. Events: stored once (above); new entries of the current boot that say something of a
   service move its row (``transition``: state, reason, since; ``note``: reason; ``restart``:
   the new pid and restart counts; ``exit``: no pid, the last exit), a service's entries of
   the batch folded in order into one change, applied only if later than what moved it
   last (``updated_seq``); new counts
   are added to ``counts``; new replies move their command (only the command's host may
   answer it, and a finished command never moves again: never done → accepted). An event of
   the current boot numbered past the next one expected (``last_seq`` + 1) is a *gap*
   (``BatchResult.gaps``): events before it were lost, or come late.
4. ``pg_notify('heartwatch_fleet', …)`` names what changed; it is delivered at commit.

Locks are taken in host order (fewer deadlocks with the host sweep; one that happens anyway
rolls the batch back and the caller retries it, as after any database failure:
``database_failed`` tells those from a refusal of the data).

Texts are kept, mended where PostgreSQL could not keep them (``check_storable``): a NUL or a
lone surrogate (both can come as JSON escapes) becomes U+FFFD, a text longer than
``TEXT_MAX`` is cut (saying so), rather than the whole event refused for one character.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import psycopg
from loguru import logger
from psycopg_pool import AsyncConnectionPool

from heartwatch.core.fleetcommands import REPLY_STATUSES
from heartwatch.core.fleetwire import (
    Envelope,
    FleetWireError,
    decode_batch,
    parse_routing_key,
)

CHANNEL: Final = "heartwatch_fleet"
MAX_NOTIFY_BYTES: Final = 7000  # beyond: {"all": true} (PostgreSQL's limit is 8000)
_ENTRY_TEXT_FIELDS: Final = ("kind", "service", "reason", "state", "previous")
_TERMINAL_STATUSES: Final = ("done", "failed", "refused", "expired")
TEXT_MAX: Final = 64 * 1024  # characters of one text in a body; beyond: cut
TRUNCATED: Final = "…(truncated)"
# What PostgreSQL's text cannot hold: NUL, and surrogates (a Python string holds one only when
# it is lone: JSON's "\ud800" decodes to it; a proper pair decodes to one character).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The JSON escapes of those (a false alarm, e.g. an escaped backslash before "u0000", or a
# proper pair, costs only a look at each text).
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
# SQLSTATE classes of a database that failed, not of the data: connection exception (08),
# transaction rollback (40: serialization failure, deadlock), insufficient resources (53),
# operator intervention (57: admin shutdown, a cancelled query), system error (58).
_FAILED_CLASSES: Final = frozenset({"08", "40", "53", "57", "58"})


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A journal entry this batch stored for the first time (what alerts are decided from)."""

    host: str
    boot: str
    seq: int
    at: float
    kind: str
    service: str | None
    state: str | None
    reason: str
    detail: Mapping[str, Any]
    current_boot: bool  # of the host's current boot (an older boot's entry moves nothing)


# Entries that change what the hub shows of a service (the others are only stored).
_MOVING_KINDS: Final = frozenset({"transition", "note", "restart", "exit"})
_RESTART_FIELDS: Final = ("pid", "restarts", "restarts_requested")


@dataclass(slots=True)
class ServiceMove:
    """One service's entries of a batch folded, in order, into one change of its row: the
    columns (None: unchanged) and a patch of its status item (the agent's ServiceStatus)."""

    state: str | None = None
    reason: str | None = None
    since: float | None = None
    seq: int = 0
    patch: dict[str, Any] = field(default_factory=dict)

    def receive(self, entry: StoredEntry) -> ServiceMove:
        self.seq = entry.seq
        if entry.kind in ("transition", "note") and entry.state is not None:
            self.state, self.reason = entry.state, entry.reason
            self.patch.update(state=entry.state, reason=entry.reason)
            if entry.kind == "transition":
                self.since = entry.at
        elif entry.kind == "restart":
            # Its detail carries the new run's pid and the restart counts.
            for name in _RESTART_FIELDS:
                value = entry.detail.get(name)
                if type(value) is int:
                    self.patch[name] = value
        elif entry.kind == "exit":
            self.patch.update(pid=None, last_exit=entry.reason)
        return self


@dataclass(slots=True)
class BatchResult:
    events: int = 0  # events stored for the first time
    entries: list[StoredEntry] = field(default_factory=list)
    back: list[tuple[str, float]] = field(default_factory=list)  # (host, unreachable since)
    hosts: set[str] = field(default_factory=set)
    services: set[tuple[str, str]] = field(default_factory=set)
    commands: set[str] = field(default_factory=set)
    gaps: int = 0  # events of a current boot stored past a gap in its numbering
    # host -> (boot, at) of its last report here (heartbeat, snapshot) of its current boot:
    # reports are never buffered, so ``at`` is the agent's clock about when the hub got it
    # (fleet alerts measure entries' ages on the agent's own timeline with it).
    reported: dict[str, tuple[str, float]] = field(default_factory=dict)

    def notify_payload(self) -> str:
        payload = json.dumps(
            {
                "hosts": sorted(self.hosts),
                "services": [list(pair) for pair in sorted(self.services)],
                "events": self.events,
                "commands": sorted(self.commands),
            },
            separators=(",", ":"),
        )
        return payload if len(payload.encode()) <= MAX_NOTIFY_BYTES else '{"all":true}'


def check_storable(envelope: Envelope, text: str | None = None) -> Storable:
    """``envelope`` (received as the JSON ``text``; None: as ``encode`` writes it) checked for
    what the wire format leaves to the store; raises ``FleetWireError`` (code ``body``) for a
    body whose shape the store cannot use. Texts PostgreSQL could not keep are mended, not
    refused (the event is real; one character or its length should not lose it): NUL and
    lone surrogates become U+FFFD, a text over ``TEXT_MAX`` characters is cut and says so;
    the ``Storable`` then holds the mended envelope and its text."""
    if text is None:
        text = _json_text(envelope)
    body = envelope.body
    kind = envelope.type
    if kind == "entry":
        for name in _ENTRY_TEXT_FIELDS:
            if body.get(name) is not None and type(body.get(name)) is not str:
                raise FleetWireError("body", f"entry.{name} must be text")
        if type(body.get("kind")) is not str:
            raise FleetWireError("body", "an entry needs its kind")
        if body.get("detail") is not None and type(body["detail"]) is not dict:
            raise FleetWireError("body", "entry.detail must be an object")
    elif kind == "counts":
        _check_counts(body)
    elif kind == "reply":
        for name in ("command", "status"):
            if type(body.get(name)) is not str:
                raise FleetWireError("body", f"reply.{name} must be text")
        if body["status"] not in REPLY_STATUSES:
            # An agent answers what became of a command; it does not write the hub's own
            # words (sent, unanswered) or new ones onto it.
            raise FleetWireError("body", f"reply.status {body['status'][:40]!r} is not a reply")
        if body.get("reason") is not None and type(body.get("reason")) is not str:
            raise FleetWireError("body", "reply.reason must be text")
    elif kind == "snapshot":
        services = body.get("services")
        if type(services) is not list or not all(_is_service_item(item) for item in services):
            raise FleetWireError("body", "snapshot.services must be a list of named services")
    if kind in ("snapshot", "heartbeat"):
        labels = body.get("labels", {})
        if type(labels) is not dict or not all(type(v) is str for v in labels.values()):
            raise FleetWireError("body", "labels must be an object of texts")
    if _needs_mending(text):
        envelope = replace(envelope, body=_mended(envelope.body))
        text = _json_text(envelope)  # top-level keys the hub does not read are left out
    return Storable(envelope, text)


def _json_text(envelope: Envelope) -> str:
    return json.dumps(envelope.to_json(), ensure_ascii=False, separators=(",", ":"))


def _needs_mending(text: str) -> bool:
    """Whether the JSON ``text`` may hold a text PostgreSQL cannot keep (cheap tests first:
    this runs for every message)."""
    if len(text) > TEXT_MAX or ("\\u" in text and _UNSTORABLE_ESCAPE.search(text)):
        return True
    if text.isascii():
        return False
    # A raw surrogate (a text made here, not received: UTF-8 cannot carry one); NUL never comes
    # raw in JSON. Encoding is some ten times faster than a search for the range.
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _mended_text(text: str) -> str:
    text = _UNSTORABLE.sub("\ufffd", text)
    return text if len(text) <= TEXT_MAX else text[:TEXT_MAX] + TRUNCATED


def _mended(value: Any) -> Any:
    """A copy of the decoded JSON ``value`` with every text (keys too) mended. Iterative: a
    body nested as deep as the JSON decoder allows must not exhaust the stack here."""
    root: list[Any] = [None]
    # (what to copy, the container its copy goes in, its key or index there)
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while stack:
        source, target, key = stack.pop()
        copy: Any
        if type(source) is dict:
            copy = {_mended_text(name): None for name in source}  # the keys' order kept
            # Pushed last first, so taken first first: of two keys that mend alike, the last
            # one's value stays (as a JSON object's repeated key).
            stack.extend(
                (item, copy, _mended_text(name)) for name, item in reversed(source.items())
            )
        elif type(source) is list:
            copy = [None] * len(source)
            stack.extend((item, copy, index) for index, item in enumerate(source))
        elif type(source) is str:
            copy = _mended_text(source)
        else:
            copy = source
        target[key] = copy
    return root[0]


def storable_messages(data: bytes, routing_key: str) -> tuple[list[Storable], list[FleetWireError]]:
    """A message (one envelope or a batch) from the broker with its routing key, decoded and
    checked: what can be stored, and what was refused of it (each element alone). Raises
    ``FleetWireError`` for a message refused whole (its key, its JSON, its shape)."""
    routing_host = parse_routing_key(routing_key)[0]
    envelopes, refused = decode_batch(data, routing_host)
    if data[:1] == b"{":
        # One envelope: the database reads its columns from the text it came as.
        envelope = envelopes[0]
        return [check_storable(envelope, data.decode("utf-8"))], refused
    storable: list[Storable] = []
    for envelope in envelopes:
        # A batch's elements are written out again (a lone surrogate in them raw: mended by
        # check_storable).
        text = _json_text(envelope)
        try:
            storable.append(check_storable(envelope, text))
        except FleetWireError as error:
            refused.append(error)
    return storable, refused


def database_failed(error: BaseException) -> bool:
    """Whether ``error``, raised by ``write_batch``, says that the database failed (the same
    batch is to be written again later: nothing of it was) rather than that it refused the
    data (to be written one message at a time, dropping the culprit). Refusals are of the
    data (a constraint, a text, a limit), and so is any error that is not the database's own
    (a ``UnicodeEncodeError``, a ``RecursionError``): retrying would meet it again forever."""
    if isinstance(error, OSError):
        return True
    if not isinstance(error, psycopg.Error):
        return False
    if error.sqlstate is None:
        # The server said nothing: the connection or the pool (PoolTimeout) failed; or psycopg
        # refused the data before sending it (a DataError, a ProgrammingError).
        return isinstance(error, psycopg.OperationalError)
    return error.sqlstate[:2] in _FAILED_CLASSES


def _check_counts(body: Mapping[str, Any]) -> None:
    minute, rows = body.get("minute"), body.get("counts")
    if type(minute) is not int or not 0 <= minute < 2**40:
        raise FleetWireError("body", "counts.minute must be a whole Unix time")
    if type(rows) is not list:
        raise FleetWireError("body", "counts.counts must be a list")
    for row in rows:
        ok = (
            type(row) is list
            and len(row) == 3
            and type(row[0]) is str
            and type(row[1]) is str
            and type(row[2]) is int
            and 0 <= row[2] < 2**62
        )
        if not ok:
            raise FleetWireError("body", "each count is [service, kind, whole number]")


def _is_service_item(item: object) -> bool:
    return (
        type(item) is dict
        and type(item.get("name")) is str
        and type(item.get("state")) is str
        and (item.get("reason") is None or type(item.get("reason")) is str)
        and (item.get("instance_of") is None or type(item.get("instance_of")) is str)
        and (item.get("since_age") is None or type(item.get("since_age")) in (int, float))
    )


@dataclass(frozen=True, slots=True)
class Storable:
    """An envelope checked for the store, with the JSON text it came as (the database reads
    the event's columns from it: less work here, on the hot path)."""

    envelope: Envelope
    text: str


@dataclass(slots=True)
class _Host:
    boot: str
    state: str
    state_since: float
    last_seq: int


class FleetStore:
    """Batches of messages into the database (``write_batch``), through ``pool``."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self._prepared: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()

    async def write_batch(self, batch: Sequence[Storable]) -> BatchResult:
        """Store ``batch`` in one transaction (steps in the module's docstring). Raises what
        the database raises; then nothing of the batch was written."""
        result = BatchResult()
        if not batch:
            return result
        async with self.pool.connection() as connection:
            await self._prepare(connection)
            async with connection.transaction():
                hosts = await self._see_hosts(connection, batch, result)
                await self._receive_reports(connection, batch, hosts, result)
                await self._receive_events(connection, batch, hosts, result)
                if result.hosts or result.services or result.events or result.commands:
                    await connection.execute(
                        "SELECT pg_notify(%s, %s)", [CHANNEL, result.notify_payload()]
                    )
        return result

    async def _prepare(self, connection: psycopg.AsyncConnection[Any]) -> None:
        if connection in self._prepared:
            return
        await connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS hub_incoming (host text, boot text, seq bigint,"
            " type text, envelope jsonb) ON COMMIT DELETE ROWS"
        )
        await connection.commit()
        self._prepared.add(connection)

    # --- step 1 -----------------------------------------------------------------------------

    async def _see_hosts(
        self,
        connection: psycopg.AsyncConnection[Any],
        batch: Sequence[Storable],
        result: BatchResult,
    ) -> dict[str, _Host]:
        first_boot: dict[str, str] = {}
        for item in batch:
            first_boot.setdefault(item.envelope.host, item.envelope.boot)
        names = sorted(first_boot)
        cursor = await connection.execute(
            "INSERT INTO hosts (host, boot) SELECT * FROM unnest(%s::text[], %s::text[])"
            " ORDER BY 1 ON CONFLICT (host) DO NOTHING RETURNING host, boot",
            [names, [first_boot[name] for name in names]],
        )
        created = await cursor.fetchall()
        if created:  # a new host's first boot is its current one
            await connection.execute(
                "INSERT INTO boots (host, boot) SELECT * FROM unnest(%s::text[], %s::text[])"
                " ON CONFLICT DO NOTHING",
                [[row[0] for row in created], [row[1] for row in created]],
            )
        cursor = await connection.execute(
            "SELECT host, boot, state, extract(epoch FROM state_since)::float8, last_seq"
            " FROM hosts WHERE host = ANY(%s) ORDER BY host FOR UPDATE",
            [names],
        )
        hosts = {row[0]: _Host(*row[1:]) for row in await cursor.fetchall()}
        await connection.execute(
            "UPDATE hosts SET last_seen = now(), state = 'live', state_since ="
            " CASE WHEN state <> 'live' THEN now() ELSE state_since END WHERE host = ANY(%s)",
            [names],
        )
        for name, host in hosts.items():
            if host.state == "unreachable":
                result.back.append((name, host.state_since))
            host.state = "live"
        result.hosts.update(names)
        return hosts

    # --- step 2 -----------------------------------------------------------------------------

    async def _receive_reports(
        self,
        connection: psycopg.AsyncConnection[Any],
        batch: Sequence[Storable],
        hosts: dict[str, _Host],
        result: BatchResult,
    ) -> None:
        for item in _reports_that_matter(batch):
            envelope = item.envelope
            host = hosts[envelope.host]
            body = envelope.body
            started_at = _number(body.get("started_at"))
            if envelope.boot != host.boot:
                last_seq = await self._switch_boot(
                    connection, envelope.host, host.boot, envelope.boot
                )
                if last_seq is None:
                    continue  # a late report of a boot replaced since: it says nothing current
                host.boot, host.last_seq = envelope.boot, last_seq
            result.reported[envelope.host] = (envelope.boot, envelope.at)
            labels = body.get("labels")
            await connection.execute(
                "UPDATE hosts SET labels = coalesce(%s::jsonb, labels),"
                " config_hash = coalesce(%s, config_hash), version = coalesce(%s, version),"
                " started_at = coalesce(%s, started_at),"
                " heartbeat_interval = coalesce(%s, heartbeat_interval),"
                " snapshot_at = CASE WHEN %s THEN now() ELSE snapshot_at END WHERE host = %s",
                [
                    json.dumps(labels) if isinstance(labels, dict) else None,
                    _text(body.get("config_hash")),
                    _text(body.get("version")),
                    started_at,
                    _number(body.get("heartbeat_interval")),
                    envelope.type == "snapshot",
                    envelope.host,
                ],
            )
            if envelope.type == "snapshot":
                await self._reconcile(connection, envelope, result)

    async def _switch_boot(
        self, connection: psycopg.AsyncConnection[Any], host: str, current: str, boot: str
    ) -> int | None:
        """``boot`` made ``host``'s current one, unless it was current before ``current``
        (then None: it is an older one). Its ``last_seq``: its events stored so far."""
        cursor = await connection.execute(
            # ``current`` too, should it be missing (a row lost, or written by an older hub).
            "INSERT INTO boots (host, boot) VALUES (%s, %s), (%s, %s)"
            " ON CONFLICT DO NOTHING RETURNING boot",
            [host, current, host, boot],
        )
        if boot not in {row[0] for row in await cursor.fetchall()}:
            return None
        cursor = await connection.execute(
            "UPDATE hosts SET boot = %s, snapshot_at = NULL, last_seq = coalesce("
            "(SELECT max(seq) FROM events WHERE host = %s AND boot = %s), 0) WHERE host = %s"
            " RETURNING last_seq",
            [boot, host, boot, host],
        )
        row = await cursor.fetchone()
        await connection.execute("UPDATE services SET updated_seq = 0 WHERE host = %s", [host])
        return int(row[0]) if row else 0

    async def _reconcile(
        self, connection: psycopg.AsyncConnection[Any], envelope: Envelope, result: BatchResult
    ) -> None:
        # A name listed twice (an agent's bug): the last item, as for a JSON object's repeated
        # key. One upsert cannot move a row twice (CardinalityViolation), and refusing the
        # snapshot would leave every other service of the host unreconciled for one name.
        items: list[dict[str, Any]] = list(
            {str(item["name"]): item for item in envelope.body.get("services", [])}.values()
        )
        names = [str(item["name"]) for item in items]
        since = [
            envelope.at - float(item["since_age"]) if item.get("since_age") is not None else None
            for item in items
        ]
        cursor = await connection.execute(
            "INSERT INTO services AS s (host, service, instance_of, state, reason, since,"
            " status, updated_seq)"
            " SELECT %s, u.name, u.instance_of, u.state, u.reason, u.since, u.status::jsonb, %s"
            " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[],"
            " %s::text[]) AS u(name, instance_of, state, reason, since, status)"
            " ON CONFLICT (host, service) DO UPDATE SET instance_of = excluded.instance_of,"
            " state = excluded.state, reason = excluded.reason, since = excluded.since,"
            " status = excluded.status, updated_seq = excluded.updated_seq, updated_at = now()"
            " WHERE s.updated_seq <= excluded.updated_seq RETURNING service",
            [
                envelope.host,
                envelope.seq,
                names,
                [item.get("instance_of") for item in items],
                [item["state"] for item in items],
                [item.get("reason") or "" for item in items],
                since,
                [json.dumps(item, ensure_ascii=False) for item in items],
            ],
        )
        result.services.update((envelope.host, row[0]) for row in await cursor.fetchall())
        cursor = await connection.execute(
            "DELETE FROM services WHERE host = %s AND updated_seq <= %s"
            " AND NOT (service = ANY(%s)) RETURNING service",
            [envelope.host, envelope.seq, names],
        )
        result.services.update((envelope.host, row[0]) for row in await cursor.fetchall())

    # --- step 3 -----------------------------------------------------------------------------

    async def _receive_events(
        self,
        connection: psycopg.AsyncConnection[Any],
        batch: Sequence[Storable],
        hosts: Mapping[str, _Host],
        result: BatchResult,
    ) -> None:
        events: dict[tuple[str, str, int], Storable] = {}
        for item in batch:
            envelope = item.envelope
            if envelope.is_event:
                # The same event twice in one batch (a redelivery beside the original): once.
                events.setdefault((envelope.host, envelope.boot, envelope.seq), item)
        if not events:
            return
        async with connection.cursor() as cursor:
            async with cursor.copy("COPY hub_incoming FROM STDIN") as copy:
                for item in events.values():
                    envelope = item.envelope
                    await copy.write_row(
                        (envelope.host, envelope.boot, envelope.seq, envelope.type, item.text)
                    )
            await cursor.execute(
                "INSERT INTO events (host, boot, seq, type, at, kind, service, reason, state,"
                " previous, detail, body)"
                " SELECT host, boot, seq, type, (e->>'at')::float8,"
                " CASE type WHEN 'entry' THEN b->>'kind' ELSE type END, b->>'service',"
                " b->>'reason', CASE type WHEN 'reply' THEN b->>'status' ELSE b->>'state' END,"
                " CASE type WHEN 'entry' THEN b->>'previous' END,"
                " CASE WHEN type = 'entry' AND jsonb_typeof(b->'detail') = 'object'"
                " THEN b->'detail' END, coalesce(b, '{}')"
                " FROM (SELECT host, boot, seq, type, envelope AS e, envelope->'body' AS b"
                " FROM hub_incoming) AS incoming"
                " ON CONFLICT DO NOTHING RETURNING host, boot, seq"
            )
            new = sorted((row[0], row[1], row[2]) for row in await cursor.fetchall())
        result.events = len(new)
        stored = [events[key].envelope for key in new]
        moves: dict[tuple[str, str], ServiceMove] = {}
        counts: dict[tuple[str, int, str, str], int] = {}
        replies: list[Envelope] = []
        last_seq: dict[str, int] = {}
        gaps: list[tuple[str, int, int]] = []
        for envelope in stored:  # in (host, boot, seq) order
            host = hosts[envelope.host]
            current = host.boot == envelope.boot
            if current:
                if envelope.seq > host.last_seq + 1:
                    gaps.append((envelope.host, host.last_seq, envelope.seq))
                host.last_seq = last_seq[envelope.host] = max(host.last_seq, envelope.seq)
            body = envelope.body
            if envelope.type == "entry":
                entry = _stored_entry(envelope, current)
                result.entries.append(entry)
                if current and entry.service and entry.kind in _MOVING_KINDS:
                    moving = (envelope.host, entry.service)
                    moves[moving] = moves.get(moving, ServiceMove()).receive(entry)
            elif envelope.type == "counts":
                for service, kind, count in body["counts"]:
                    counted = (envelope.host, int(body["minute"]), service, kind)
                    counts[counted] = counts.get(counted, 0) + count
            else:
                replies.append(envelope)
        result.entries.sort(key=lambda entry: (entry.at, entry.host, entry.seq))
        if gaps:
            result.gaps = len(gaps)
            name, before, after = gaps[0]
            more = f" (and {len(gaps) - 1} more gaps in this batch)" if len(gaps) > 1 else ""
            logger.warning(
                "host {}: events {}..{} of its boot missing (lost, or to come late){}",
                name,
                before + 1,
                after - 1,
                more,
            )
        await self._move_services(connection, moves, result)
        if last_seq:
            await connection.execute(
                "UPDATE hosts SET last_seq = greatest(last_seq, u.seq)"
                " FROM unnest(%s::text[], %s::int8[]) AS u(host, seq) WHERE hosts.host = u.host",
                [list(last_seq), list(last_seq.values())],
            )
        if counts:
            await connection.execute(
                "INSERT INTO counts AS c (host, minute, service, kind, count)"
                " SELECT * FROM unnest(%s::text[], %s::int8[], %s::text[], %s::text[], %s::int8[])"
                " ON CONFLICT (host, minute, service, kind) DO UPDATE"
                " SET count = c.count + excluded.count",
                [list(column) for column in zip(*counts, strict=True)] + [list(counts.values())],
            )
        for reply in replies:
            await self._move_command(connection, reply, result)

    async def _move_services(
        self,
        connection: psycopg.AsyncConnection[Any],
        moves: Mapping[tuple[str, str], ServiceMove],
        result: BatchResult,
    ) -> None:
        rows = [
            (host, service, m.state, m.reason, m.since, json.dumps(m.patch), m.seq)
            for (host, service), m in moves.items()
        ]
        if not rows:
            return
        # Most entries move a service the hub knows: a plain UPDATE joined to the batch is much
        # cheaper than an upsert per row (a third of a batch's time before); the rest (new
        # services, or ones a later event moved already) go through the upsert below.
        cursor = await connection.execute(
            "UPDATE services AS s SET state = coalesce(u.state, s.state),"
            " reason = coalesce(u.reason, s.reason), since = coalesce(u.since, s.since),"
            " status = s.status || u.patch::jsonb, updated_seq = u.seq, updated_at = now()"
            " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[],"
            " %s::text[], %s::int8[]) AS u(host, service, state, reason, since, patch, seq)"
            " WHERE s.host = u.host AND s.service = u.service AND s.updated_seq < u.seq"
            " RETURNING s.host, s.service",
            [list(column) for column in zip(*rows, strict=True)],
        )
        moved = {(row[0], row[1]) for row in await cursor.fetchall()}
        result.services |= moved
        # A service the hub does not know yet is added only when its state is known.
        rows = [row for row in rows if (row[0], row[1]) not in moved and row[2] is not None]
        if not rows:
            return
        cursor = await connection.execute(
            "INSERT INTO services AS s (host, service, state, reason, since, status, updated_seq)"
            " SELECT u.host, u.service, u.state, coalesce(u.reason, ''), u.since,"
            " jsonb_build_object('name', u.service) || u.patch::jsonb, u.seq"
            " FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[],"
            " %s::text[], %s::int8[]) AS u(host, service, state, reason, since, patch, seq)"
            " ORDER BY 1, 2"
            " ON CONFLICT (host, service) DO UPDATE SET state = excluded.state,"
            " reason = excluded.reason, since = coalesce(excluded.since, s.since),"
            " status = s.status || (excluded.status - 'name'),"
            " updated_seq = excluded.updated_seq, updated_at = now()"
            " WHERE s.updated_seq < excluded.updated_seq RETURNING host, service",
            [list(column) for column in zip(*rows, strict=True)],
        )
        result.services.update((row[0], row[1]) for row in await cursor.fetchall())

    async def _move_command(
        self, connection: psycopg.AsyncConnection[Any], reply: Envelope, result: BatchResult
    ) -> None:
        status = str(reply.body["status"])
        cursor = await connection.execute(
            "UPDATE commands SET status = %s, reason = %s, updated_at = now()"
            " WHERE id = %s AND host = %s AND NOT (status = ANY(%s))"
            " AND NOT (status = 'accepted' AND %s = 'accepted') RETURNING id",
            [
                status,
                str(reply.body.get("reason") or ""),
                str(reply.body["command"]),
                reply.host,
                list(_TERMINAL_STATUSES),
                status,
            ],
        )
        changed = [row[0] for row in await cursor.fetchall()]
        result.commands.update(changed)
        if not changed and status in ("refused", "expired"):
            # A command no hub issued to this host (forged), or one already finished (a
            # replay): the agent refused it; nothing here changes, but people should know.
            logger.warning(
                "host {} refused command {!r}, which no command of this fleet awaits: {}",
                reply.host,
                str(reply.body["command"])[:64],
                str(reply.body.get("reason") or "")[:200],
            )


def _reports_that_matter(batch: Sequence[Storable]) -> list[Storable]:
    """Reports in arrival order, without a heartbeat that a later report of the same host and
    boot in this batch says again (a batch may hold many of one host's heartbeats)."""
    reports = [item for item in batch if not item.envelope.is_event]
    kept: list[Storable] = []
    later: set[tuple[str, str]] = set()
    for item in reversed(reports):
        key = (item.envelope.host, item.envelope.boot)
        if item.envelope.type == "heartbeat" and key in later:
            continue
        later.add(key)
        kept.append(item)
    kept.reverse()
    return kept


def _stored_entry(envelope: Envelope, current: bool) -> StoredEntry:
    body = envelope.body
    detail = body.get("detail")
    return StoredEntry(
        host=envelope.host,
        boot=envelope.boot,
        seq=envelope.seq,
        at=_number(body.get("at")) or envelope.at,
        kind=str(body["kind"]),
        service=_text(body.get("service")),
        state=_text(body.get("state")),
        reason=str(body.get("reason") or ""),
        detail=detail if isinstance(detail, dict) else {},
        current_boot=current,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
