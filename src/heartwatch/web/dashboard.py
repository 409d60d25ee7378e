"""The dashboard: one page and its assets, shipped inside the package (no CDN, no build step).

The page and its assets hold no data, so they are served without a token; everything they show
comes from the API and the websockets, which need one when one is configured (the page asks
for it once). ``docs/api.md`` describes what the page reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent / "static"

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


def create_dashboard_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)

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


def static_files() -> StaticFiles:
    """The page's scripts and styles, mounted at ``/static``."""
    return _RevalidatedFiles(directory=STATIC)
