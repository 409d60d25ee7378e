"""The control API: service status, and restart / stop / start.

FastAPI on the daemon's own event loop: a handler reads the supervisor's state directly, with no
locks and no copies across threads. Errors are JSON with a stable ``code``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import heartwatch
from heartwatch.daemon.logfollow import LogHub
from heartwatch.daemon.supervisor import DaemonStopping, Supervisor
from heartwatch.web.dashboard import create_dashboard_router, static_files
from heartwatch.web.logs import create_log_router
from heartwatch.web.ping import create_ping_router


class DataStatus(BaseModel):
    count: int
    last_age: float | None  # seconds since the newest event of this kind
    last_sent_time: str | None  # the sender's own clock, as it sent it
    last_data: Any = None  # the newest event's payload


class IngestErrorCount(BaseModel):
    transport: str
    code: str
    count: int


class IngestStatus(BaseModel):
    messages: dict[str, int]  # accepted, by transport (tcp, udp, http, notify)
    errors: list[IngestErrorCount]  # refused, by transport and reason
    connections_open: int
    connections_total: int
    connections_evicted: int


class QueueStatus(BaseModel):
    name: str
    depth: int | None  # messages ready at the last reading
    stalled_after: float
    broker_problem: str | None  # why the last reading failed, if it did


class ServiceStatus(BaseModel):
    name: str
    state: str
    reason: str
    since_age: float  # seconds in this state
    pid: int | None
    restarts: int
    watch_only: bool
    requires: list[str]
    last_heartbeat_age: float | None  # seconds since any message from the service
    messages: int
    data: dict[str, DataStatus]
    last_exit: str | None
    status: str | None  # the service's own words (STATUS=, "status")
    client_dropped: int  # data events its client reported dropping
    queue: QueueStatus | None


class ErrorBody(BaseModel):
    code: str
    message: str


def create_app(supervisor: Supervisor, hub: LogHub | None = None) -> FastAPI:
    app = FastAPI(
        title="heartwatch",
        version=heartwatch.__version__,
        description="Supervise a pipeline, watch heartbeats and data flow, recover.",
    )

    def status_of(name: str) -> ServiceStatus:
        record = supervisor.watchdog.record(name)
        now = supervisor.now()
        last = supervisor.last_data[name]
        kinds = sorted(set(record.data_counts) | set(record.config.data_timeout))
        return ServiceStatus(
            name=name,
            state=record.state.value,
            reason=record.reason,
            since_age=round(now - record.state_since, 3),
            pid=record.pid,
            restarts=record.restarts,
            watch_only=record.config.watch_only,
            requires=list(record.config.requires),
            last_heartbeat_age=None
            if record.last_seen_at is None
            else round(now - record.last_seen_at, 3),
            messages=record.messages,
            data={
                kind: DataStatus(
                    count=record.data_counts.get(kind, 0),
                    last_age=round(now - last[kind].at, 3) if kind in last else None,
                    last_sent_time=last[kind].sent_time if kind in last else None,
                    last_data=last[kind].data if kind in last else None,
                )
                for kind in kinds
            },
            last_exit=record.last_exit,
            status=supervisor.status_text.get(name),
            client_dropped=supervisor.client_dropped[name],
            queue=None
            if record.queue is None or record.config.queue is None
            else QueueStatus(
                name=record.config.queue.name,
                depth=record.queue.depth,
                stalled_after=record.queue.stalled_after,
                broker_problem=record.queue.broker_problem,
            ),
        )

    def known(name: str) -> str:
        if name not in supervisor.watchdog:
            raise HTTPException(404, {"code": "unknown_service", "message": f"no service {name!r}"})
        return name

    @app.get("/api/v1/services", response_model=list[ServiceStatus])
    async def list_services() -> list[ServiceStatus]:
        """Every service, in start order."""
        return [status_of(r.name) for r in supervisor.watchdog.records()]

    @app.get("/api/v1/ingest", response_model=IngestStatus)
    async def ingest_counters() -> IngestStatus:
        """What arrived, and what was refused and why, by transport."""
        stats = supervisor.stats
        return IngestStatus(
            messages=dict(stats.messages),
            errors=[
                IngestErrorCount(transport=t, code=c, count=n)
                for (t, c), n in sorted(stats.errors.items())
            ],
            connections_open=stats.connections_open,
            connections_total=stats.connections_total,
            connections_evicted=stats.connections_evicted,
        )

    @app.get(
        "/api/v1/services/{name}",
        response_model=ServiceStatus,
        responses={404: {"model": ErrorBody}},
    )
    async def get_service(name: str) -> ServiceStatus:
        """One service."""
        return status_of(known(name))

    @app.post(
        "/api/v1/services/{name}/{verb}",
        response_model=ServiceStatus,
        responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
    )
    async def control(name: str, verb: Literal["restart", "stop", "start"]) -> ServiceStatus:
        """Restart (with its dependents), stop (dependents first) or start (requirements first)."""
        known(name)
        try:
            if verb == "restart":
                supervisor.restart(name)
            elif verb == "stop":
                supervisor.stop([name])
            else:
                supervisor.start([name])
        except DaemonStopping as error:
            raise HTTPException(409, {"code": "stopping", "message": str(error)}) from None
        return status_of(name)

    @app.exception_handler(HTTPException)
    async def _error(request: Request, error: HTTPException) -> JSONResponse:
        detail = error.detail
        body = detail if isinstance(detail, dict) else {"code": "error", "message": str(detail)}
        return JSONResponse(body, status_code=error.status_code)

    app.include_router(create_ping_router(supervisor))
    logs = supervisor.config.logs
    hub = hub or LogHub(logs.partial_line_flush, logs.viewer_buffer_lines)
    app.include_router(create_log_router(supervisor, hub))
    app.include_router(create_dashboard_router())
    app.mount("/static", static_files(), name="static")
    return app
