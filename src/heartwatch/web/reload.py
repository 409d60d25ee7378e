"""Reload and scale over HTTP: ``POST /api/v1/reload`` and ``POST /api/v1/scale/{service}``.

Both answer what was done (``ReloadOutcome``); a configuration that cannot be used is refused
whole with 422 ``invalid_config`` and every problem at its key path, the daemon going on with
the configuration in force (``daemon/reload.py`` has the rules).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, Field

from heartwatch.core.instances import MAX_INSTANCES
from heartwatch.daemon.reload import (
    NotScalable,
    Reloader,
    ReloadRefused,
    ReloadResult,
    UnknownTable,
)
from heartwatch.daemon.supervisor import DaemonStopping
from heartwatch.web.status import ErrorBody


class ReloadOutcome(BaseModel):
    added: list[str]  # started, unless autostart = false
    removed: list[str]  # stopped (what relied on them first), then forgotten
    changed: list[str]  # restarted with their new settings (dependents along)
    unchanged: list[str]  # not touched
    restarted: list[str]  # unchanged, restarted with a changed service they require
    needs_daemon_restart: list[str]  # settings kept as they were until the daemon restarts
    overrides: dict[str, int]  # instance counts set by scale, in force instead of the file's
    warnings: list[str]  # what a person may not expect (a scale restarting dependents)


class ProblemBody(BaseModel):
    path: str
    message: str


class InvalidConfigBody(ErrorBody):
    # With "invalid_config" (every problem of the file); a malformed request ("invalid_request",
    # the same status) has none.
    problems: list[ProblemBody] = Field(default_factory=list)


def _whole_number(value: object) -> object:
    """A count as JSON writes it: 5, or 5.0 (JSON Schema's integers include it); never true,
    "5" or 2.5 (a client's bug, refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("instances is a whole number, such as 4")
    return value


class ScaleRequest(BaseModel):
    instances: Annotated[int, Field(ge=1, le=MAX_INSTANCES), BeforeValidator(_whole_number)]


_RESPONSES: dict[int | str, dict[str, object]] = {
    409: {"model": ErrorBody, "description": "the daemon is stopping"},
    422: {
        "model": InvalidConfigBody,
        "description": "the configuration cannot be used (invalid_config), or the request "
        "is malformed (invalid_request)",
    },
}


def create_reload_router(reloader: Reloader) -> APIRouter:
    router = APIRouter(tags=["control"])

    @router.post("/api/v1/reload", response_model=ReloadOutcome, responses=_RESPONSES)
    async def reload() -> ReloadOutcome | JSONResponse:
        """Read the configuration file again and apply the difference (SIGHUP does the same)."""
        try:
            return _outcome(await reloader.reload("reload"))
        except ReloadRefused as refused:
            return _invalid(refused)
        except DaemonStopping as error:
            raise HTTPException(409, {"code": "stopping", "message": str(error)}) from None

    @router.post(
        "/api/v1/scale/{service}",
        response_model=ReloadOutcome,
        responses={**_RESPONSES, 404: {"model": ErrorBody}},
    )
    async def scale(service: str, request: ScaleRequest) -> ReloadOutcome | JSONResponse:
        """Run this many instances of a ``[[service]]`` with ``instances`` (until the daemon
        restarts, or the file's ``instances`` of it changes)."""
        try:
            return _outcome(await reloader.scale(service, request.instances))
        except UnknownTable:
            message = f"no [[service]] named {service!r}"
            raise HTTPException(404, {"code": "unknown_service", "message": message}) from None
        except NotScalable as error:
            raise HTTPException(409, {"code": "not_scalable", "message": str(error)}) from None
        except ReloadRefused as refused:
            return _invalid(refused)
        except DaemonStopping as error:
            raise HTTPException(409, {"code": "stopping", "message": str(error)}) from None

    return router


def _outcome(result: ReloadResult) -> ReloadOutcome:
    return ReloadOutcome.model_validate(result.as_dict())


def _invalid(refused: ReloadRefused) -> JSONResponse:
    body = InvalidConfigBody(
        code="invalid_config",
        message=refused.headline,  # the problems are listed apart
        problems=[ProblemBody(path=p.path, message=p.message) for p in refused.problems],
    )
    return JSONResponse(body.model_dump(), status_code=422)
