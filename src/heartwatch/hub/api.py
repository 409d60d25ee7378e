"""The hub's HTTP application: the fleet's API, its websockets, metrics and dashboard.

Every answer comes from PostgreSQL (``hub/queries.py``), never from an agent: a host that is
slow or gone makes no request wait. Commands go out through the broker (``hub/commands.py``)
and live logs come back through it (``hub/logs.py``); changes are pushed by ``hub/feed.py``.

The same conventions as the agent's API (``web/api.py``): JSON errors ``{"code", "message"}``
(validation errors included), the same gate (``web/access.py``: a read token reads, the
token controls, a refusal says why), the dashboard's security headers and CSP, OpenAPI at
``/openapi.json`` and Swagger UI at ``/docs`` from the package.

The hub serves as soon as its database answers: the broker's parts (commands, live logs) are
``attach``ed when the broker is reached, their routes answer 503 ``broker_unreachable`` until
then. While the database is away every ``/api/`` request answers 503 ``database_unreachable``
at once (``DatabaseWatch``: set by the first failure, cleared by a background check), not
after a pool wait per request. Names in paths and queries are checked (a host name that
cannot exist is 404 / 422), and text PostgreSQL cannot hold (NUL) is a 422, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import psycopg
from fastapi import FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field

import heartwatch
from heartwatch.core.fleetwire import is_host_name
from heartwatch.hub import queries
from heartwatch.hub.commands import CommandProblem
from heartwatch.hub.history import create_hub_history_router
from heartwatch.hub.logs import BROKER_CLOSE, NOT_FOUND_CLOSE, UNREACHABLE_CLOSE, refuse
from heartwatch.hub.metrics import HubCounters, create_metrics_router
from heartwatch.web.access import AccessMiddleware, AccessPolicy, Need, presented_token
from heartwatch.web.api import install_error_answers
from heartwatch.web.apidocs import DOCS_PAGE, with_bearer_scheme
from heartwatch.web.dashboard import (
    CONSTANTS_BLOCK,
    SECURITY_HEADERS,
    server_constants,
    static_files,
)
from heartwatch.web.status import ErrorBody

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from heartwatch.hub.commands import CommandSender
    from heartwatch.hub.config import HubConfig
    from heartwatch.hub.feed import FleetFeed
    from heartwatch.hub.logs import LogRelay

HUB_STATIC = Path(__file__).resolve().parent / "static"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# -- the answers' shapes (OpenAPI; the answers themselves are written by orjson) ---------------


class Host(BaseModel):
    host: str
    state: Literal["live", "stale", "unreachable"]
    labels: dict[str, str]
    boot: str
    version: str
    config_hash: str
    last_seen_age: float  # seconds since the hub last heard from it
    state_since: float  # Unix time it entered this state
    services: int
    problems: int  # services in a state that wants attention (unknown included)


class FleetService(BaseModel):
    host: str
    name: str
    instance_of: str | None
    state: str  # the agent's state, or "unknown" while its host is unreachable
    last_state: str  # the agent's last word, kept while the host is unreachable
    reason: str
    since: float | None  # the agent's clock when it entered that state
    pid: int | None
    restarts: int | None
    ready: bool | None
    uptime: float | None
    last_heartbeat_age_at_report: float | None  # as the agent's last report had it
    status: dict[str, Any]  # the agent's GET /api/v1/services item, as last known


class Fleet(BaseModel):
    generated_at: float
    hosts: list[Host]
    services: list[FleetService]


class HostDetail(Host):
    service_list: list[FleetService]


class Event(BaseModel):
    host: str
    boot: str
    seq: int
    at: float  # the agent's clock
    type: Literal["entry", "counts", "reply"]
    kind: str | None
    service: str | None
    reason: str | None
    state: str | None
    previous: str | None
    detail: Any


class EventList(BaseModel):
    events: list[Event]  # newest first
    next_before: str | None  # pass as ?before= for the next (older) page; None: no more


class CommandOut(BaseModel):
    id: str
    host: str
    service: str | None
    verb: str
    args: dict[str, Any]
    status: Literal["sent", "accepted", "done", "failed", "refused", "expired", "unanswered"]
    reason: str
    issued_at: float
    expires_at: float
    issued_by: str


class CommandList(BaseModel):
    commands: list[CommandOut]


class CommandRequest(BaseModel):
    targets: list[str] = Field(
        min_length=1, description='"host/service" (a selection: "host/collector@*"), or "host"'
    )
    verb: Literal["restart", "stop", "start", "reload", "signal"]
    args: dict[str, Any] = Field(default_factory=dict, description='signal: {"signal": "HUP"}')
    ttl: float | None = Field(default=None, gt=0, description="seconds; default [hub] command_ttl")


class AuthStatus(BaseModel):
    token_required: bool
    scope: Literal["none", "read", "control"]


def _json(value: Any, status_code: int = 200) -> Response:
    return Response(queries.dumps(value), status_code=status_code, media_type="application/json")


def _not_found(code: str, message: str) -> HTTPException:
    return HTTPException(404, {"code": code, "message": message})


def _invalid(message: str) -> HTTPException:
    return HTTPException(422, {"code": "invalid_request", "message": message})


def _host_in_path(host: str) -> str:
    """A host name from a path: one that cannot be a host's is simply not one (404)."""
    if not is_host_name(host):
        raise _not_found("unknown_host", f"no host {host!r}")
    return host


def _checked_query(host: str | None, service: str | None) -> None:
    """Filters in a query: a name that cannot be one is a mistake (422, naming it)."""
    if host is not None and not is_host_name(host):
        raise _invalid(f"host: {host!r} is not a host name")
    if service is not None and not queries.is_service_name(service):
        raise _invalid(f"service: {service!r} is not a service name")


# -- the database's absence --------------------------------------------------------------------


class DatabaseWatch:
    """Whether the database is away, as this hub last found it: ``fail`` (a request's
    failure) sets it and starts a check every ``CHECK_INTERVAL`` that clears it once a
    connection from the pool answers. Meanwhile requests are answered 503 at once."""

    CHECK_INTERVAL = 0.5

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self.down_since: float | None = None
        self.error = ""
        self._check: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def fail(self, error: BaseException) -> None:
        self.error = f"{type(error).__name__}: {error}".strip()[:300]
        if self.down_since is None:
            self.down_since = time.monotonic()
        if self._check is None or self._check.done():
            self._check = asyncio.create_task(self._until_back(), name="hub database check")

    async def _until_back(self) -> None:
        while True:
            await asyncio.sleep(self.CHECK_INTERVAL)
            try:
                async with self.pool.connection(timeout=queries.DB_TIMEOUT) as connection:
                    await connection.execute("SELECT 1")
            except (psycopg.Error, OSError):
                continue
            self.down_since = None
            return

    async def close(self) -> None:
        if self._check is not None:
            self._check.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._check

    def response(self) -> JSONResponse:
        message = f"the database did not answer: {self.error}" if self.error else "no database"
        return JSONResponse({"code": "database_unreachable", "message": message}, 503)


class DatabaseGate:
    """ASGI middleware: while ``database`` is down, ``/api/`` requests are answered 503 at
    once (after the access check, which needs no database)."""

    def __init__(self, app: Any, database: DatabaseWatch) -> None:
        self.app = app
        self.database = database

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and self.database.down
            and str(scope.get("path", "")).startswith("/api/")
        ):
            await self.database.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)


@dataclass(slots=True)
class BrokerParts:
    """What needs the broker, attached once it is reached (``attach``); None until then."""

    commands: CommandSender | None = None
    logs: LogRelay | None = None


def attach(app: FastAPI, commands: CommandSender | None, logs: LogRelay | None) -> None:
    """The broker's parts for an app made without them (the broker reached later)."""
    parts: BrokerParts = app.state.broker_parts
    parts.commands, parts.logs = commands, logs
    counters: HubCounters = app.state.counters
    if logs is not None:
        counters.log_viewers = lambda: logs.viewers


# -- the gate ----------------------------------------------------------------------------------


class HubAccessPolicy(AccessPolicy):
    """The agent's policy (``web/access.py``) over the hub's tokens (no ingest over HTTP)."""

    def __init__(self, token: str | None, read_token: str | None) -> None:
        self.token = token
        self.read_token = read_token
        self.ingest_token = None


def hub_need_of(method: str, path: str) -> Need:
    """The pages and their assets hold no data; the rest reads, or (not GET) controls."""
    if path in ("/", "/favicon.ico") or path.startswith(("/static/", "/agent-static/")):
        return "public"
    if path.startswith("/hosts/") and path.count("/") == 2:
        return "public"
    return "read" if method in _SAFE_METHODS else "control"


# -- pages -------------------------------------------------------------------------------------


class _Page:
    """A dashboard page from ``hub/static``, read at its first request (the dashboard's
    files may be installed after the hub's code), with the server's constants filled in."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._html: str | None = None

    def response(self) -> HTMLResponse:
        if self._html is None:
            try:
                page = (HUB_STATIC / self.name).read_text(encoding="utf-8")
            except OSError:
                raise _not_found("no_page", f"the hub's {self.name} is not installed") from None
            # As the agent's page has it (web/dashboard.py render_page): "<" cannot close it.
            constants = json.dumps(server_constants()).replace("<", "\\u003c")
            self._html = page.replace(CONSTANTS_BLOCK, CONSTANTS_BLOCK.replace("{}", constants))
        return HTMLResponse(self._html, headers=SECURITY_HEADERS)


# -- the application ---------------------------------------------------------------------------


def create_hub_app(
    config: HubConfig,
    pool: AsyncConnectionPool[Any],
    commands: CommandSender | None,
    feed: FleetFeed | None,
    logs: LogRelay | None,
    *,
    counters: HubCounters | None = None,
) -> FastAPI:
    """The hub's app. ``commands``, ``feed``, ``logs`` None: those routes answer 503 (a hub
    serving reads only, e.g. while its broker is being set up; ``attach`` gives the broker's
    parts later)."""
    app = FastAPI(
        title="heartwatch hub",
        version=heartwatch.__version__,
        description="The fleet: every host's and service's state, events, history, commands "
        "and live logs. Errors are JSON objects with a stable `code` and a `message`.",
        responses={
            400: {"model": ErrorBody, "description": "a body that is not JSON"},
            422: {"model": ErrorBody, "description": "invalid request"},
        },
        docs_url=None,
        redoc_url=None,
    )
    with_bearer_scheme(app)
    policy = HubAccessPolicy(config.hub.token, config.hub.read_token)
    counters = counters or HubCounters()
    if feed is not None:
        counters.feed_clients = lambda: len(feed.clients)
        feed.counters = counters
    parts = BrokerParts()
    database = DatabaseWatch(pool)
    app.state.broker_parts, app.state.counters, app.state.database = parts, counters, database
    attach(app, commands, logs)
    not_found: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
    statuses = queries.StatusCache()  # the agents' statuses as text, while unchanged

    @app.get("/api/v1/fleet", response_model=Fleet, tags=["fleet"])
    async def fleet() -> Response:
        """Every host and every service (unknown while its host is unreachable)."""
        return _json(await queries.read_fleet(pool, statuses))

    @app.get("/api/v1/hosts", response_model=list[Host], tags=["fleet"])
    async def hosts() -> Response:
        """Every host with its service and problem counts."""
        return _json(await queries.read_hosts(pool))

    @app.get("/api/v1/hosts/{host}", response_model=HostDetail, responses=not_found, tags=["fleet"])
    async def host(host: str) -> Response:
        """One host and its services (``service_list``)."""
        found = await queries.read_host(pool, _host_in_path(host))
        if found is None:
            raise _not_found("unknown_host", f"no host {host!r}")
        return _json(found)

    @app.get("/api/v1/events", response_model=EventList, tags=["fleet"])
    async def events(
        host: str | None = None,
        service: str | None = None,
        kind: Annotated[list[str] | None, Query(description="repeatable")] = None,
        since: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        until: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        limit: Annotated[int, Query(ge=1, le=queries.MAX_EVENTS)] = queries.DEFAULT_EVENTS,
        before: Annotated[str | None, Query(description="next_before of the page before")] = None,
    ) -> Response:
        """Events newest first (by the agent's clock), filtered; keyset paging by ``before``."""
        _checked_query(host, service)
        try:
            cursor = None if before is None else queries.EventCursor.parse(before)
        except ValueError as error:
            raise HTTPException(
                422, {"code": "invalid_request", "message": f"before: {error}"}
            ) from None
        found, following = await queries.read_events(
            pool,
            host=host,
            service=service,
            kinds=kind or (),
            since=since,
            until=until,
            before=cursor,
            limit=limit,
        )
        return _json(
            {"events": found, "next_before": None if following is None else following.text()}
        )

    @app.delete(
        "/api/v1/hosts/{host}",
        responses={**not_found, 409: {"model": ErrorBody}},
        tags=["fleet"],
    )
    async def forget_host(
        host: str,
        force: Annotated[bool, Query(description="forget it even if it is live or stale")] = False,
    ) -> Response:
        """Forget a host (retired, renamed): it and its services go, its events and commands
        stay (history). A host that still speaks (live, stale) is refused (409) unless
        ``force``; if it speaks again it comes back as a new host. Needs the control token."""
        found = await queries.forget_host(pool, _host_in_path(host), force=force)
        if found is None:
            raise _not_found("unknown_host", f"no host {host!r}")
        state, services = found
        if services is None:
            raise HTTPException(
                409,
                {
                    "code": "host_not_gone",
                    "message": f"{host} is {state}: it still speaks; forget it with ?force=true"
                    " (it comes back with its next message)",
                },
            )
        return _json({"host": host, "state": state, "services": services})

    def sender() -> CommandSender:
        if parts.commands is None:
            raise HTTPException(
                503,
                {
                    "code": "broker_unreachable",
                    "message": "this hub has not reached its broker: no commands yet",
                },
            )
        return parts.commands

    @app.post(
        "/api/v1/commands",
        status_code=202,
        response_model=CommandList,
        responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
        tags=["commands"],
    )
    async def send_commands(request: CommandRequest) -> Response:
        """One signed command per target (selections expanded), sent to each host's queue.
        The whole request is refused (422, naming it) if any target is unknown; 503 when
        the broker cannot be reached. Follow each with ``GET /api/v1/commands/{id}`` or
        ``/ws/events``."""
        try:
            sent = await sender().send(request.targets, request.verb, request.args, request.ttl)
        except CommandProblem as problem:
            raise HTTPException(
                problem.status, {"code": problem.code, "message": problem.message}
            ) from None
        return _json({"commands": sent}, status_code=202)

    @app.get(
        "/api/v1/commands/{command_id}",
        response_model=CommandOut,
        responses=not_found,
        tags=["commands"],
    )
    async def command(command_id: str) -> Response:
        """One command and what became of it."""
        if not queries.is_command_id(command_id):
            raise _not_found("unknown_command", f"no command {command_id!r}")
        found = await queries.read_command(pool, command_id)
        if found is None:
            raise _not_found("unknown_command", f"no command {command_id!r}")
        return _json(found)

    @app.get("/api/v1/commands", response_model=CommandList, tags=["commands"])
    async def list_commands(
        host: str | None = None,
        verb: Annotated[
            list[str] | None, Query(description="repeatable; default: every verb but tail")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=queries.MAX_COMMANDS)] = 100,
    ) -> Response:
        """Commands newest first, a host's if given; the log relay's ``tail`` leases only
        when asked for (``verb=tail``)."""
        _checked_query(host, None)
        found = await queries.read_commands(pool, host=host, verbs=verb or (), limit=limit)
        return _json({"commands": found})

    @app.get("/api/v1/auth", response_model=AuthStatus, tags=["fleet"])
    async def auth(request: Request) -> AuthStatus:
        """Whether a token is needed, and what the one presented (if any) allows."""
        token = presented_token(dict(request.headers), request.url.query)
        return AuthStatus(token_required=policy.token_required, scope=policy.grant(token))

    @app.websocket("/ws/events")
    async def fleet_events(websocket: WebSocket) -> None:
        if feed is None:
            await refuse(websocket, 1011, "this hub has no change feed")
            return
        await feed.serve(websocket)

    @app.websocket("/ws/logs/{host}/{service}")
    async def fleet_log(websocket: WebSocket, host: str, service: str) -> None:
        if not is_host_name(host):
            await refuse(websocket, NOT_FOUND_CLOSE, f"no host {host!r}")
            return
        if not queries.is_service_name(service):
            await refuse(websocket, NOT_FOUND_CLOSE, f"no service {service!r} on {host}")
            return
        target = await queries.read_log_target(pool, host, service)
        if target is None:
            await refuse(websocket, NOT_FOUND_CLOSE, f"no host {host!r}")
            return
        state, silent, known = target
        if not known:
            await refuse(websocket, NOT_FOUND_CLOSE, f"no service {service!r} on {host}")
            return
        if state == queries.UNREACHABLE:
            await refuse(
                websocket,
                UNREACHABLE_CLOSE,
                f"{host} is unreachable (silent for {silent:.0f} s): its output cannot be followed",
            )
            return
        if parts.logs is None:
            await refuse(websocket, BROKER_CLOSE, "this hub has not reached its broker: no logs")
            return
        await parts.logs.serve(websocket, host, service)

    _install_errors(app, database)
    app.include_router(create_hub_history_router(pool))
    app.include_router(create_metrics_router(pool, counters))
    fleet_page, host_page = _Page("fleet.html"), _Page("host.html")

    @app.get("/", include_in_schema=False)
    async def fleet_dashboard() -> HTMLResponse:
        return fleet_page.response()

    @app.get("/hosts/{host}", include_in_schema=False)
    async def host_dashboard(host: str) -> HTMLResponse:
        return host_page.response()

    # The agent's Swagger UI page (web/apidocs.py), its assets where the hub serves them.
    docs_page = DOCS_PAGE.read_text(encoding="utf-8").replace('"/static/', '"/agent-static/')

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page, headers=SECURITY_HEADERS)

    # The agent's shared modules (pictures.js, logpanel.js…) where the hub's pages import them.
    app.mount("/agent-static", static_files(), name="agent-static")
    app.mount("/static", static_files(HUB_STATIC), name="static")
    app.router.on_shutdown.append(database.close)
    app.add_middleware(DatabaseGate, database=database)
    app.add_middleware(AccessMiddleware, policy=policy, need=hub_need_of)
    return app


def _install_errors(app: FastAPI, database: DatabaseWatch) -> None:
    """Errors as the agent's API gives them (``web/api.py``)."""

    install_error_answers(app)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _no_database(request: Request, error: Exception) -> JSONResponse:
        # The database is the hub's only source: without it, say so at once (no traceback),
        # and so for the next requests until it answers again.
        database.fail(error)
        return database.response()

    @app.exception_handler(psycopg.DataError)
    async def _unstorable(request: Request, error: psycopg.DataError) -> JSONResponse:
        # What a request asked for, PostgreSQL cannot even compare (a NUL in a text): no
        # such thing can exist.
        message = f"the request holds what the database cannot read: {error}".strip()[:300]
        return JSONResponse({"code": "invalid_request", "message": message}, 422)
