"""The HTTP application: status and control, history, events, logs, pings, metrics, dashboard.

FastAPI on the daemon's own event loop: a handler reads the supervisor's state directly, with no
locks and no copies across threads. Every request first passes ``web/access.py``'s gate. Errors
are JSON with a stable ``code`` (``docs/api.md``), validation errors included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

import heartwatch
from heartwatch.daemon.logfollow import LogHub
from heartwatch.daemon.oserrors import describe_os_error
from heartwatch.daemon.reload import Reloader
from heartwatch.daemon.supervisor import Supervisor
from heartwatch.web.access import AccessMiddleware, AccessPolicy, presented_token
from heartwatch.web.apidocs import create_docs_router, with_bearer_scheme
from heartwatch.web.control import create_control_router
from heartwatch.web.dashboard import create_dashboard_router, static_files
from heartwatch.web.history import EventFeed, create_events_router
from heartwatch.web.history_api import create_history_router
from heartwatch.web.logs import create_log_router
from heartwatch.web.metrics import create_metrics_router
from heartwatch.web.ping import create_ping_router
from heartwatch.web.reload import create_reload_router
from heartwatch.web.status import (
    ErrorBody,
    IngestStatus,
    ServiceStatus,
    read_ingest,
    read_status,
)

if TYPE_CHECKING:
    from heartwatch.daemon.alerts import Alerter
    from heartwatch.daemon.recorder import Recorder


class OutputCleared(BaseModel):
    name: str
    bytes_removed: int  # from its output file and its backups together


class AuthStatus(BaseModel):
    token_required: bool
    scope: Literal["none", "read", "control"]  # what the presented credentials allow


_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
}


def create_app(
    supervisor: Supervisor,
    *,
    recorder: Recorder,
    hub: LogHub | None = None,
    alerter: Alerter | None = None,
    reloader: Reloader | None = None,
) -> FastAPI:
    app = FastAPI(
        title="heartwatch",
        version=heartwatch.__version__,
        description="Supervise a pipeline, watch heartbeats and data flow, recover. "
        "Errors are JSON objects with a stable `code` and a `message`.",
        responses={
            400: {"model": ErrorBody, "description": "a body that is not JSON"},
            422: {"model": ErrorBody, "description": "invalid request"},
        },
        docs_url=None,  # web/apidocs.py serves /docs from the package (offline, no inline code)
        redoc_url=None,
    )
    with_bearer_scheme(app)
    policy = AccessPolicy(supervisor.config.server)
    feed = EventFeed(supervisor, recorder)
    supervisor.journal.subscribe(feed.receive)

    def known(name: str) -> str:
        if name not in supervisor.watchdog:
            raise HTTPException(404, {"code": "unknown_service", "message": f"no service {name!r}"})
        return name

    @app.get("/api/v1/services", response_model=list[ServiceStatus], tags=["status"])
    async def list_services() -> list[ServiceStatus]:
        """Every service, in start order."""
        return [read_status(supervisor, r.name) for r in supervisor.watchdog.records()]

    @app.get("/api/v1/services/{name}", response_model=ServiceStatus, responses=_ERRORS)
    async def get_service(name: str) -> ServiceStatus:
        """One service."""
        return read_status(supervisor, known(name))

    @app.delete(
        "/api/v1/services/{name}/output",
        response_model=OutputCleared,
        responses={404: {"model": ErrorBody}, 500: {"model": ErrorBody}},
        tags=["control"],
    )
    async def clear_output(name: str) -> OutputCleared:
        """Clear the service's captured output: its log file is emptied (live viewers see a
        truncation) and its numbered backups are removed."""
        try:
            removed = supervisor.clear_output(known(name))
        except OSError as error:
            message = f"cannot clear the output of {name!r}: {describe_os_error(error)}"
            raise HTTPException(500, {"code": "clear_failed", "message": message}) from None
        return OutputCleared(name=name, bytes_removed=removed)

    app.include_router(create_control_router(supervisor))  # web/control.py
    # Reload and scale (web/reload.py): the assembly's reloader, which SIGHUP uses too.
    reloader = reloader or Reloader(supervisor, supervisor.config.source)
    app.include_router(create_reload_router(reloader))

    @app.get("/api/v1/ingest", response_model=IngestStatus, tags=["status"])
    async def ingest_counters() -> IngestStatus:
        """What arrived, and what was refused and why, by transport."""
        return read_ingest(supervisor)

    @app.get("/api/v1/auth", response_model=AuthStatus, tags=["status"])
    async def auth(request: Request) -> AuthStatus:
        """Whether a token is needed, and what the one presented (if any) allows."""
        token = presented_token(dict(request.headers), request.url.query)
        return AuthStatus(token_required=policy.token_required, scope=policy.grant(token))

    install_error_answers(app)
    app.include_router(create_events_router(supervisor, recorder, feed))
    app.include_router(create_history_router(supervisor, recorder))
    app.include_router(create_metrics_router(supervisor, alerter))
    app.include_router(create_ping_router(supervisor))
    logs = supervisor.config.logs
    hub = hub or LogHub(logs.partial_line_flush, logs.viewer_buffer_lines)
    app.include_router(create_log_router(supervisor, hub))
    app.include_router(create_dashboard_router())
    app.include_router(create_docs_router())
    app.mount("/static", static_files(), name="static")
    app.add_middleware(AccessMiddleware, policy=policy)
    return app


def install_error_answers(app: FastAPI) -> None:
    """Every refusal as ``{"code", "message"}`` (``docs/api.md``: errors), validation errors
    and clients gone mid-request included. The hub's API (``hub/api.py``) answers the same."""

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        detail = error.detail
        if isinstance(detail, dict):
            body = detail
        else:
            code = _STATUS_CODES.get(error.status_code, "error")
            body = {"code": code, "message": str(detail)}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, error: ClientDisconnect) -> JSONResponse:
        # The client left (or was closed for sending its body too slowly) while its body was
        # read: nobody hears this answer, and it is not the server's error (no traceback).
        body = {
            "code": "client_disconnected",
            "message": "the client left before its request ended",
        }
        return JSONResponse(body, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        ]
        body = {"code": "invalid_request", "message": "; ".join(problems)}
        return JSONResponse(body, status_code=422)
