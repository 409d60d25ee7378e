"""``/ws/events``: every change to the fleet, pushed to the browsers of this hub.

Whichever hub ingests, it announces each commit with ``pg_notify('heartwatch_fleet', …)``
(``{"hosts": […], "services": [[host, service]…], "events": n, "commands": […]}``, or
``{"all": true}``). Every hub ``LISTEN``s on one dedicated connection (``FleetFeed``), reads
the rows named and pushes them to its websocket clients:

- Changes are *coalesced*: what the notices name is collected and read at most once per
  ``COALESCE_INTERVAL`` (a host that beats every second, or a burst of 500 transitions, is one
  read and one message per row), only while someone listens.
- A host that becomes unreachable (or comes back) changes what its services show (``unknown``):
  its services are pushed with it.
- Each client has a bounded queue of encoded messages. One that falls ``CLIENT_QUEUE`` behind
  is closed (1013, "reload") and forgotten: a slow browser never holds the hub, nor the
  others. A reconnecting page starts again from ``hello``.
- A lost database connection is reconnected with backoff; since notices may have been missed
  meanwhile, every client then gets a fresh ``hello`` (as for ``{"all": true}``).

Messages: ``hello`` (the whole fleet, as ``GET /api/v1/fleet``), ``host``, ``service``,
``removed``, ``command``, ``event`` (docs/api.md). ``removed`` names a service
(``{"host", "name"}``) gone from its host, or, with ``"name": null``, a host forgotten
(``DELETE /api/v1/hosts/{host}``: a host named by a notice that is no longer there) and all
its services with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from loguru import logger

from heartwatch.hub.queries import (
    DB_TIMEOUT,
    UNREACHABLE,
    Row,
    StatusCache,
    dumps,
    read_changes,
    read_fleet,
    read_host_services,
    read_new_events,
)

if TYPE_CHECKING:
    from fastapi import WebSocket
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

    from heartwatch.hub.metrics import HubCounters

CHANNEL: Final = "heartwatch_fleet"
COALESCE_INTERVAL: Final = 0.1  # at most one push per row per this many seconds
CLIENT_QUEUE: Final = 2000  # messages a client may be behind before it is dropped
SEND_TIMEOUT: Final = 10.0  # a message not out within this: the client stopped reading
EVENTS_PER_READ: Final = 500
TOO_SLOW_CLOSE: Final = 1013  # "try again later": the page reconnects and starts afresh
TOO_SLOW_REASON: Final = "this page fell behind the fleet's changes: reload"
_RESYNC: Final = b"resync"  # a client's queue item: send a fresh hello


class FeedClient:
    """One websocket's queue of encoded messages."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(CLIENT_QUEUE)
        self.dropped = False


class _Pending:
    """What notices named since the last read."""

    def __init__(self) -> None:
        self.hosts: set[str] = set()
        self.services: set[tuple[str, str]] = set()
        self.commands: set[str] = set()
        self.events = False
        self.everything = False

    def __bool__(self) -> bool:
        return bool(self.hosts or self.services or self.commands or self.events or self.everything)

    def receive(self, payload: str) -> None:
        """One notice's payload; anything unreadable is taken as "everything changed"."""
        try:
            notice = json.loads(payload)
        except ValueError:
            notice = {"all": True}
        if not isinstance(notice, dict) or notice.get("all"):
            self.everything = True
            return
        for host in notice.get("hosts") or ():
            if isinstance(host, str):
                self.hosts.add(host)
        for pair in notice.get("services") or ():
            if isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair):
                self.services.add((pair[0], pair[1]))
        for command in notice.get("commands") or ():
            if isinstance(command, str):
                self.commands.add(command)
        events = notice.get("events")
        if isinstance(events, int) and events > 0:
            self.events = True


class FleetFeed:
    """LISTENs for the fleet's changes and pushes them to every ``/ws/events`` client."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        dsn: str | None = None,
        counters: HubCounters | None = None,
    ) -> None:
        self.pool = pool
        self.dsn = dsn or str(pool.conninfo)
        self.counters = counters
        self.clients: set[FeedClient] = set()
        self.listening = asyncio.Event()  # set while LISTEN is in force (tests wait on it)
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self._host_states: dict[str, str] = {}
        self._event_mark: tuple[Any, ...] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._statuses = StatusCache()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="feed-listen"),
            asyncio.create_task(self._push_forever(), name="feed-push"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for client in list(self.clients):
            self._drop(client)

    # -- clients -----------------------------------------------------------------------------

    def subscribe(self) -> FeedClient:
        client = FeedClient()
        if not self.clients:
            self._host_states.clear()  # not followed while nobody listened: read afresh
            self._event_mark = None
        self.clients.add(client)
        return client

    def unsubscribe(self, client: FeedClient) -> None:
        self.clients.discard(client)

    async def serve(self, websocket: WebSocket) -> None:
        """One ``/ws/events`` client: ``hello``, then every change, until it leaves."""
        from heartwatch.web.streaming import send_until_disconnect

        client = self.subscribe()  # before the hello is read: nothing falls between
        try:
            await websocket.accept()
            try:
                hello = await self._hello()
            except Exception as error:  # the database away: the page tries again later
                logger.warning("hub feed: no hello for a client: {}", error)
                await websocket.close(1011, "the hub's database did not answer")
                return
            await self._send(websocket, hello)

            async def send_changes() -> None:
                while True:
                    message = await client.queue.get()
                    if client.dropped:
                        with contextlib.suppress(Exception):
                            await websocket.close(TOO_SLOW_CLOSE, TOO_SLOW_REASON)
                        return
                    if message is _RESYNC:
                        try:
                            message = await self._hello()
                        except Exception:  # the database away: the page starts again later
                            await websocket.close(1011, "the hub's database did not answer")
                            return
                    if not await self._send(websocket, message):
                        return

            await send_until_disconnect(websocket, send_changes())
        finally:
            self.unsubscribe(client)

    async def _hello(self) -> bytes:
        return dumps({"type": "hello", "fleet": await read_fleet(self.pool, self._statuses)})

    async def _send(self, websocket: WebSocket, message: bytes) -> bool:
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await websocket.send_text(message.decode())
        except TimeoutError:
            logger.info("hub feed: dropped a client: a message could not be sent in time")
            return False
        return True

    def broadcast(self, message: bytes) -> None:
        """``message`` to every client; one whose queue is full is dropped."""
        for client in list(self.clients):
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                self._drop(client)

    def _drop(self, client: FeedClient) -> None:
        client.dropped = True
        self.clients.discard(client)
        if self.counters is not None:
            self.counters.feed_dropped += 1
        # Room is made for the wake-up that tells its sender to close.
        with contextlib.suppress(asyncio.QueueEmpty):
            client.queue.get_nowait()
        with contextlib.suppress(asyncio.QueueFull):
            client.queue.put_nowait(b"")

    # -- notices -----------------------------------------------------------------------------

    def receive_notice(self, payload: str) -> None:
        self._pending.receive(payload)
        self._wake.set()

    async def _listen_forever(self) -> None:
        import psycopg

        delay = 0.5
        first = True
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                async with connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    delay = 0.5
                    if not first:  # notices were missed while away
                        self.receive_notice('{"all": true}')
                    first = False
                    async for notice in connection.notifies():
                        self.receive_notice(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database went away: again
                logger.warning("hub feed: the database connection was lost: {}", error)
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _push_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, _Pending()
            if self.clients and pending:
                try:
                    await self.push(pending)
                except Exception as error:  # the database away: resync later
                    logger.warning("hub feed: cannot read the changes: {}", error)
                    self._pending.everything = True
                    await asyncio.sleep(1.0)
                    self._wake.set()
            await asyncio.sleep(COALESCE_INTERVAL)

    async def push(self, pending: _Pending) -> None:
        """Read what ``pending`` names and broadcast it."""
        if pending.everything:
            self._host_states.clear()
            self._event_mark = None
            for client in list(self.clients):
                try:
                    client.queue.put_nowait(_RESYNC)
                except asyncio.QueueFull:
                    self._drop(client)
            return
        async with self.pool.connection(timeout=DB_TIMEOUT) as connection:
            if not self._host_states:
                await self._read_host_states(connection)
            hosts, services, removed, commands = await read_changes(
                connection,
                sorted(pending.hosts),
                sorted(pending.services),
                sorted(pending.commands),
            )
            events: list[Row] = []
            if pending.events:
                # The hosts whose events came (an ingest names them), else every known one.
                named = sorted(pending.hosts) or sorted(self._host_states)
                events, self._event_mark = await read_new_events(
                    connection, named, self._event_mark, EVENTS_PER_READ
                )
        present = {host["host"] for host in hosts}
        for gone in sorted(pending.hosts - present):  # forgotten: it and its services
            self._host_states.pop(gone, None)
            self.broadcast(dumps({"type": "removed", "host": gone, "name": None}))
        for host in hosts:
            self.broadcast(dumps({"type": "host", "host": host}))
            turned = (self._host_states.get(host["host"]) == UNREACHABLE) != (
                host["state"] == UNREACHABLE
            )
            self._host_states[host["host"]] = host["state"]
            if turned:  # its services read "unknown", or stop reading so
                for service in await read_host_services(self.pool, host["host"]):
                    self.broadcast(dumps({"type": "service", "service": service}))
        for service in services:
            self.broadcast(dumps({"type": "service", "service": service}))
        for host_name, name in removed:
            self.broadcast(dumps({"type": "removed", "host": host_name, "name": name}))
        for command in commands:
            if command["verb"] != "tail":  # the log relay's leases: no one's business here
                self.broadcast(dumps({"type": "command", "command": command}))
        for event in events:
            self.broadcast(dumps({"type": "event", "event": event}))

    async def _read_host_states(self, connection: AsyncConnection[Any]) -> None:
        cursor = await connection.execute("SELECT host, state FROM hosts")
        self._host_states = {host: state for host, state in await cursor.fetchall()}


def count_clients(feed: FleetFeed | None) -> int:
    return 0 if feed is None else len(feed.clients)


__all__: Sequence[str] = ["FeedClient", "FleetFeed", "count_clients"]
