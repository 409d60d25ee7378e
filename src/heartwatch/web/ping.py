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

import re
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import PlainTextResponse

from heartwatch.core.wire import FAIL, HEARTBEAT, START, Message

if TYPE_CHECKING:
    from heartwatch.daemon.supervisor import Supervisor

MAX_BODY = 10_000
_KIND = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_METHODS = ["GET", "POST", "HEAD"]
# What may follow the service, as documented: start, fail, an exit code 0-255, or a data kind
# (one that does not start with a digit; the server takes those too, but the document keeps
# the description simple enough for generators).
WHAT_PATTERN = (
    r"^(?:start|fail|25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]|[A-Za-z_.:-][A-Za-z0-9_.:-]{0,63})$"
)


def parse_ping(what: str | None, body: str | None) -> Message | str:
    """The message a ping path stands for, or the text of a 400 answer."""
    if what is None:
        return Message(HEARTBEAT)
    if what == "start":
        return Message(START)
    if what == "fail":
        return Message(FAIL, reason=_first_line(body) or "fail ping")
    if what.isdigit():
        code = int(what)
        if code > 255:
            return "exit code must be 0-255"
        return Message(HEARTBEAT) if code == 0 else Message(FAIL, reason=f"exit code {code}")
    if not _KIND.fullmatch(what):
        return "not a data kind"
    return Message(what, data=body)


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


def _first_line(text: str | None) -> str | None:
    return text.strip().splitlines()[0][:200] if text and text.strip() else None
