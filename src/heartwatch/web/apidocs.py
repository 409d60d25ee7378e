"""``/docs``: Swagger UI from the package (``static/swagger/``), working offline.

FastAPI's own ``/docs`` page loads Swagger UI from a CDN and starts it with an inline script:
on a machine without internet, or under the dashboard's Content-Security-Policy (no inline
code), the page stays blank. Here the page, its script and styles are files of the package,
started by ``static/swagger/init.js``, and the page carries the dashboard's security headers.
With a token configured, the page and ``/openapi.json`` need it (reading), as every endpoint
but the dashboard's shell does: open ``/docs?token=…``; ``init.js`` takes the token out of
the address (so it is not left in the history) and sends it as a bearer token with the
document's request and every request tried from the page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse

from heartwatch.web.dashboard import SECURITY_HEADERS, STATIC

DOCS_PAGE = STATIC / "swagger" / "docs.html"
BEARER = {"bearer": {"type": "http", "scheme": "bearer", "description": "[server] token"}}


def create_docs_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    html = DOCS_PAGE.read_text(encoding="utf-8")

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    return router


def with_bearer_scheme(app: FastAPI) -> None:
    """The OpenAPI document says that requests take a bearer token, so that Swagger UI's
    "Authorize" sends it (the gate, ``web/access.py``, decides which requests need one)."""

    build = app.openapi  # FastAPI's: builds the document once and keeps it

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()
        if fresh:
            schema.setdefault("components", {})["securitySchemes"] = BEARER
            schema["security"] = [{"bearer": []}, {}]  # {}: none needed on loopback
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
