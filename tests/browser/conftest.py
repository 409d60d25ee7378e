"""Fixtures for the browser tests: one Chromium per module, fresh pages, a module's daemon.

Chromium is the system's (``/usr/bin/chromium`` or ``chromium`` on PATH), driven through
Playwright's sync API; Playwright's own browser download is not used. Without Chromium or
Playwright the tests are skipped, saying why.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from browser.support import CHROMIUM_ARGS, Site, Watched, find_chromium, running_site, watch
from e2e.support import scaled


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per module (each test gets a fresh context).

    Not per session: Playwright's sync API keeps an event loop running in this thread while it
    is open, and every later test that calls ``asyncio.run`` would fail.
    """
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium: neither /usr/bin/chromium nor `chromium` on PATH")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Watched]]:
    """``new_page(width=1280)``: a page in a fresh context (no stored token), watched."""
    contexts = []

    def make(width: int = 1280, height: int = 900) -> Watched:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(scaled(10.0) * 1000)
        contexts.append(context)
        return watch(context.new_page())

    yield make
    for context in contexts:
        with contextlib.suppress(Exception):
            context.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One daemon for a module's tests; each test leaves every service running again."""
    with running_site(tmp_path_factory.mktemp("site")) as site:
        yield site
