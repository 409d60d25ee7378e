"""``/docs`` from a real daemon: the page, every asset it names, and the document it reads.

The Chromium test (tests/browser/test_apidocs.py) renders it; this one needs no browser.
"""

from __future__ import annotations

import json
import re

import pytest

from e2e.support import Pipeline

pytestmark = pytest.mark.e2e


def test_docs_page_and_its_assets_are_served_by_the_daemon(pipeline: Pipeline) -> None:
    """The page under the dashboard's CSP (no inline script), each script and style it
    references served from the package, and the OpenAPI document with the bearer scheme."""
    pipeline.write_config([{"name": "watched", "heartbeat_timeout": "1h"}])
    daemon = pipeline.start_daemon()
    status, headers, page = daemon.raw("GET", "/docs")
    assert status == 200
    assert "script-src 'self'" in headers["content-security-policy"]
    html = page.decode()
    assert "<script>" not in html and "cdn" not in html.lower()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert {"/static/swagger/swagger-ui-bundle.js", "/static/swagger/init.js"} <= set(assets)
    for asset in assets:
        status, headers, body = daemon.raw("GET", asset)
        assert status == 200 and body, asset
        if asset.endswith(".js"):
            assert "javascript" in headers["content-type"], asset
    status, _, document = daemon.raw("GET", "/openapi.json")
    assert status == 200
    schema = json.loads(document)
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "/api/v1/control/{verb}" in schema["paths"]
    assert "/api/v1/services/{name}/signal" in schema["paths"]
