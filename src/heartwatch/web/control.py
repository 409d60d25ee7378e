"""Control over HTTP: start, stop, restart several services in one request, and signals.

``POST /api/v1/control/{verb}`` takes the names a person typed (``all``, a service, a
``[[service]]`` with instances, a glob such as ``collector@*``) and expands them with
``core/selection.py`` before anything is done: one unknown name refuses the whole request
(404, naming it and what it may have meant), so a typo never restarts half a farm.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from heartwatch.config import Signal
from heartwatch.core.selection import UnknownNames, select_services
from heartwatch.daemon.supervisor import DaemonStopping, NotRunning, Supervisor
from heartwatch.web.status import ErrorBody, ServiceStatus, read_status

Verb = Literal["restart", "stop", "start"]


class ControlRequest(BaseModel):
    # Names as typed: a service, all, a [[service]] name, a glob (core/selection.py).
    names: Annotated[
        list[Annotated[str, Field(max_length=256)]], Field(min_length=1, max_length=1000)
    ]


class SignalRequest(BaseModel):
    signal: Signal  # "HUP", "SIGHUP" or 1
    group: bool = False  # the whole process group, not only the main process


def selection_groups(supervisor: Supervisor) -> dict[str, str | None]:
    """Every service, in start order, with its ``[[service]]`` name when it is an instance."""
    # From the records' specs: a service a reload removed is still there while it stops.
    return {record.name: record.spec.instance_of for record in supervisor.watchdog.records()}


def select_or_404(supervisor: Supervisor, names: list[str]) -> list[str]:
    try:
        return select_services(names, selection_groups(supervisor))
    except UnknownNames as unknown:
        raise HTTPException(404, {"code": "unknown_service", "message": str(unknown)}) from None


def _carry_out(supervisor: Supervisor, verb: Verb, names: list[str]) -> None:
    try:
        if verb == "restart":
            for name in names:
                supervisor.restart(name)
        elif verb == "stop":
            supervisor.stop(names)
        else:
            supervisor.start(names)
    except DaemonStopping as error:
        raise HTTPException(409, {"code": "stopping", "message": str(error)}) from None


def create_control_router(supervisor: Supervisor) -> APIRouter:
    router = APIRouter(tags=["control"])
    refusals: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
    }

    @router.post("/api/v1/control/{verb}", response_model=list[ServiceStatus], responses=refusals)
    async def control_many(verb: Verb, body: ControlRequest) -> list[ServiceStatus]:
        """Restart, stop or start every service the names select (see ``docs/api.md``): all
        names are checked first; the answer is the selected services' statuses."""
        names = select_or_404(supervisor, body.names)
        _carry_out(supervisor, verb, names)
        return [read_status(supervisor, name) for name in names]

    # Before ``/services/{name}/{verb}``: "signal" is not one of its verbs.
    @router.post("/api/v1/services/{name}/signal", response_model=ServiceStatus, responses=refusals)
    async def send_signal(name: str, body: SignalRequest) -> ServiceStatus:
        """Send a signal to the service's main process (``group``: its whole process group);
        409 ``not_running`` when it has no process."""
        known(name)
        try:
            supervisor.signal(name, body.signal, group=body.group)
        except NotRunning as error:
            raise HTTPException(409, {"code": "not_running", "message": str(error)}) from None
        return read_status(supervisor, name)

    @router.post("/api/v1/services/{name}/{verb}", response_model=ServiceStatus, responses=refusals)
    async def control(name: str, verb: Verb) -> ServiceStatus:
        """Restart (with its dependents), stop (dependents first) or start (requirements first)."""
        _carry_out(supervisor, verb, [known(name)])
        return read_status(supervisor, name)

    def known(name: str) -> str:
        if name not in supervisor.watchdog:
            raise HTTPException(404, {"code": "unknown_service", "message": f"no service {name!r}"})
        return name

    return router
