"""History over HTTP, and the live event stream a dashboard listens to.

    GET /api/v1/events?service=&since=&until=&kind=&limit=&format=   what happened, newest first
    GET /api/v1/events.csv?...                   the same, as CSV (the history page's export)
    GET /api/v1/services/{name}/series?since=    per-minute counts of one service
    GET /api/v1/series?since=                    the same, every service
    WS  /ws/events                               snapshot, then events and pulses as they come

The stream (``EventFeed``) is a journal listener. Each entry is turned into one JSON text once,
with the affected service's status after it, and handed to every subscriber's queue. A
subscriber whose queue is full (a page that stopped reading) loses its queue and gets a fresh
snapshot when it reads again: a state shown is never stale, and memory stays bounded.

Pulses carry what moves too fast for events: heartbeat ages and message counts. While anyone
listens, once a second, the services that sent something since the previous pulse are sent;
with nobody listening no timer runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, WebSocket
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect

from heartwatch.core.journal import EntryKind, JournalEntry
from heartwatch.web.export import events_csv
from heartwatch.web.status import read_pulse, read_status
from heartwatch.web.streaming import send_until_disconnect

if TYPE_CHECKING:
    from heartwatch.daemon.recorder import Recorder
    from heartwatch.daemon.sampler import Usage
    from heartwatch.daemon.supervisor import Supervisor

PULSE_INTERVAL = 1.0
SUBSCRIBER_QUEUE = 1000
SNAPSHOT_EVENTS = 100
SERIES_STEP = 60
DEFAULT_SERIES_SPAN = 3600.0
# Bounds of every number a query may carry: what SQLite can hold (a 64-bit integer), and Unix
# times of this world (year 5138 at most); beyond them, a 422 that says so, never a 500.
MAX_ENTRY_ID = 2**63 - 1
MAX_UNIX_TIME = 1e11
MAX_EVENTS_PAGE = 1000

SeriesSince = Annotated[
    float | None,
    Query(
        ge=0,
        le=MAX_UNIX_TIME,
        allow_inf_nan=False,
        description="Unix time; default: an hour ago",
    ),
]


class HistoryEntry(BaseModel):
    id: int
    at: float  # Unix time
    kind: str  # transition, note, recovery, exit, restart, alert, daemon, ...
    service: str | None
    reason: str
    state: str | None
    previous: str | None
    detail: dict[str, Any] | None


class HistoryPage(BaseModel):
    events: list[HistoryEntry]


class SeriesPoint(BaseModel):
    at: int  # Unix time of the minute's start
    counts: dict[str, int]  # "heartbeat" and data kinds


class Series(BaseModel):
    service: str
    step: int
    points: list[SeriesPoint]


def _event(entry: JournalEntry) -> HistoryEntry:
    return HistoryEntry.model_validate(entry.to_json())


class _Subscriber:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.resync = False  # its queue overflowed: send a snapshot before going on

    def offer(self, text: str) -> None:
        if self.resync:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.resync = True
            self.queue.put_nowait("")  # wake the sender: it sends a snapshot instead


class EventFeed:
    """Journal entries and pulses, to every ``/ws/events`` subscriber."""

    def __init__(self, supervisor: Supervisor, recorder: Recorder) -> None:
        self.supervisor = supervisor
        self.recorder = recorder
        self._subscribers: set[_Subscriber] = set()
        self._pulse: asyncio.TimerHandle | None = None
        self._last_seen: dict[str, tuple[int, Usage | None]] = {}
        self._loop = asyncio.get_running_loop()

    def receive(self, entry: JournalEntry) -> None:
        """A journal listener."""
        if not self._subscribers:
            return
        name = entry.service
        status = (
            read_status(self.supervisor, name).model_dump(mode="json")
            if name is not None and name in self.supervisor.services
            else None
        )
        text = json.dumps({"type": "event", "event": entry.to_json(), "service": status})
        for subscriber in self._subscribers:
            subscriber.offer(text)

    async def snapshot(self) -> str:
        supervisor = self.supervisor
        entries = await self.recorder.entries(limit=SNAPSHOT_EVENTS)
        return json.dumps(
            {
                "type": "snapshot",
                "services": [
                    read_status(supervisor, r.name).model_dump(mode="json")
                    for r in supervisor.watchdog.records()
                ],
                "events": [entry.to_json() for entry in entries],
            }
        )

    async def serve(self, websocket: WebSocket) -> None:
        subscriber = _Subscriber()
        self._subscribers.add(subscriber)  # before the snapshot: nothing falls between
        self._arm_pulse()
        try:
            # A client gone before its snapshot (a reset right after the upgrade) just left:
            # OSError is uvicorn's ClientDisconnected, RuntimeError a send after the close.
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                await websocket.accept()
                await websocket.send_text(await self.snapshot())
                await send_until_disconnect(websocket, self._send_forever(websocket, subscriber))
        finally:
            self._subscribers.discard(subscriber)

    async def _send_forever(self, websocket: WebSocket, subscriber: _Subscriber) -> None:
        while True:
            text = await subscriber.queue.get()
            if subscriber.resync:
                subscriber.resync = False
                text = await self.snapshot()
            await websocket.send_text(text)

    def _arm_pulse(self) -> None:
        if self._pulse is None and self._subscribers:
            self._pulse = self._loop.call_later(PULSE_INTERVAL, self._send_pulse)

    def _send_pulse(self) -> None:
        self._pulse = None
        if not self._subscribers:
            return  # nobody listens: no timer until someone does
        changed = []
        supervisor = self.supervisor
        supervisor.sampler.receive_interest()  # a page is open: CPU and RSS are kept current
        for record in supervisor.watchdog.records():
            # A service's pulse goes out when its messages or its usage (a new sample) moved.
            seen = (record.messages, supervisor.resource_usage(record.name))
            if self._last_seen.get(record.name) != seen:
                self._last_seen[record.name] = seen
                changed.append(read_pulse(supervisor, record.name).model_dump(mode="json"))
        if changed:
            text = json.dumps({"type": "pulse", "services": changed})
            for subscriber in self._subscribers:
                subscriber.offer(text)
        self._arm_pulse()


@dataclass(frozen=True, slots=True)
class EventQuery:
    service: str | None
    since: float | None
    until: float | None
    before_id: int | None
    kinds: list[EntryKind] | None
    limit: int


def _event_query(
    service: str | None = None,
    since: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_UNIX_TIME,
            allow_inf_nan=False,
            description="Unix time: only events after it",
        ),
    ] = None,
    until: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_UNIX_TIME,
            allow_inf_nan=False,
            description="Unix time: only events at or before it",
        ),
    ] = None,
    before_id: Annotated[
        int | None,
        Query(ge=1, le=MAX_ENTRY_ID, description="only events older than this id (the next page)"),
    ] = None,
    kind: Annotated[
        list[EntryKind] | None, Query(description="only events of these kinds (repeatable)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 100,
) -> EventQuery:
    return EventQuery(service, since, until, before_id, kind or None, limit)


async def _read_events(
    supervisor: Supervisor, recorder: Recorder, query: EventQuery
) -> list[JournalEntry]:
    entries = await recorder.entries(
        service=query.service,
        since=query.since,
        until=query.until,
        before_id=query.before_id,
        kinds=query.kinds,
        limit=query.limit,
    )
    service = query.service
    # A name that is not a service answers 404, as /api/v1/services/{name} does, rather
    # than an empty page that reads as "nothing happened"; a service removed from the
    # configuration keeps its history.
    if (
        service is not None
        and not entries
        and service not in supervisor.services
        and not await recorder.entries(service=service, limit=1)
    ):
        raise HTTPException(404, {"code": "unknown_service", "message": f"no service {service!r}"})
    return entries


def _csv_response(entries: list[JournalEntry]) -> Response:
    return Response(
        events_csv(entries),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="heartwatch-events.csv"'},
    )


def create_events_router(supervisor: Supervisor, recorder: Recorder, feed: EventFeed) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/api/v1/events",
        response_model=HistoryPage,
        tags=["history"],
        responses={
            200: {"content": {"text/csv": {"schema": {"type": "string"}}}},  # format=csv
            404: {"description": "no such service, now or in the history"},
        },
    )
    async def list_events(
        query: Annotated[EventQuery, Depends(_event_query)],
        format: Annotated[
            Literal["json", "csv"], Query(description="csv: the same as /api/v1/events.csv")
        ] = "json",
    ) -> HistoryPage | Response:
        """What happened (transitions, restarts, exits, recoveries, alerts), newest first."""
        entries = await _read_events(supervisor, recorder, query)
        if format == "csv":
            return _csv_response(entries)
        return HistoryPage(events=[_event(entry) for entry in entries])

    @router.get(
        "/api/v1/events.csv",
        response_class=Response,
        tags=["history"],
        responses={
            200: {
                "content": {"text/csv": {"schema": {"type": "string"}}},
                "description": "the events as CSV",
            },
            404: {"description": "no such service, now or in the history"},
        },
    )
    async def export_events(query: Annotated[EventQuery, Depends(_event_query)]) -> Response:
        """The same events as CSV (newest first; text cells formula-safe: a leading ' before
        = + - @)."""
        return _csv_response(await _read_events(supervisor, recorder, query))

    @router.get(
        "/api/v1/services/{name}/series",
        response_model=Series,
        tags=["history"],
        responses={404: {"description": "no such service"}},
    )
    async def service_series(
        name: str,
        since: SeriesSince = None,
    ) -> Series:
        """Per-minute counts of heartbeats and of data events per kind, oldest first."""
        if name not in supervisor.services:
            raise HTTPException(404, {"code": "unknown_service", "message": f"no service {name!r}"})
        return (await _series(recorder, [name], since))[0]

    @router.get("/api/v1/series", response_model=list[Series], tags=["history"])
    async def all_series(
        since: SeriesSince = None,
    ) -> list[Series]:
        """Per-minute counts of every service, in start order."""
        names = [record.name for record in supervisor.watchdog.records()]
        return await _series(recorder, names, since)

    @router.websocket("/ws/events")
    async def events_stream(websocket: WebSocket) -> None:
        await feed.serve(websocket)

    return router


async def _series(recorder: Recorder, names: list[str], since: float | None) -> list[Series]:
    if since is None:
        since = time.time() - DEFAULT_SERIES_SPAN
    counts = await recorder.counts(service=names[0] if len(names) == 1 else None, since=since)
    points: dict[str, dict[int, dict[str, int]]] = {name: {} for name in names}
    for count in counts:
        minutes = points.get(count.service)
        if minutes is not None:  # a minute may come twice: stored, and counted since
            kinds = minutes.setdefault(count.minute, {})
            kinds[count.kind] = kinds.get(count.kind, 0) + count.count
    return [
        Series(
            service=name,
            step=SERIES_STEP,
            points=[SeriesPoint(at=at, counts=c) for at, c in sorted(points[name].items())],
        )
        for name in names
    ]
