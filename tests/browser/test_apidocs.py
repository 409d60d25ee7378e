"""``/docs`` in a real Chromium: Swagger UI from the package, under the daemon's CSP, offline.

FastAPI's page loaded Swagger UI from a CDN and started it with an inline script: blank here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from browser.support import Site, Watched, running_site
from e2e.support import scaled

pytestmark = pytest.mark.browser

TOKEN = "docs-token-0123456789"


@pytest.fixture(scope="module")
def guarded_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("docs"), server={"token": TOKEN}) as site:
        yield site


def test_docs_page_renders_every_operation_offline(
    guarded_site: Site, new_page: Callable[..., Watched]
) -> None:
    """Opened as ``/docs?token=…``: the operations are listed, every request stayed on the
    daemon's origin (nothing from a CDN), nothing broke the CSP, the token left the address."""
    watched = new_page()
    page = watched.page
    origin = guarded_site.daemon.http_url
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{origin}/docs?token={TOKEN}")
    control = page.locator(".opblock-summary-path", has_text="/api/v1/control/{verb}")
    control.first.wait_for(timeout=scaled(15.0) * 1000)
    assert page.locator(".opblock").count() >= 10
    assert "token" not in urlsplit(page.url).query
    outside = [url for url in requested if not url.startswith(origin) and "data:" not in url]
    assert outside == [], outside
    assert f"{origin}/openapi.json" in requested
    problems: list[Any] = watched.problems()
    assert problems == [], problems
