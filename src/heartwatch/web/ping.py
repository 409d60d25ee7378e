"""HTTP pings in the style of the Healthchecks ping API, so curl lines and cron wrappers work.

    GET|POST|HEAD /ping/<service>             alive (success)
    GET|POST|HEAD /ping/<service>/start       a run started
    GET|POST|HEAD /ping/<service>/fail        the run failed
    GET|POST|HEAD /ping/<service>/<0-255>     exit code: 0 is success, anything else a failure
    GET|POST|HEAD /ping/<service>/<kind>      a data event of that kind

A POST body of up to 10 000 bytes is kept as the event's payload (longer ones are cut there).
Answers are plain text: ``OK``, or 404 for an unknown service, 400 for a bad exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import PlainTextResponse

from heartwatch.core.ping import WHAT_PATTERN, parse_ping

if TYPE_CHECKING:
    from heartwatch.daemon.supervisor import Supervisor

MAX_BODY = 10_000
_METHODS = ["GET", "POST", "HEAD"]


def create_ping_router(supervisor: Supervisor) -> APIRouter:
    router = APIRouter(tags=["ping"])

    async def ping(request: Request, service: str) -> PlainTextResponse:
        return await receive(request, service, None)

    async def ping_what(
        request: Request,
        service: str,
        # Documented, not enforced here: a bad code is a plain-text 400, as curl users expect.
        what: Annotated[str, Path(json_schema_extra={"pattern": WHAT_PATTERN})],
    ) -> PlainTextResponse:
        return await receive(request, service, what)

    async def receive(request: Request, service: str, what: str | None) -> PlainTextResponse:
        body = None
        if request.method == "POST":
            raw = bytearray()
            async for chunk in request.stream():  # never more than MAX_BODY in memory
                raw += chunk[: MAX_BODY - len(raw)]
                if len(raw) >= MAX_BODY:
                    break
            body = raw.decode("utf-8", "replace") if raw else None
        message = parse_ping(what, body)
        stats = supervisor.stats
        if isinstance(message, str):
            stats.errors["http", "bad_ping"] += 1
            return PlainTextResponse(message, status_code=400)
        refused = supervisor.receive_message(message._replace(service=service), "http")
        if refused is not None:
            stats.errors["http", refused] += 1
            status = 404 if refused == "unknown_service" else 400
            return PlainTextResponse("not found" if status == 404 else refused, status_code=status)
        stats.messages["http"] += 1
        return PlainTextResponse("OK")

    text: dict[int | str, dict[str, Any]] = {
        200: {"description": "OK", "content": {"text/plain": {}}},
        400: {"description": "a bad exit code or data kind", "content": {"text/plain": {}}},
        404: {"description": "no such service", "content": {"text/plain": {}}},
    }
    router.add_api_route(
        "/ping/{service}",
        ping,
        methods=_METHODS,
        summary="Ping: alive",
        response_class=PlainTextResponse,
        responses=text,
    )
    router.add_api_route(
        "/ping/{service}/{what}",
        ping_what,
        methods=_METHODS,
        summary="Ping: start, fail, exit code, or a data event",
        response_class=PlainTextResponse,
        responses=text,
    )
    return router
