"""The dashboard: one page and its assets, shipped inside the package (no CDN, no build step).

The page and its assets hold no data, so they are served without a token; everything they show
comes from the API and the websockets, which need one when one is configured (the page asks
for it once). ``docs/api.md`` describes what the page reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from heartwatch.logview.logpaths import BAD_PATH
from heartwatch.web.access import REFUSAL_CLOSES, UNAUTHORISED_CLOSE
from heartwatch.web.history import SNAPSHOT_EVENTS

STATIC = Path(__file__).resolve().parent / "static"
# Where the page carries what it shares with the server (static/shared.js reads it): a data
# block, not a script, so the policy still runs no inline code.
CONSTANTS_BLOCK = '<script type="application/json" id="server-constants">{}</script>'

# The page must not be framed by another site (clickjacking the control buttons), and runs
# only its own scripts: a log line that slipped through as markup still could not run code.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def server_constants() -> dict[str, Any]:
    """What the page must know as the server does: one home for each, the server's."""
    return {
        "snapshot_events": SNAPSHOT_EVENTS,  # a snapshot holding fewer holds them all
        "close": {
            "unauthorised": UNAUTHORISED_CLOSE,
            "bad_request": BAD_PATH,
            "refusals_from": REFUSAL_CLOSES.start,
            "refusals_below": REFUSAL_CLOSES.stop,
        },
    }


def render_page() -> str:
    """``index.html`` with the server's constants in its data block."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    # "<" escaped: nothing in the block can close it.
    constants = json.dumps(server_constants()).replace("<", "\\u003c")
    filled = CONSTANTS_BLOCK.replace("{}", constants)
    if CONSTANTS_BLOCK not in page:
        raise RuntimeError("static/index.html lost its server-constants block")
    return page.replace(CONSTANTS_BLOCK, filled)


def create_dashboard_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    html = render_page()  # once: the page does not change while the daemon runs

    @router.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    # The history page holds no data either: it reads /api/v1/history and its kin.
    history_html = (STATIC / "history.html").read_text(encoding="utf-8")

    @router.get("/history")
    async def history_page() -> HTMLResponse:
        return HTMLResponse(history_html, headers=SECURITY_HEADERS)

    return router


class _RevalidatedFiles(StaticFiles):
    """Assets the browser revalidates at every load (a 304 when unchanged).

    Without ``Cache-Control`` a browser may reuse a script for days on heuristics; after an
    upgrade in place the page would then run the previous version's modules against the new
    API."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def static_files(directory: Path = STATIC) -> StaticFiles:
    """The page's scripts and styles, mounted at ``/static`` (the hub's: its own folder)."""
    return _RevalidatedFiles(directory=directory, check_dir=directory == STATIC)
