"""The history page in a real Chromium against a real daemon: after a scripted hang and a crash,
the strips show both where and in the colours they must, the recovery's picture lists its steps
in dependency order, the export holds the events the page lists; the charts shade a gap and
the daemon's absence where they were; a tap on a phone; wide and phone screenshots.

One daemon serves the module (``site``: alpha, beta requiring alpha, sleepy; quick timeouts).
The hang and the crash are scripted once, by the first test that needs them (``incidents``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from browser.support import ARTIFACTS, Site, Watched, get_json, open_url, watch
from e2e.support import scaled, wait_until

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

pytestmark = pytest.mark.browser

# The dashboard's badge colours (app.css .pill): the strip must use the same variable per state.
BADGE_VARIABLE = {
    "running": "--running",
    "starting": "--starting",
    "restarting": "--starting",
    "unresponsive": "--warning",
    "backoff": "--warning",
    "failed": "--failed",
    "exited": "--failed",
    "stopped": "--stopped",
    "stopping": "--stopped",
    "unknown": "--unknown",
}

# A segment's colour as painted, and the variable's colour, both as the browser computes them.
SEGMENT_COLOURS = """rects => rects.map(rect => ({
    state: rect.dataset.state, start: Number(rect.dataset.start),
    x: Number(rect.getAttribute('x')), width: Number(rect.getAttribute('width')),
    fill: getComputedStyle(rect).fill}))"""
VARIABLE_COLOUR = """name => {
    const probe = document.createElement('span');
    probe.className = 'visually-hidden';
    document.body.append(probe);
    probe.style.setProperty('color', `var(${name})`);
    const colour = getComputedStyle(probe).color;
    probe.remove();
    return colour;
}"""


def ms(seconds: float) -> float:
    return scaled(seconds) * 1000


@dataclass
class Incidents:
    """What the journal says of the scripted hang (sleepy) and crash (alpha)."""

    hang_at: float  # sleepy: running → unresponsive, from its last heartbeat
    crash_at: float  # alpha: the transition its crash caused, from when it went
    crash_state: str
    crash_id: int  # its journal entry
    recovery: dict[str, Any]  # alpha's recovery, as /api/v1/recoveries gives it


def transition_after(site: Site, name: str, after_id: int, test: Any) -> dict[str, Any] | None:
    events = site.daemon.request("GET", f"/api/v1/events?service={name}&limit=100")["events"]
    return next(
        (
            e
            for e in reversed(events)
            if e["id"] > after_id and e["kind"] == "transition" and test(e)
        ),
        None,
    )


@pytest.fixture(scope="module")
def incidents(site: Site) -> Incidents:
    """Hang sleepy (SIGSTOP) and crash alpha (SIGKILL); wait until both are back and alpha's
    recovery (alpha, then beta, which requires it) is over."""
    newest = site.daemon.request("GET", "/api/v1/events?limit=1")["events"]
    first_id = newest[0]["id"] if newest else 0
    hung = site.daemon.wait_running("sleepy")["pid"]
    os.kill(hung, signal.SIGSTOP)
    site.daemon.wait_service(
        "sleepy", lambda s: s["state"] == "running" and s["pid"] != hung, "sleepy back"
    )
    crashed = site.daemon.wait_running("alpha")["pid"]
    os.kill(crashed, signal.SIGKILL)
    for name in ("alpha", "beta"):
        site.daemon.wait_service(
            name, lambda s: s["state"] == "running" and s["pid"] != crashed, f"{name} back"
        )

    def recovered() -> dict[str, Any] | None:
        answer = site.daemon.request("GET", "/api/v1/recoveries?service=alpha")
        for recovery in answer["recoveries"]:
            if recovery["id"] > first_id and recovery["duration_seconds"] is not None:
                return dict(recovery)
        return None

    recovery = wait_until(recovered, "alpha's recovery to be over")
    hang = transition_after(site, "sleepy", first_id, lambda e: e["state"] == "unresponsive")
    crash = transition_after(site, "alpha", first_id, lambda e: e["previous"] == "running")
    assert hang is not None and crash is not None
    return Incidents(began(hang), began(crash), crash["state"], crash["id"], recovery)


def began(transition: dict[str, Any]) -> float:
    """When a transition's segment begins: a service found down began so at its last sign of
    life (``detail.down_since``: a hang counts from its last heartbeat), else at the entry."""
    down_since = (transition["detail"] or {}).get("down_since")
    return float(down_since) if down_since is not None else float(transition["at"])


def open_history(watched: Watched, site: Site, query: str) -> Any:
    page = watched.page
    page.goto(f"{site.daemon.http_url}/history{query}")
    page.locator("body[data-loaded]").wait_for(timeout=ms(10))
    return page


def colour_of(page: Any, variable: str) -> str:
    colour: str = page.evaluate(VARIABLE_COLOUR, variable)
    return colour


def segments(page: Any, service: str) -> list[dict[str, Any]]:
    rects = page.locator(f'.strip-block[data-service="{service}"] rect.seg')
    found: list[dict[str, Any]] = rects.evaluate_all(SEGMENT_COLOURS)
    return found


def strip_range(page: Any, service: str) -> tuple[float, float]:
    strip = page.locator(f'.strip-block[data-service="{service}"] svg.strip')
    return float(strip.get_attribute("data-since")), float(strip.get_attribute("data-until"))


def check_segment(page: Any, service: str, state: str, at: float) -> dict[str, Any]:
    """The strip has a segment of ``state`` beginning at ``at``, at its place in the window
    (its minute: the fraction of the 1000-unit strip), in the dashboard's colour for it."""
    shown = segments(page, service)
    match = [s for s in shown if s["state"] == state and abs(s["start"] - at) < 0.01]
    ordered = [
        (s["state"], s["start"], s["x"], s["width"])
        for s in sorted(shown, key=lambda s: s["start"])
    ]
    assert len(match) == 1, (state, at, ordered)
    since, until = strip_range(page, service)
    expected_x = (at - since) / (until - since) * 1000
    # Short news is widened to stay visible (kept inside the strip): it covers its moment.
    x, width = match[0]["x"], match[0]["width"]
    assert x - 0.01 <= expected_x <= x + width + 0.01, (match[0], expected_x)
    assert width < 1000 / 60, match[0]  # under a minute of the hour: seconds long
    assert match[0]["fill"] == colour_of(page, BADGE_VARIABLE[state]), match[0]
    return match[0]


def test_strips_show_the_hang_and_the_crash(
    new_page: Any, site: Site, incidents: Incidents
) -> None:
    """Every service's strip over the last hour: sleepy's hang and alpha's crash at their
    moments, in the badges' colours; before the daemon started, unknown (never running green);
    pointing at the hang says its change and reason; a click lists its entry."""
    watched = new_page()
    page = open_history(watched, site, "?window=1h")
    for name in ("alpha", "beta", "sleepy"):
        page.locator(f'.strip-block[data-service="{name}"] svg.strip').wait_for()
    check_segment(page, "sleepy", "unresponsive", incidents.hang_at)
    check_segment(page, "alpha", incidents.crash_state, incidents.crash_at)
    # The hour began before this daemon did: unknown there, painted as unknown.
    first = min(segments(page, "sleepy"), key=lambda s: s["start"])
    assert first["state"] == "unknown" and first["x"] == 0, first
    assert first["fill"] == colour_of(page, "--unknown") != colour_of(page, "--running")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "history-all.png"), full_page=True)
    figures = page.locator('.strip-block[data-service="sleepy"] .figures').inner_text()
    assert "incidents" in figures and "uptime" in figures

    hang = page.locator('.strip-block[data-service="sleepy"] rect.seg[data-state="unresponsive"]')
    hang.hover()
    detail = page.locator('.strip-block[data-service="sleepy"] .strip-detail')
    expect(detail).to_contain_text("running → unresponsive")
    expect(detail).to_contain_text("no heartbeat")
    hang.click()
    entry = hang.get_attribute("data-entry")
    focused = page.locator(f'#events li.ev.focused[data-id="{entry}"]')
    expect(focused).to_be_visible(timeout=ms(5))
    # The time before the daemon started has no entry: a click lists what came up to its end.
    unknown = page.locator('.strip-block[data-service="sleepy"] rect.seg[data-state="unknown"]')
    unknown.click(position={"x": 5, "y": 5})
    expect(page.locator("#events-text")).to_contain_text("back")
    first_listed = page.locator("#events li.ev").first
    expect(first_listed).to_have_class(re.compile(r"\bfocused\b"))
    end = float(unknown.get_attribute("data-end"))
    listed = page.locator("#events li.ev").evaluate_all("items => items.map(i => i.dataset.id)")
    api = get_json(site.daemon, f"/api/v1/events?until={math.ceil(end)}&limit=200")
    assert listed[: len(api["events"])] == [str(e["id"]) for e in api["events"]][: len(listed)]
    assert watched.problems() == []


def test_recovery_picture_lists_the_steps_in_dependency_order(
    new_page: Any, site: Site, incidents: Incidents
) -> None:
    """The dashboard's timeline links the recovery to its picture: alpha's crash recovered
    alpha and beta, whose rows come in start order (alpha first: beta requires it), with a bar
    and a duration for each step the journal knows; the data-rate charts are drawn."""
    recovery = incidents.recovery
    assert recovery["members"][:2] == ["alpha", "beta"], recovery
    watched = new_page()
    dashboard = watched.page
    dashboard.goto(site.url)
    link = dashboard.locator(f'#timeline li.kind-recovery[data-id="{recovery["id"]}"] a.ev-link')
    link.click()
    dashboard.locator("body[data-loaded]").wait_for(timeout=ms(10))
    item = dashboard.locator(f"#recovery-{recovery['id']}")
    expect(item).to_have_class(re.compile(r"\bfocused\b"))
    rows = item.locator(".gantt-row").evaluate_all("rows => rows.map(r => r.dataset.service)")
    assert rows == [step["service"] for step in recovery["steps"]] == recovery["members"]
    for step in recovery["steps"]:
        row = item.locator(f'.gantt-row[data-service="{step["service"]}"]')
        phases = row.locator("rect.bar").evaluate_all("bars => bars.map(b => b.dataset.phase)")
        known = [
            name
            for name, a, b in (
                ("stopping", "stop_sent", "gone"),
                ("down", "gone", "spawned"),
                ("starting", "spawned", "ready"),
            )
            if step[a] is not None and step[b] is not None
        ]
        assert phases == known, (step, phases)
        assert "starting" in known  # each member came back: spawned, then ready
        assert " s" in row.locator(".gantt-text").inner_text()
    expect(item.locator(".recovery-duration")).to_contain_text("back in")
    # The charts: one per data kind (the workers send "row"), the heartbeats beneath.
    charts = dashboard.locator("#charts figure.chart")
    expect(charts).to_have_count(2)
    kinds = charts.evaluate_all("figures => figures.map(f => f.dataset.kind)")
    assert kinds == ["row", "heartbeat"]
    assert dashboard.locator("#charts canvas").count() >= 2
    assert watched.problems() == []


def test_a_tap_says_what_a_segment_was_and_a_second_tap_lists_it(
    browser: Any, site: Site, incidents: Incidents
) -> None:
    """On a touch screen (390 px) the first tap on the hang says its change and reason without
    moving the page; the second shows its entry in the event list."""
    context = browser.new_context(viewport={"width": 390, "height": 800}, has_touch=True)
    try:
        context.set_default_timeout(ms(10))
        watched = watch(context.new_page())
        page = open_history(watched, site, "?service=sleepy&window=1h")
        hang = page.locator('rect.seg[data-state="unresponsive"]')
        hang.tap()
        detail = page.locator(".strip-detail")
        expect(detail).to_contain_text("running → unresponsive")
        assert page.locator("#events li.ev.focused").count() == 0
        hang.tap()
        entry = hang.get_attribute("data-entry")
        expect(page.locator(f'#events li.ev.focused[data-id="{entry}"]')).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert watched.problems() == []
    finally:
        context.close()


# Each column's pixel halfway down a chart's canvas: [r, g, b, a] (the canvas is transparent
# where nothing is painted).
MIDDLE_ROW = """canvas => {
    const ctx = canvas.getContext('2d');
    const row = ctx.getImageData(0, Math.floor(canvas.height / 2), canvas.width, 1).data;
    const pixels = [];
    for (let i = 0; i < row.length; i += 4) pixels.push([row[i], row[i+1], row[i+2], row[i+3]]);
    return pixels;
}"""


def synthetic_rates(url: str) -> dict[str, Any]:
    """A rates answer for the page's own range: an hour of minutes, ``row`` (data_timeout
    30 s) silent in minutes 20-29 while the service beat (a gap), the daemon down in 40-44."""
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    since, until = float(query["since"]), float(query["until"])
    first = math.floor(since / 60) * 60
    times = [first + 60 * i for i in range(61)]
    down = range(40, 45)
    beats = [None if i in down else 60.0 for i in range(61)]
    rows = [None if i in down else 0.0 if 20 <= i < 30 else 12.0 for i in range(61)]
    return {
        "service": "alpha",
        "since": since,
        "until": until,
        "step_seconds": 60,
        "times": times,
        "kinds": {"heartbeat": beats, "row": rows},
        "timeouts": {"row": 30.0},
        "gaps": [{"kind": "row", "start": times[20], "end": times[30]}],
    }


def runs(pixels: list[list[int]], test: Any, bridge: int = 3) -> list[tuple[int, int]]:
    """The runs of columns whose pixel passes ``test``: (first, last); a run broken for at most
    ``bridge`` columns (a grid line drawn over a band) is one."""
    found: list[tuple[int, int]] = []
    start = None
    for i, pixel in enumerate([*pixels, [0, 0, 0, 0]]):
        if test(pixel) and i < len(pixels):
            start = i if start is None else start
        elif start is not None:
            if found and start - found[-1][1] - 1 <= bridge:
                found[-1] = (found[-1][0], i - 1)
            else:
                found.append((start, i - 1))
            start = None
    return found


def test_charts_mark_gaps_the_timeout_and_the_daemon_away(new_page: Any, site: Site) -> None:
    """Drawn from a rates answer with a gap and an absence (the page's request answered by the
    test: a real one would take many minutes): the gap is shaded warm across its ten minutes
    of the kind's chart, the absence grey on the heartbeat chart, the timeout's line named."""
    watched = new_page(width=1000)
    page = watched.page
    page.route(
        "**/api/v1/history/alpha/rates?*",
        lambda route: route.fulfill(json=synthetic_rates(route.request.url)),
    )
    open_history(watched, site, "?service=alpha&window=1h")
    legend = page.locator('figure[data-kind="row"] .u-legend').inner_text()
    assert "1 per data_timeout" in legend
    expect(page.locator('figure[data-kind="row"] figcaption')).to_contain_text("1 gap")

    def warm(p: list[int]) -> bool:
        return p[3] > 0 and p[0] > p[2] + 40

    row_pixels = page.locator('figure[data-kind="row"] canvas').evaluate(MIDDLE_ROW)
    gaps = [run for run in runs(row_pixels, warm) if run[1] - run[0] > 5]
    assert len(gaps) == 1, gaps
    beat_pixels = page.locator('figure[data-kind="heartbeat"] canvas').evaluate(MIDDLE_ROW)

    def grey(p: list[int]) -> bool:
        return p[3] > 0 and abs(p[0] - p[2]) < 30 and abs(p[0] - p[1]) < 30

    aways = [run for run in runs(beat_pixels, grey) if run[1] - run[0] > 5]
    assert len(aways) == 1, aways
    # Ten minutes of gap, five of absence, twenty minutes apart, on the same time axis.
    (gap_start, gap_end), (away_start, away_end) = gaps[0], aways[0]
    minute = (gap_end - gap_start + 1) / 10
    assert abs((away_end - away_start + 1) - 5 * minute) < 0.2 * 5 * minute, (gaps, aways)
    assert abs((away_start - gap_start) - 20 * minute) < 0.1 * 20 * minute, (gaps, aways)
    assert watched.problems() == []


def test_a_token_is_asked_for_once_and_kept(new_page: Any, site: Site) -> None:
    """Refused for want of a token (the test's gate in front of the API), the page asks for
    one, says when it is refused, loads with the right one, and keeps it for the next load."""
    token = "history-token-1234"
    watched = new_page()
    page = watched.page

    def gate(route: Any) -> None:
        if route.request.headers.get("authorization") == f"Bearer {token}":
            route.continue_()
        else:
            route.fulfill(status=401, json={"code": "unauthorised", "message": "a token"})

    page.route("**/api/v1/**", gate)
    page.goto(f"{site.daemon.http_url}/history?service=alpha&window=1h")
    page.locator("#token-dialog").wait_for(state="visible")
    page.fill("#token-input", "wrong-token-000")
    page.click("#token-ok")
    expect(page.locator("#token-text")).to_contain_text("refused", timeout=ms(5))
    page.fill("#token-input", token)
    page.click("#token-ok")
    page.locator("body[data-loaded]").wait_for(timeout=ms(10))
    expect(page.locator('.strip-block[data-service="alpha"] svg.strip')).to_be_visible()
    assert page.locator("#notice").is_hidden()  # the dialog said it: no notice besides
    page.reload()
    page.locator("body[data-loaded]").wait_for(timeout=ms(10))
    assert page.locator("#token-dialog").is_hidden()
    assert [p for p in watched.problems() if "401" not in p] == []


def read_download(page: Any, button: str) -> bytes:
    with page.expect_download(timeout=ms(10)) as info:
        page.click(button)
    return Path(info.value.path()).read_bytes()


def test_export_holds_the_events_listed(new_page: Any, site: Site, incidents: Incidents) -> None:
    """The CSV and JSON exports of alpha's last hour hold the very events the page lists, as
    the API gives them."""
    watched = new_page()
    page = open_history(watched, site, "?service=alpha&window=1h")
    listed = page.locator("#events li.ev").evaluate_all("items => items.map(i => i.dataset.id)")
    assert listed
    since, until = strip_range(page, "alpha")
    api = get_json(site.daemon, f"/api/v1/events?service=alpha&since={since}&until={until}")
    api_ids = [str(e["id"]) for e in api["events"]]
    assert listed == api_ids[: len(listed)]

    exported = json.loads(read_download(page, "#export-json"))
    assert [str(e["id"]) for e in exported["events"]] == api_ids
    rows = list(csv.DictReader(io.StringIO(read_download(page, "#export-csv").decode())))
    assert [row["id"] for row in rows] == api_ids
    assert any(row["id"] == str(incidents.crash_id) and row["kind"] == "transition" for row in rows)

    # Filtered by kind: the list and the export hold only those kinds, the same ones.
    page.check('#kinds input[value="exit"]')
    page.check('#kinds input[value="recovery"]')
    expect(page.locator("#events li.ev:not(.kind-exit):not(.kind-recovery)")).to_have_count(0)
    kinds = "&kind=exit&kind=recovery"
    chosen = get_json(
        site.daemon, f"/api/v1/events?service=alpha&since={since}&until={until}{kinds}"
    )
    chosen_ids = [str(e["id"]) for e in chosen["events"]]
    assert chosen_ids and {e["kind"] for e in chosen["events"]} == {"exit", "recovery"}
    expect(page.locator("#events li.ev")).to_have_count(len(chosen_ids))
    assert "kind=exit" in page.url and "kind=recovery" in page.url  # a view one can link
    rows = list(csv.DictReader(io.StringIO(read_download(page, "#export-csv").decode())))
    assert [row["id"] for row in rows] == chosen_ids
    assert watched.problems() == []


def test_screenshots_wide_and_phone(new_page: Any, site: Site, incidents: Incidents) -> None:
    """The page of alpha's last hour, wide and on a 390 px phone: nothing scrolls sideways; the
    screenshots are kept."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width, name in ((1400, "history.png"), (390, "history-phone.png")):
        watched = new_page(width=width, height=900)
        page = open_history(
            watched, site, f"?service=alpha&window=1h&recovery={incidents.recovery['id']}"
        )
        page.locator("#charts canvas").first.wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        path = ARTIFACTS / name
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000
        assert watched.problems() == []


def test_history_page_carries_the_dashboard_headers(site: Site) -> None:
    """/history carries the dashboard's CSP; uPlot is served from the package with its licence."""
    with open_url(f"{site.daemon.http_url}/history") as response:
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe" not in csp
        page = response.read().decode()
    assert "<style" not in page and " style=" not in page and "<script>" not in page
    for asset in (
        "vendor/uplot/uPlot.iife.min.js",
        "vendor/uplot/uPlot.min.css",
        "vendor/uplot/LICENSE",
    ):
        with open_url(f"{site.daemon.http_url}/static/{asset}") as response:
            assert response.status == 200
            assert response.headers["X-Content-Type-Options"] == "nosniff"
