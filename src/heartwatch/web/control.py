"""Control over HTTP: start, stop, restart several services in one request, and signals.

``POST /api/v1/control/{verb}`` takes the names a person typed (``all``, a service, a
``[[service]]`` with instances, a glob such as ``collector@*``) and expands them with
``core/selection.py`` before anything is done: one unknown name refuses the whole request
(404, naming it and what it may have meant), so a typo never restarts half a farm. A service
a reload removed is still there while its process stops: it can be stopped (and is in
``all`` for a stop), but not started or restarted (404, saying so), as if it were gone.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from heartwatch.config import Signal
from heartwatch.core.events import UnknownService
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


def selection_groups(supervisor: Supervisor, verb: Verb = "stop") -> dict[str, str | None]:
    """The services ``verb`` may act on, in start order, each with its ``[[service]]`` name
    when it is an instance: for a stop every record (a service a reload removed is still
    there while it stops), else only those in the configuration in force."""
    return {
        record.name: record.spec.instance_of
        for record in supervisor.watchdog.records()
        if verb == "stop" or record.name in supervisor.services
    }


def select_or_404(supervisor: Supervisor, names: list[str], verb: Verb = "stop") -> list[str]:
    try:
        return select_services(names, selection_groups(supervisor, verb))
    except UnknownNames as unknown:
        raise HTTPException(404, _unknown(supervisor, str(unknown), unknown.names)) from None


def _unknown(supervisor: Supervisor, message: str, names: tuple[str, ...]) -> dict[str, str]:
    """The 404's body; a name a reload removed (still stopping) says so."""
    removed = [name for name in names if name in supervisor.watchdog]
    if removed:
        message += "; removed by a reload, still stopping (it can be stopped, not started): "
        message += ", ".join(removed)
    return {"code": "unknown_service", "message": message}


def _carry_out(supervisor: Supervisor, verb: Verb, names: list[str]) -> None:
    """Act on ``names``, all selected for ``verb`` beforehand (none is refused half-way)."""
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
    except UnknownService as error:  # selected for the verb first: a bug, said as a 404
        raise HTTPException(404, _unknown(supervisor, str(error), (error.name,))) from None


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
        names = select_or_404(supervisor, body.names, verb)
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
        _carry_out(supervisor, verb, [known(name, verb)])
        return read_status(supervisor, name)

    def known(name: str, verb: Verb = "stop") -> str:
        if name not in supervisor.watchdog or (verb != "stop" and name not in supervisor.services):
            raise HTTPException(404, _unknown(supervisor, f"no service {name!r}", (name,)))
        return name

    return router
