"""The dashboard in a real Chromium against a real daemon: services, control, live logs, a hang
seen live, the token prompt, and a screenshot.

One daemon serves the module (``site``); every test opens the page in a fresh browser context
and leaves the services running. Waits are bounded and scaled by HEARTWATCH_TEST_TIME_SCALE.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from browser.support import ARTIFACTS, SERVICES, Site, Watched, open_url, running_site
from e2e.support import scaled, wait_until

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

pytestmark = pytest.mark.browser

XSS_LINE = "<img src=x onerror=alert(1)>"


# Waits for events, not for time. A round trip the page makes (its own fetch: allowed by the
# CSP's connect-src 'self'), and two animation frames after the fonts are in: the page has been
# laid out and painted with what it holds now.
MARKER_FETCH = "() => fetch('/', {cache: 'no-store'}).then(answer => answer.status)"
LAID_OUT = """() => document.fonts.ready.then(() => new Promise(
    resolve => requestAnimationFrame(() => requestAnimationFrame(() => resolve(true)))))"""


def ms(seconds: float) -> float:
    return scaled(seconds) * 1000


# The page's CSP forbids eval, which Playwright's wait_for_function polls with: waits use
# locators (Playwright's own isolated world) instead.


def open_dashboard(watched: Watched, site: Site) -> Any:
    page = watched.page
    page.goto(site.url)
    wait_rendered(page)
    return page


def wait_rendered(page: Any, count: int = 3) -> None:
    page.locator("#services tbody tr[data-state]").nth(count - 1).wait_for(timeout=ms(10))


def row(page: Any, name: str) -> Any:
    return page.locator(f'#services tr[data-service="{name}"]')


def append(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def show_file_log(page: Any, site: Site) -> None:
    """Choose the ``[logs]`` file in the log panel and wait until it follows it."""
    page.select_option("#log-source", f"file:{site.log_file}")
    wait_line(page, "first line", timeout=10.0)
    expect(page.locator("#log-status")).to_contain_text("following", timeout=ms(5))


def wait_line(page: Any, text: str, timeout: float) -> None:
    page.locator("#log-view .line", has_text=text).first.wait_for(timeout=ms(timeout))


def pid_cell(page: Any, name: str) -> Any:
    """The pid itself (the cell also says CPU and memory when the daemon measures them)."""
    return row(page, name).locator("td[data-label=PID] > span").first


def test_page_lists_the_services(new_page: Any, site: Site) -> None:
    """Every service shows with its state and the pid the API reports."""
    watched = new_page()
    page = open_dashboard(watched, site)
    names = page.locator("#services tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.service)"
    )
    assert names == list(SERVICES)
    for name in names:
        status = site.daemon.service(name)
        expect(row(page, name)).to_have_attribute("data-state", "running", timeout=ms(5))
        expect(pid_cell(page, name)).to_have_text(str(status["pid"]), timeout=ms(5))
    assert "row" in row(page, "alpha").locator(".kinds").inner_text()
    assert watched.problems() == []


def test_restart_button_restarts_the_process(new_page: Any, site: Site) -> None:
    """Restart, confirmed in the page's dialog, gives the service a new pid (API and page)."""
    watched = new_page()
    page = open_dashboard(watched, site)
    old = site.daemon.wait_running("beta")
    old_pid = old["pid"]
    row(page, "beta").locator("button.act-restart").click()
    dialog = page.locator("#confirm")
    dialog.wait_for(state="visible")
    assert "beta" in dialog.inner_text()
    dialog.locator("#confirm-ok").click()
    status = site.daemon.wait_service(
        "beta", lambda s: s["state"] == "running" and s["pid"] not in (None, old_pid), "new pid"
    )
    expect(pid_cell(page, "beta")).to_have_text(str(status["pid"]), timeout=ms(5))
    # A restart asked for is no recovery: counted apart, and shown apart.
    assert status["restarts"] == old["restarts"]
    assert status["restarts_requested"] == old["restarts_requested"] + 1
    asked = f"+{status['restarts_requested']} asked"
    expect(row(page, "beta").locator("td[data-label=Restarts]")).to_contain_text(asked)
    # The old run's end was the stop it was sent: journaled so, and not marked as a failure.
    exits = [e for e in beta_events(site) if e["kind"] == "exit"]
    assert exits[0]["detail"]["pid"] == old_pid and exits[0]["detail"].get("stopped") is True
    stopped_exit = page.locator(f'#timeline li.kind-exit[data-id="{exits[0]["id"]}"]')
    expect(stopped_exit).to_have_attribute("data-stopped", "true")
    assert watched.problems() == []


def beta_events(site: Site) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = site.daemon.request("GET", "/api/v1/events?service=beta")[
        "events"
    ]
    return events


def test_appended_line_shows_within_a_second(new_page: Any, site: Site) -> None:
    """A line appended to a followed file is in the panel within 1 s."""
    watched = new_page()
    page = open_dashboard(watched, site)
    show_file_log(page, site)
    line = f"appended at {time.time()}"
    started = time.monotonic()
    append(site.log_file, line + "\n")
    wait_line(page, line, timeout=1.0)
    print(f"shown after {(time.monotonic() - started) * 1000:.0f} ms")
    assert watched.problems() == []


def test_log_markup_stays_text(new_page: Any, site: Site) -> None:
    """A line holding markup shows as text; no element is made and no script runs."""
    watched = new_page()
    page = open_dashboard(watched, site)
    show_file_log(page, site)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(urlsplit(request.url).path))
    append(site.log_file, f"{XSS_LINE}\n\x1b[31mred\x1b[0m \x1b[38;5;208morange\x1b[0m done\n")
    wait_line(page, "orange done", timeout=5.0)
    view = page.locator("#log-view")
    assert XSS_LINE in view.inner_text()
    assert view.locator("img").count() == 0
    assert page.locator("img").count() == 1  # the logo in the header, and nothing else
    assert view.locator("span.ansi-fg-1", has_text="red").count() == 1
    orange = view.locator("span", has_text="orange").evaluate("e => getComputedStyle(e).color")
    assert orange == "rgb(255, 135, 0)"
    # An <img src=x> made from the line, even detached, would have asked for /x as it was
    # parsed: a request the page makes after the line is shown, answered, comes after it.
    assert page.evaluate(MARKER_FETCH) == 200
    assert "/x" not in requested, requested
    assert watched.problems() == []


def test_paused_lines_are_counted_and_shown_on_resume(new_page: Any, site: Site) -> None:
    """While paused, new lines are held and counted; following again shows them all."""
    watched = new_page()
    page = open_dashboard(watched, site)
    show_file_log(page, site)
    page.click("#log-follow")
    append(site.log_file, "held one\nheld two\nheld three\n")
    badge = page.locator("#log-new")
    badge.wait_for(state="visible", timeout=ms(5))
    assert badge.inner_text().startswith("3 new lines")
    assert "held one" not in page.locator("#log-view").inner_text()
    badge.click()
    wait_line(page, "held three", timeout=2.0)
    text = page.locator("#log-view").inner_text()
    assert text.index("held one") < text.index("held two") < text.index("held three")
    assert badge.is_hidden()
    assert watched.problems() == []


def test_hang_shows_unresponsive_then_running(new_page: Any, site: Site) -> None:
    """A stopped (SIGSTOP) worker turns unresponsive, then running again, with no reload."""
    watched = new_page()
    page = open_dashboard(watched, site)
    # The daemon restarts a hung worker in the same instant it finds it unresponsive, so the row
    # may hold that state for less than a frame: record every state the row takes.
    page.evaluate(
        """() => {
            window.seenStates = [];
            const row = document.querySelector('tr[data-service="sleepy"]');
            new MutationObserver(() => window.seenStates.push(row.dataset.state))
                .observe(row, {attributes: true, attributeFilter: ["data-state"]});
        }"""
    )
    old_pid = site.daemon.wait_running("sleepy")["pid"]
    os.kill(old_pid, signal.SIGSTOP)

    def seen_back_running() -> list[str] | None:
        states: list[str] = page.evaluate("window.seenStates")
        if "unresponsive" in states and states[-1] == "running":
            return states
        return None

    states = wait_until(seen_back_running, "the row to go unresponsive, then running")
    assert states[0] == "unresponsive"
    status = site.daemon.wait_running("sleepy")
    assert status["pid"] != old_pid
    expect(pid_cell(page, "sleepy")).to_have_text(str(status["pid"]), timeout=ms(5))
    expect(page.locator("#timeline")).to_contain_text("running → unresponsive")
    assert page.evaluate("window.seenStates") is not None  # the same document: no reload
    assert watched.problems() == []


def test_a_crash_is_the_last_trouble_and_the_log_opens_on_it(new_page: Any, site: Site) -> None:
    """A crashed worker is recovered (a restart, not one asked for); a page opened afterwards
    shows the crash as its last trouble, opens on its log, and lists no same-state entries."""
    before = site.daemon.wait_running("beta")
    os.kill(before["pid"], signal.SIGKILL)
    after = site.daemon.wait_service(
        "beta", lambda s: s["state"] == "running" and s["pid"] != before["pid"], "beta back"
    )
    assert after["restarts"] == before["restarts"] + 1
    assert after["restarts_requested"] == before["restarts_requested"]
    crash = next(e for e in beta_events(site) if e["kind"] == "exit")
    assert crash["detail"]["pid"] == before["pid"] and "stopped" not in crash["detail"]
    watched = new_page()
    page = open_dashboard(watched, site)
    expect(row(page, "beta").locator(".last-trouble")).to_contain_text("killed by SIGKILL")
    expect(page.locator("#log-source")).to_have_value("service:beta")
    expect(row(page, "beta")).to_have_class(re.compile(r"\bselected\b"))
    whats = page.locator("#timeline .ev-what").all_inner_texts()
    assert whats and not [w for w in whats if re.fullmatch(r"(\w+) → \1", w)], whats
    assert watched.problems() == []


# Where each figure of a phone's card is, and how the selected card is painted.
PHONE_CARD = """() => {
    const card = document.querySelector('#services tr.svc.selected');
    const tops = [...card.querySelectorAll('td.num')]
        .map(td => Math.round(td.getBoundingClientRect().top));
    const cell = getComputedStyle(card.querySelector('td.num')).backgroundColor;
    return {tops, card: getComputedStyle(card).backgroundColor, cell,
            height: card.getBoundingClientRect().height};
}"""
TRANSPARENT = "rgba(0, 0, 0, 0)"


def test_screenshot_written(new_page: Any, site: Site) -> None:
    """Screenshots of the page, wide and phone-sized, are kept; a phone never scrolls sideways,
    shows each card's four figures on one line, and marks the selected card whole."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width, name in ((1400, "dashboard.png"), (360, "dashboard-phone.png")):
        watched = new_page(width=width, height=900)
        page = open_dashboard(watched, site)
        page.locator("#services tr.svc.selected").wait_for()
        wait_line(page, "tick", timeout=10.0)  # the selected service's log, opened by itself
        page.evaluate(LAID_OUT)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        if width < 760:
            card = page.evaluate(PHONE_CARD)
            assert len(card["tops"]) == 4 and len(set(card["tops"])) == 1, card
            assert card["card"] != TRANSPARENT and card["cell"] == TRANSPARENT, card
        path = ARTIFACTS / name
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000
        assert watched.problems() == []


def test_token_asked_once_and_read_token_hides_controls(new_page: Any, tmp_path: Path) -> None:
    """With a token the page asks once and remembers; a read-only token shows no controls."""
    control_token, read_token = "control-token-1234", "read-only-token-5678"
    server = {"token": control_token, "read_token": read_token}
    with running_site(tmp_path, server) as site:
        watched = new_page()
        page = watched.page
        page.goto(site.url)
        form = page.locator("#token-dialog")
        form.wait_for(state="visible")
        page.fill("#token-input", "wrong-token-000")
        page.click("#token-ok")
        expect(page.locator("#token-text")).to_contain_text("refused", timeout=ms(5))
        page.fill("#token-input", control_token)
        page.click("#token-ok")
        wait_rendered(page)
        expect(row(page, "alpha").locator("button.act-restart")).to_be_visible()
        page.reload()
        wait_rendered(page)
        assert form.is_hidden()  # asked once: the stored token is used
        assert not [e for e in watched.problems() if "401" not in e]

        reader = new_page().page
        reader.goto(site.url)
        reader.locator("#token-dialog").wait_for(state="visible")
        reader.fill("#token-input", read_token)
        reader.click("#token-ok")
        wait_rendered(reader)
        reader.locator("#forget-token").wait_for()  # the token's scope is known
        assert reader.evaluate("document.body.classList.contains('read-only')")
        assert row(reader, "alpha").locator("button.act-restart").is_hidden()
        # Were the buttons shown anyway, the daemon's refusal would be shown as it says it.
        reader.evaluate("document.body.classList.remove('read-only')")
        row(reader, "alpha").locator("button.act-restart").click()
        reader.click("#confirm-ok")
        expect(reader.locator("#notice")).to_contain_text("forbidden", timeout=ms(5))


def test_page_reconnects_after_a_daemon_restart(new_page: Any, tmp_path: Path) -> None:
    """When the daemon restarts, the page reconnects by itself: new pids, the log goes on, and
    lines it already showed are not shown twice."""
    with socket.socket() as probe:  # a port for both daemons: the page keeps its address
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with running_site(tmp_path, {"http": f"127.0.0.1:{port}"}) as site:
        watched = new_page()
        page = open_dashboard(watched, site)
        show_file_log(page, site)
        append(site.log_file, "before the restart\n")
        wait_line(page, "before the restart", timeout=5.0)
        old_pid = site.daemon.service("alpha")["pid"]

        site.daemon.terminate()
        page.locator('#link[data-link="down"]').wait_for(timeout=ms(10))
        site.daemon = site.pipeline.start_daemon()
        new_pid = site.daemon.wait_running("alpha")["pid"]
        assert new_pid != old_pid
        page.locator('#link[data-link="live"]').wait_for(timeout=ms(15))
        expect(pid_cell(page, "alpha")).to_have_text(str(new_pid), timeout=ms(5))

        expect(page.locator("#log-status")).to_contain_text("following", timeout=ms(15))
        append(site.log_file, "after the restart\n")
        wait_line(page, "after the restart", timeout=5.0)
        lines = page.locator("#log-view .line").all_inner_texts()
        assert lines.count("first line") == 1
        assert lines.count("before the restart") == 1
        # Only the browser's own reports of the refused connections while the daemon was down.
        assert [p for p in watched.problems() if "ERR_CONNECTION_REFUSED" not in p] == []


def test_page_and_assets_carry_their_headers(site: Site) -> None:
    """The page carries its CSP; assets are revalidated at each load (no stale scripts after an
    upgrade) and never sniffed."""
    with open_url(site.url) as response:
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe" not in csp
    for asset in ("app.js", "app.css", "logpanel.js"):
        url = f"{site.daemon.http_url}/static/{asset}"
        with open_url(url) as response:
            assert response.headers["Cache-Control"] == "no-cache"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["ETag"]
