"""The dashboard's log panel offers the daemon's own log (``@daemon`` in /api/v1/logs)."""

from __future__ import annotations

from typing import Any

import pytest

from browser.support import Site
from e2e.support import scaled

pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

pytestmark = pytest.mark.browser


def test_the_daemons_log_can_be_chosen_and_streams(new_page: Any, site: Site) -> None:
    watched = new_page()
    page = watched.page
    page.goto(site.url)
    option = page.locator("#log-source option[value='daemon:@daemon']")
    option.wait_for(state="attached", timeout=scaled(10) * 1000)
    assert option.inner_text() == "heartwatch (daemon)"
    page.select_option("#log-source", "daemon:@daemon")
    # The daemon logs every service it started: those lines are in its own log.
    line = page.locator("#log-view .line", has_text="running").first
    line.wait_for(timeout=scaled(10) * 1000)
    assert watched.problems() == []
