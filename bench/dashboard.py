"""Dashboard: first load with 50 services, a state change reaching the page, memory over time.

Goals (issue 5): the page's first load with 50 services, until every service row is rendered,
under 1 s; a state change carried by the event websocket, from the API call that causes it to
the DOM showing the new state, p50 and p99 <= 50 ms over >= 20 trials; the daemon's RSS flat
with the page open while a followed log is busy (200 lines/s), over an hour (--quick: 2 min).

Method. One daemon supervises 50 trivial services (``sleep 3600``, ready at start) and 5 small
workers that beat every 0.1 s and send a data event every second (so pulses and per-minute
history flow as on a real pipeline). Chromium (the system's, headless, through Playwright) loads
the page.

- *First load*: a fresh browser context per trial (empty cache), ``page.goto`` and then the
  page's own mark ``hw:services-rendered``, set right after the first snapshot's rows are in the
  DOM; its time is measured from the navigation's start by the browser. Baseline, interleaved
  trial by trial: the same page as a static file (the dashboard's DOM once rendered, scripts
  removed, same stylesheet) from a trivial server, timed to its ``DOMContentLoaded`` (every row
  parsed). One warm-up load of each is not counted.
- *State change*: in the open page, ``fetch`` POSTs ``stop`` (then ``start``) for one ``sleep``
  service, and a ``MutationObserver`` on that service's row notes when its ``data-state``
  changes: ``performance.now()`` at the ``fetch`` call -> the row's first new state
  (``stopping`` / ``starting``), and -> the final one (``stopped`` / ``running``). The page's own
  controls are not used: they would add the confirmation dialog. Baselines, interleaved: a bare
  websocket echo round trip from a page of the trivial server (its echo runs on the same
  ``websockets`` library in a thread of this process), and a ``GET /api/v1/auth`` from the
  dashboard page (one HTTP round trip to the daemon).
- *Memory*: a writer appends 200 lines/s (some with colours) to a file under ``[logs] roots``;
  for 15 s nobody views it (the daemon's CPU then is the baseline for what viewing costs), then
  a fresh page follows it. Every 10 s: the daemon's RSS, the page's JS heap (CDP
  ``Runtime.getHeapUsage``), its DOM nodes (CDP ``Performance.getMetrics``) and the lines kept in
  the log panel; over the window, the share of time the page's main thread was busy (CDP
  ``TaskDuration``). Reported: start, end, max, and the least-squares slope, over the whole window
  and over its second half (buffers and caches fill first: the daemon's per-file history,
  ``viewer_buffer_lines`` = 10,000 lines, alone takes 50 s at this rate); the goal is judged on
  the second half. Baseline: the daemon's RSS before the page was opened.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    CHROMIUM_ARGS,
    PYTHON,
    ROOT,
    SUMMARY_HEADERS,
    Daemon,
    TomlValue,
    Workdir,
    banner,
    cpu_seconds,
    median,
    parse_args,
    percentile,
    print_table,
    rss_mb,
    summary_row,
    toml_value,
    verdict,
    wait_until,
)

SERVICES = 50
WORKERS = 5
GOAL_LOAD_MS = 1000.0
GOAL_CHANGE_MS = 50.0
LINES_PER_SECOND = 200
SAMPLE_EVERY = 10.0
CPU_BASELINE_SECONDS = 15.0
STATIC = ROOT / "src" / "heartwatch" / "web" / "static"

WORKER = r"""
import time
from heartwatch import Heartbeat

heartbeat = Heartbeat()
tick = 0
while True:
    heartbeat.beat()
    if tick % 10 == 0:
        heartbeat.event("row", {"n": tick})
    tick += 1
    time.sleep(0.1)
"""

WRITER = r"""
import os, sys, time

path, rate = sys.argv[1], float(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
start, n = time.monotonic(), 0
while True:
    due = start + n / rate
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
    level = "\x1b[32mINFO\x1b[0m" if n % 10 else "\x1b[33;1mWARN\x1b[0m"
    line = f"{time.strftime('%H:%M:%S')} {level} pipeline.stage:142 item {n} processed, queue ok\n"
    os.write(fd, line.encode())
    n += 1
"""

# Run in the page: POST `verb` for `name` and time the row's data-state changes.
STATE_CHANGE_JS = """
async ([name, verb, final]) => {
  const row = document.querySelector(`tr[data-service="${name}"]`);
  const before = row.dataset.state;
  return await new Promise((resolve, reject) => {
    let first = null;
    const timer = setTimeout(() => reject(new Error(`no ${final} after 10 s`)), 10000);
    const observer = new MutationObserver(() => {
      const now = performance.now();
      if (first === null && row.dataset.state !== before) first = now - started;
      if (row.dataset.state === final) {
        observer.disconnect();
        clearTimeout(timer);
        resolve([first, now - started]);
      }
    });
    observer.observe(row, {attributes: true, attributeFilter: ["data-state"]});
    const started = performance.now();
    fetch(`/api/v1/services/${name}/${verb}`, {method: "POST"}).then((response) => {
      if (!response.ok) reject(new Error(`${verb}: HTTP ${response.status}`));
    });
  });
}
"""

ECHO_JS = """
async (count) => {
  const ws = new WebSocket(`ws://${location.host}/echo`);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const times = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await new Promise((resolve) => { ws.onmessage = resolve; ws.send(`ping ${i}`); });
    times.push(performance.now() - started);
  }
  ws.close();
  return times;
}
"""

FETCH_JS = """
async () => {
  const started = performance.now();
  const response = await fetch("/api/v1/auth", {cache: "no-store"});
  await response.json();
  return performance.now() - started;
}
"""

RENDERED_MARK_JS = """
() => {
  const mark = performance.getEntriesByName("hw:services-rendered")[0];
  return mark ? [mark.startTime, document.querySelectorAll("#services tbody tr").length] : null;
}
"""

DCL_JS = """
() => {
  const nav = performance.getEntriesByType("navigation")[0];
  return nav && nav.domContentLoadedEventEnd > 0
    ? [nav.domContentLoadedEventEnd, document.querySelectorAll("#services tbody tr").length]
    : null;
}
"""


# -- the baseline server ---------------------------------------------------------------------


class TrivialServer:
    """Fixed files over plain HTTP, and a websocket echo on ``/echo``, in a thread of its own.

    ``websockets``' ``process_request`` answers the plain requests: no framework, no routing."""

    def __init__(self, files: dict[str, tuple[str, str]]) -> None:
        self.files = files  # path -> (text, content type)
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> TrivialServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the trivial server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _main(self) -> None:
        from websockets.asyncio.server import ServerConnection, serve
        from websockets.http11 import Request, Response

        async def echo(websocket: ServerConnection) -> None:
            async for message in websocket:
                await websocket.send(message)

        def process_request(connection: ServerConnection, request: Request) -> Response | None:
            if request.path == "/echo":
                return None
            text, content_type = self.files.get(request.path, ("not found\n", ""))
            response = connection.respond(200 if content_type else 404, text)
            if content_type:
                del response.headers["Content-Type"]
                response.headers["Content-Type"] = content_type
            return response

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()


# -- measurements ----------------------------------------------------------------------------


def poll_page(page: Any, script: str, timeout: float = 20.0) -> Any:
    """Evaluate ``script`` until it returns something (CDP evaluation: the page's CSP forbids
    the ``eval`` that Playwright's ``wait_for_function`` polls with)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(script)
        if value:
            return value
        time.sleep(0.005)
    raise RuntimeError(f"timed out waiting for {script.strip()[:60]}")


def load_once(browser: Any, url: str, script: str) -> float:
    """One cold load in a fresh context; milliseconds from navigation start to ``script``'s
    time, which must come with every service row present."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(url, wait_until="commit")
        at, rows = poll_page(page, script)
        if rows < SERVICES + WORKERS:
            raise RuntimeError(f"only {rows} rows rendered at {url}")
        return float(at)
    finally:
        context.close()


def static_copy(browser: Any, url: str) -> str:
    """The dashboard's DOM once rendered, without its scripts: the baseline's page."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(url)
        poll_page(page, RENDERED_MARK_JS)
        html = page.evaluate("document.documentElement.outerHTML")
    finally:
        context.close()
    html = re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S)
    return "<!doctype html>\n" + html


def measure_loads(
    browser: Any, dashboard_url: str, baseline_url: str, trials: int
) -> tuple[list[float], list[float]]:
    load_once(browser, dashboard_url, RENDERED_MARK_JS)  # warm-up: not counted
    load_once(browser, baseline_url, DCL_JS)
    dashboard, baseline = [], []
    for _ in range(trials):
        dashboard.append(load_once(browser, dashboard_url, RENDERED_MARK_JS))
        baseline.append(load_once(browser, baseline_url, DCL_JS))
    return dashboard, baseline


def measure_state_changes(
    browser: Any, dashboard_url: str, echo_url: str, target: str, trials: int
) -> dict[str, list[float]]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    results: dict[str, list[float]] = {
        "first": [],
        "final": [],
        "stop first": [],
        "start first": [],
        "echo": [],
        "fetch": [],
    }
    try:
        page = context.new_page()
        page.goto(dashboard_url)
        poll_page(page, RENDERED_MARK_JS)
        poll_page(page, "() => document.querySelector('#link').dataset.link === 'live'")
        echo_page = context.new_page()
        echo_page.goto(echo_url)
        echo_page.evaluate(ECHO_JS, 5)  # warm-up
        for i in range(trials):
            verb, final = ("stop", "stopped") if i % 2 == 0 else ("start", "running")
            first, last = page.evaluate(STATE_CHANGE_JS, [target, verb, final])
            results["first"].append(first)
            results["final"].append(last)
            results[f"{verb} first"].append(first)
            results["echo"].extend(echo_page.evaluate(ECHO_JS, 1))
            results["fetch"].append(page.evaluate(FETCH_JS))
            time.sleep(0.1)
        if len(results["first"]) % 2:  # leave the service running
            page.evaluate(STATE_CHANGE_JS, [target, "start", "running"])
    finally:
        context.close()
    return results


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 2:
        return float("nan")
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return float("nan")
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600.0


def measure_memory(
    browser: Any,
    daemon: Daemon,
    dashboard_url: str,
    busy_file: Path,
    window: float,
    report: Callable[[str], None],
) -> tuple[float, list[dict[str, float]], dict[str, Any]]:
    """Samples every SAMPLE_EVERY s while the page follows ``busy_file`` and a writer fills it."""
    before = rss_mb(daemon.pid)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    writer = subprocess.Popen(
        [PYTHON, "-c", WRITER, str(busy_file), str(LINES_PER_SECOND)], stdin=subprocess.DEVNULL
    )
    samples: list[dict[str, float]] = []
    extra: dict[str, Any] = {}
    try:
        # The daemon's CPU with the file growing but nobody viewing it (no follower runs).
        cpu_start, wall_start = cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(CPU_BASELINE_SECONDS)
        extra["cpu_unviewed"] = (
            (cpu_seconds(daemon.pid) - cpu_start) / (time.monotonic() - wall_start) * 100
        )
        page = context.new_page()
        page.goto(dashboard_url)
        poll_page(page, RENDERED_MARK_JS)
        page.select_option("#log-source", f"file:{busy_file}")
        poll_page(page, "() => document.querySelectorAll('#log-view .line').length > 0")
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        started = time.monotonic()
        cpu_start = cpu_seconds(daemon.pid)
        busy_start = page_metrics(cdp)["TaskDuration"]
        next_sample, printed_minute, late = started, -1, 0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                sample = take_sample(cdp, page, daemon, now - started)
                samples.append(sample)
                if int(sample["t"] // 60) != printed_minute:
                    printed_minute = int(sample["t"] // 60)
                    report(
                        f"   t={sample['t']:6.0f} s  daemon RSS {sample['rss']:6.1f} MB  "
                        f"page heap {sample['heap']:5.1f} MB  DOM nodes {sample['nodes']:6.0f}  "
                        f"log lines kept {sample['lines']:4.0f}"
                    )
                if now - started >= window:
                    break
                next_sample += SAMPLE_EVERY
                if time.monotonic() > next_sample:  # the page did not answer in time
                    late += 1
                    while next_sample < time.monotonic():
                        next_sample += SAMPLE_EVERY
            time.sleep(max(0.0, min(next_sample - time.monotonic(), 1.0)))
        extra["page_busy"] = (
            (page_metrics(cdp)["TaskDuration"] - busy_start) / (now - started) * 100
        )
        extra["late_samples"] = late
        extra["cpu_percent"] = (cpu_seconds(daemon.pid) - cpu_start) / (now - started) * 100
        extra["status"] = page.inner_text("#log-status")
    finally:
        writer.terminate()
        writer.wait(10)
        context.close()
    return before, samples, extra


def page_metrics(cdp: Any) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def take_sample(cdp: Any, page: Any, daemon: Daemon, t: float) -> dict[str, float]:
    return {
        "t": t,
        "rss": rss_mb(daemon.pid),
        "heap": cdp.send("Runtime.getHeapUsage")["usedSize"] / 2**20,
        "nodes": page_metrics(cdp).get("Nodes", float("nan")),
        "lines": page.evaluate("document.querySelectorAll('#log-view .line').length"),
    }


# -- report ----------------------------------------------------------------------------------


def second_half(samples: list[dict[str, float]]) -> list[dict[str, float]]:
    """The samples of the window's second half: what is left once buffers and caches filled."""
    return [s for s in samples if s["t"] >= samples[-1]["t"] / 2] if samples else []


def memory_rows(samples: list[dict[str, float]], key: str, unit: str) -> list[list[object]]:
    rows: list[list[object]] = []
    for label, part in (("whole window", samples), ("second half", second_half(samples))):
        if len(part) < 2:
            continue
        points = [(s["t"], s[key]) for s in part]
        rows.append(
            [
                f"{key} ({unit}), {label}",
                len(part),
                part[0][key],
                part[-1][key],
                max(s[key] for s in part),
                part[-1][key] - part[0][key],
                slope_per_hour(points),
            ]
        )
    return rows


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--memory-seconds",
        type=float,
        default=None,
        help="the memory window (default 3600, --quick 120)",
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _options)
    sys.stdout.reconfigure(line_buffering=True)  # a long run shows its progress
    window = args.memory_seconds or (120.0 if args.quick else 3600.0)
    load_trials = 8 if args.quick else 20
    change_trials = 20 if args.quick else 60
    banner("dashboard: first load, state change to the page, memory with a busy log", args.quick)
    print(
        f"   {SERVICES} `sleep` services + {WORKERS} beating workers; {load_trials} loads each; "
        f"{change_trials} state changes; memory window {window:g} s at {LINES_PER_SECOND} lines/s"
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright is not installed: nothing measured")
        return
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        print("no Chromium (/usr/bin/chromium or `chromium` on PATH): nothing measured")
        return

    services: list[dict[str, TomlValue]] = [
        {"name": f"svc-{i:02d}", "command": ["sleep", "3600"], "stop_timeout": "2s"}
        for i in range(SERVICES)
    ]
    services += [
        {
            "name": f"worker-{i}",
            "command": [PYTHON, "worker.py"],
            "heartbeat_timeout": "5s",
            "stop_timeout": "2s",
        }
        for i in range(WORKERS)
    ]
    with Workdir("dashboard", args.keep) as work:
        folder = work.path / "daemon"
        roots = work.path / "logs-root"
        roots.mkdir()
        busy_file = roots / "busy.log"
        busy_file.write_text("")
        daemon = Daemon(folder, services)
        (folder / "worker.py").write_text(WORKER)
        with daemon.config_path.open("a") as config:  # [logs] after the services: valid TOML
            config.write(f"\n[logs]\nroots = {toml_value([str(roots)])}\n")
        with daemon, sync_playwright() as playwright:
            ok = wait_until(
                lambda: all(s["state"] == "running" for s in daemon.services()), timeout=60
            )
            if not ok:
                print("not every service reached running within 60 s: nothing measured")
                return
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            dashboard_url = f"http://{daemon.http}/"
            files = {
                "/echo.html": ("<!doctype html><title>echo</title>", "text/html; charset=utf-8"),
                "/static/app.css": ((STATIC / "app.css").read_text(), "text/css"),
                "/static/favicon.svg": ((STATIC / "favicon.svg").read_text(), "image/svg+xml"),
            }
            files["/"] = (static_copy(browser, dashboard_url), "text/html; charset=utf-8")
            with TrivialServer(files) as trivial:
                print(
                    f"   page: {len(files['/'][0]):,} bytes of HTML once rendered; "
                    f"scripts {sum(p.stat().st_size for p in STATIC.glob('*.js')):,} bytes"
                )
                loads, static_loads = measure_loads(
                    browser, dashboard_url, trivial.url + "/", load_trials
                )
                changes = measure_state_changes(
                    browser, dashboard_url, trivial.url + "/echo.html", "svc-00", change_trials
                )
            print()
            print("first load: navigation start -> every service row in the DOM")
            print_table(
                SUMMARY_HEADERS,
                [
                    summary_row(f"dashboard, {SERVICES + WORKERS} services", loads),
                    summary_row("baseline: the same DOM as a static file", static_loads),
                ],
            )
            print()
            print("state change: fetch(POST) in the page -> the row's data-state")
            print_table(
                SUMMARY_HEADERS,
                [
                    summary_row("first new state (stopping / starting)", changes["first"]),
                    summary_row("- of which stop -> stopping", changes["stop first"]),
                    summary_row("- of which start -> starting", changes["start first"]),
                    summary_row("final state (stopped / running)", changes["final"]),
                    summary_row("baseline: bare websocket echo round trip", changes["echo"]),
                    summary_row("baseline: GET /api/v1/auth from the page", changes["fetch"]),
                ],
            )
            print()
            print(f"memory: the page follows a file growing by {LINES_PER_SECOND} lines/s")
            before, samples, extra = measure_memory(
                browser, daemon, dashboard_url, busy_file, window, print
            )
            browser.close()
    print()
    print(f"daemon RSS before the page was opened (baseline): {before:.1f} MB")
    print_table(
        ["", "samples", "start", "end", "max", "growth", "slope /h"],
        memory_rows(samples, "rss", "MB")
        + memory_rows(samples, "heap", "MB")
        + memory_rows(samples, "nodes", "count"),
    )
    print(
        f"page main thread busy {extra['page_busy']:.1f} % of the time (CDP TaskDuration); "
        f"samples late because the page did not answer within {SAMPLE_EVERY:g} s: "
        f"{extra['late_samples']}"
    )
    print(
        f"daemon CPU with the page following the busy log: {extra['cpu_percent']:.1f} % "
        f"(the same file growing, nobody viewing: {extra['cpu_unviewed']:.1f} %); "
        f"log panel at the end: {extra['status']!r}"
    )

    print()
    load_max = max(loads)
    print(
        f"first load: p50 {median(loads):.0f} ms, max {load_max:.0f} ms "
        f"(static copy p50 {median(static_loads):.0f} ms); goal < {GOAL_LOAD_MS:g} ms "
        f"for every load: {verdict(load_max < GOAL_LOAD_MS)}"
    )
    p50, p99 = median(changes["first"]), percentile(changes["first"], 99)
    print(
        f"state change to the DOM: p50 {p50:.1f} ms, p99 {p99:.1f} ms over "
        f"{len(changes['first'])} trials (echo p50 {median(changes['echo']):.1f} ms); "
        f"goal p50 and p99 <= {GOAL_CHANGE_MS:g} ms: "
        f"{verdict(len(changes['first']) >= 20 and p99 <= GOAL_CHANGE_MS)}"
    )
    after = second_half(samples)
    growth = after[-1]["rss"] - after[0]["rss"] if len(after) >= 2 else float("nan")
    flat = growth <= max(1.0, 0.01 * after[0]["rss"]) if len(after) >= 2 else False
    print(
        f"daemon RSS over the second half of the window: {growth:+.2f} MB in "
        f"{after[-1]['t'] - after[0]['t'] if after else 0:.0f} s "
        f"(slope {slope_per_hour([(s['t'], s['rss']) for s in after]):+.2f} MB/h); "
        f"goal flat (growth <= 1 MB or 1 %): {verdict(flat)}"
    )


if __name__ == "__main__":
    main()
