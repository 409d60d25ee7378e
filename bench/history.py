"""History: the history and rates API and the history page over 50 services × 7 days.

Goals (issue 13): the series API <= 100 ms p99, beside a plain ``GET /api/v1/services`` in the
same run; the history page's first paint of every strip and chart <= 500 ms; the daemon's RSS
while the page shows it.

Method. A history file is written before the daemon starts, through the store's own
``SQLiteHistory.add_entries`` / ``add_counts`` (the daemon's code path into SQLite): 50 services
over the 7 days before now, every minute of it counted (each service beats once a second:
60 heartbeats a minute, a little noise; a third of them send ``row`` events, 6 a minute, a fifth
``frame`` events, 30 a minute), and journal entries as the daemon writes them: each service
started at the window's start, about one incident per service per day at random times
(alternately a hang: data stops 10 minutes before the heartbeat, ``unresponsive``, a recovery
entry, the stop, the exit, the restart, ``starting``, ``running``; and a crash: the exit,
``backoff``, the restart, ``starting``, ``running``), the daemon killed once on day 3 (no
``stopping`` entry, 20 minutes without counts, then ``heartwatch started`` and every service
starting again) and stopped cleanly once on day 5 (5 minutes away). Then a daemon runs on that
file with the same 50 services (``sleep 3600``, ready at once, with ``heartbeat_timeout`` and
``data_timeout`` of a day so that the rates carry timeouts and nothing fails while measuring).

- *API*: over one keep-alive connection, round after round, one request of each kind in turn:
  ``GET /api/v1/services`` (the baseline), ``/api/v1/history/{name}`` and
  ``/api/v1/history/{name}/rates`` over the last 7 days and over the last 30 days, the service
  changing every round. Latency: request sent to body read, on this side; beside it the
  daemon's CPU time over each request (``/proc/<pid>/task/*/schedstat``), which a loaded
  machine stretches less than the wall clock.
- *Page*: Chromium (the system's, headless, through Playwright) loads ``/history?window=7d``
  (every service's strip, with its figures: 50 history requests from the page) and
  ``/history?service=svc-00&window=7d`` (its strip, its two data kinds' charts and the
  heartbeat's, uPlot), each in a fresh context (empty cache), and reads the page's own mark
  ``hw:history-painted`` (``history.js``: set when every strip and chart of the load is drawn);
  its ``startTime`` is milliseconds from the navigation's start, as the browser measures it,
  and the strips (SVG) and chart canvases are counted then. One warm-up load of each is not
  counted. Baseline, interleaved trial by trial: the dashboard on the same daemon, to its
  ``hw:services-rendered`` mark (``app.js``).
- *Memory*: the daemon's RSS after it started, after the API rounds, and while the page is
  open (after its loads, and after 10 s more with it shown).
"""

from __future__ import annotations

import argparse
import http.client
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import (
    CHROMIUM_ARGS,
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
    verdict,
    wait_until,
)
from heartwatch.core.journal import DAEMON_STARTED, DAEMON_STOPPING, EntryKind, JournalEntry
from heartwatch.store import MinuteCount
from heartwatch.store.sqlite import SQLiteHistory

SERVICES = 50
DAYS = 7
DAY = 86400.0
MINUTE = 60
GOAL_API_MS = 100.0
GOAL_PAINT_MS = 500.0
KILLED_AT_DAY = 3.2  # the daemon SIGKILLed: no "stopping" entry
KILLED_FOR = 20 * 60
STOPPED_AT_DAY = 5.5  # the daemon stopped cleanly
STOPPED_FOR = 5 * 60
HISTORY_MARK = "hw:history-painted"  # history.js, once every strip and chart is drawn
DASHBOARD_MARK = "hw:services-rendered"  # app.js


def service_names() -> list[str]:
    return [f"svc-{i:02d}" for i in range(SERVICES)]


def data_kinds(index: int) -> dict[str, int]:
    """The data kinds service ``index`` sends, with their events per minute."""
    kinds = {}
    if index % 3 == 0:
        kinds["row"] = 6
    if index % 5 == 0:
        kinds["frame"] = 30
    return kinds


# -- the history file ----------------------------------------------------------------------


class Journal:
    """Entries as the daemon writes them, collected out of order, numbered in time order
    (the journal's ids grow with time)."""

    def __init__(self) -> None:
        self.pending: list[JournalEntry] = []

    def add(
        self,
        at: float,
        kind: EntryKind,
        service: str | None,
        reason: str,
        state: str | None = None,
        previous: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.pending.append(JournalEntry(0, at, kind, service, reason, state, previous, detail))

    def entries(self) -> list[JournalEntry]:
        ordered = sorted(self.pending, key=lambda entry: entry.at)
        return [replace(entry, id=number) for number, entry in enumerate(ordered, start=1)]


def hang(journal: Journal, at: float, service: str, pid: int, restarts: int) -> float:
    """A hang found at ``at``: the recovery, as the supervisor journals it; when it ran again."""
    journal.add(
        at,
        "transition",
        service,
        "no heartbeat for 30.0 s",
        "unresponsive",
        "running",
        {"failure": True, "down_since": at - 30},
    )
    journal.add(
        at + 0.01, "recovery", service, "no heartbeat for 30.0 s", detail={"members": [service]}
    )
    journal.add(at + 0.02, "transition", service, "recovering", "restarting", "unresponsive")
    journal.add(
        at + 2.5,
        "exit",
        service,
        "killed by SIGTERM",
        detail={"pid": pid, "returncode": -15, "stopped": True, "stop_sent": at + 0.02},
    )
    journal.add(
        at + 3.0,
        "restart",
        service,
        "no heartbeat for 30.0 s",
        detail={"pid": pid + 1, "cause": "recovery", "restarts": restarts, "restarts_requested": 0},
    )
    journal.add(at + 3.0, "transition", service, "started", "starting", "restarting")
    journal.add(at + 4.5, "transition", service, "ready", "running", "starting")
    return at + 4.5


def crash(journal: Journal, at: float, service: str, pid: int, restarts: int) -> float:
    """A crash at ``at`` (exit 1), backoff, the restart; when it ran again."""
    journal.add(
        at, "exit", service, "exited 1: error: device offline", detail={"pid": pid, "returncode": 1}
    )
    journal.add(
        at,
        "transition",
        service,
        "exited 1: error: device offline",
        "backoff",
        "running",
        {"failure": True},
    )
    journal.add(
        at + 10,
        "restart",
        service,
        "exited 1: error: device offline",
        detail={"pid": pid + 1, "cause": "recovery", "restarts": restarts, "restarts_requested": 0},
    )
    journal.add(at + 10, "transition", service, "started", "starting", "backoff")
    journal.add(at + 11.5, "transition", service, "ready", "running", "starting")
    return at + 11.5


def write_history(path: Path, end: float, seed: int = 13) -> tuple[int, int]:
    """The 7 days before ``end`` into ``path`` (see the method); (entries, count rows)."""
    rng = random.Random(seed)
    start = end - DAYS * DAY
    first_minute = int(start) // MINUTE * MINUTE
    last_minute = int(end) // MINUTE * MINUTE
    killed = (start + KILLED_AT_DAY * DAY, start + KILLED_AT_DAY * DAY + KILLED_FOR)
    stopped = (start + STOPPED_AT_DAY * DAY, start + STOPPED_AT_DAY * DAY + STOPPED_FOR)
    journal = Journal()
    journal.add(start, "daemon", None, f"{DAEMON_STARTED} (pid 1000)")
    journal.add(stopped[0], "daemon", None, DAEMON_STOPPING)
    for begin in (killed[1], stopped[1]):
        journal.add(begin, "daemon", None, f"{DAEMON_STARTED} (pid {int(begin) % 30000})")
    absent = [killed, stopped]
    # Per service: minutes without data (a hang's 10 minutes before), without beats (down).
    silent: dict[str, list[tuple[float, float, bool]]] = {}
    for index, name in enumerate(service_names()):
        # The clean stop stops every service first; the kill leaves them unrecorded.
        journal.add(stopped[0] - 2, "transition", name, "daemon stopping", "stopping", "running")
        journal.add(stopped[0] - 1, "transition", name, "stopped", "stopped", "stopping")
        for begin in (start, killed[1], stopped[1]):
            journal.add(begin + 0.5, "transition", name, "starting", "starting", "stopped")
            journal.add(begin + 1.5, "transition", name, "ready", "running", "starting")
        quiet: list[tuple[float, float, bool]] = []
        at = start + rng.uniform(0.2, 1.0) * DAY
        pid = 2000 + index * 100
        for number in range(DAYS * 3):  # about one a day: exponential gaps
            if at >= end - 3600:
                break
            if any(low - 3600 <= at <= high + 600 for low, high in absent):
                at += rng.expovariate(1 / DAY)
                continue
            if number % 2 == 0:
                back = hang(journal, at, name, pid, number + 1)
                quiet += [(at - 600, at - 30, False), (at - 30, back, True)]  # data first
            else:
                back = crash(journal, at, name, pid, number + 1)
                quiet.append((at, back, True))
            pid += 1
            at = back + rng.expovariate(1 / DAY)
        silent[name] = quiet
    entries = journal.entries()
    store = SQLiteHistory(path)
    try:
        store.add_entries(entries)
        rows = 0
        batch: list[MinuteCount] = []
        for minute in range(first_minute, last_minute, MINUTE):
            if any(low <= minute < high for low, high in absent):
                continue
            for index, name in enumerate(service_names()):
                gone = [beats for low, high, beats in silent[name] if low <= minute < high]
                if not any(gone):  # the heartbeat stops only when the process is down or hung
                    batch.append(MinuteCount(minute, name, "heartbeat", 60 - rng.randrange(3)))
                if gone:
                    continue
                for kind, per_minute in data_kinds(index).items():
                    batch.append(MinuteCount(minute, name, kind, per_minute + rng.randrange(-1, 2)))
            if len(batch) >= 50_000:
                store.add_counts(batch)
                rows += len(batch)
                batch = []
        store.add_counts(batch)
        rows += len(batch)
    finally:
        store.close()
    return len(entries), rows


# -- measurements ----------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP connection to the daemon; each GET timed, its body read."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)
        self.sizes: dict[str, list[int]] = {}

    def get(self, label: str, path: str) -> float:
        started = time.perf_counter()
        self.connection.request("GET", path)
        response = self.connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000.0
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:300]!r}")
        self.sizes.setdefault(label, []).append(len(body))
        return elapsed

    def close(self) -> None:
        self.connection.close()


def api_requests(name: str, now: float) -> list[tuple[str, str]]:
    week, month = now - 7 * DAY, now - 30 * DAY
    return [
        ("baseline: GET /api/v1/services", "/api/v1/services"),
        ("history, 7 days", f"/api/v1/history/{name}?since={week:.0f}&until={now:.0f}"),
        ("history, 30 days", f"/api/v1/history/{name}?since={month:.0f}&until={now:.0f}"),
        ("rates, 7 days", f"/api/v1/history/{name}/rates?since={week:.0f}&until={now:.0f}"),
        ("rates, 30 days", f"/api/v1/history/{name}/rates?since={month:.0f}&until={now:.0f}"),
    ]


def measure_api(
    daemon: Daemon, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int]]:
    """Per kind of request: latencies (ms), the daemon's CPU time for each (ms: what the
    answer cost it, which a loaded machine stretches less than the wall clock), the largest
    body (bytes)."""
    client = Client(daemon.http)
    latencies: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    try:
        names = service_names()
        for warm in api_requests(names[0], time.time()):  # warm-up: not counted
            client.get("warm-up", warm[1])
        for number in range(rounds):
            for label, path in api_requests(names[number % len(names)], time.time()):
                before = cpu_seconds(daemon.pid)
                latencies.setdefault(label, []).append(client.get(label, path))
                cpu.setdefault(label, []).append((cpu_seconds(daemon.pid) - before) * 1000.0)
        sizes = {label: max(found) for label, found in client.sizes.items()}
    finally:
        client.close()
    return latencies, cpu, sizes


def poll_page(page: Any, script: str, timeout: float = 30.0) -> Any:
    """Evaluate ``script`` until it returns something (the page's CSP forbids the ``eval``
    that Playwright's ``wait_for_function`` polls with)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(script)
        if value:
            return value
        time.sleep(0.005)
    raise RuntimeError(f"timed out waiting for {script.strip()[:60]}")


def mark_script(mark: str) -> str:
    """The mark's time, with when the last API answer had come and how many there were
    (Resource Timing): what the page waited for the daemon, and what drawing took after."""
    return f"""() => {{
  const mark = performance.getEntriesByName({mark!r})[0];
  if (!mark) return null;
  const api = performance.getEntriesByType("resource").filter((r) => r.name.includes("/api/"));
  const slowest = api.reduce((a, b) => (b.duration > (a ? a.duration : -1) ? b : a), null);
  const what = slowest ? [new URL(slowest.name).pathname, slowest.duration] : ["-", 0];
  return [mark.startTime, Math.max(0, ...api.map((r) => r.responseEnd)), api.length, ...what];
}}"""


# The mark, the last API answer (ms), API requests, the slowest one's path and duration (ms).
Load = tuple[float, float, int, str, float]


def load_once(browser: Any, url: str, mark: str, check: Callable[[Any], None]) -> Load:
    """One cold load in a fresh context: ms from navigation start to the page's ``mark``."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(url, wait_until="commit")
        at, last_answer, requests, slowest, slowest_ms = poll_page(page, mark_script(mark))
        check(page)
        return float(at), float(last_answer), int(requests), str(slowest), float(slowest_ms)
    finally:
        context.close()


def strips_drawn(count: int) -> Callable[[Any], None]:
    """A check that ``count`` strips are on the page (not a page marked with less drawn)."""

    def check(page: Any) -> None:
        strips = page.evaluate("document.querySelectorAll('#strips .strip-block svg').length")
        if strips < count:
            raise RuntimeError(f"{strips} strips drawn on the history page, not {count}")

    return check


def charts_drawn(kinds: int) -> Callable[[Any], None]:
    """One strip, and a uPlot canvas for each data kind and the heartbeat."""
    one_strip = strips_drawn(1)

    def check(page: Any) -> None:
        one_strip(page)
        found = page.evaluate("document.querySelectorAll('#charts figure.chart canvas').length")
        if found < kinds + 1:
            raise RuntimeError(f"{found} charts drawn, not {kinds + 1}")

    return check


def no_check(page: Any) -> None:
    """The dashboard's mark comes with its rows (``bench/dashboard.py`` checks them)."""


PageLoads = dict[str, list[Load]]


def measure_page(daemon: Daemon, trials: int, chromium: str) -> tuple[PageLoads, list[float]]:
    """Loads of the history page (every service; one service with its charts) and of the
    dashboard, interleaved; the daemon's RSS with the history page open."""
    from playwright.sync_api import sync_playwright

    base = f"http://{daemon.http}"
    charted = service_names()[0]  # row and frame: two charts and the heartbeat's
    pages: list[tuple[str, str, str, Callable[[Any], None]]] = [
        (
            f"history page, {SERVICES} strips, 7 days",
            f"{base}/history?window=7d",
            HISTORY_MARK,
            strips_drawn(SERVICES),
        ),
        (
            f"history page, {charted}: strip + {len(data_kinds(0)) + 1} charts, 7 days",
            f"{base}/history?service={charted}&window=7d",
            HISTORY_MARK,
            charts_drawn(len(data_kinds(0))),
        ),
        ("baseline: the dashboard, its rows rendered", f"{base}/", DASHBOARD_MARK, no_check),
    ]
    loads: PageLoads = {label: [] for label, *_ in pages}
    rss = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for _, url, mark, check in pages:  # warm-up: not counted
                load_once(browser, url, mark, check)
            for _ in range(trials):
                for label, url, mark, check in pages:
                    loads[label].append(load_once(browser, url, mark, check))
            # The page left open and shown: the daemon's memory while it is.
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.goto(pages[0][1], wait_until="commit")
            poll_page(page, mark_script(HISTORY_MARK))
            rss.append(rss_mb(daemon.pid))
            time.sleep(10)
            rss.append(rss_mb(daemon.pid))
            context.close()
        finally:
            browser.close()
    return loads, rss


def _slowest(loads: Sequence[Load]) -> str:
    """The request that took longest in the median load, and how long."""
    ordered = sorted(loads, key=lambda load: load[0])
    _, _, _, path, duration = ordered[len(ordered) // 2]
    return f"{path} ({duration:.0f})"


# -- the run ---------------------------------------------------------------------------------


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=0, help="API rounds (default 200, quick 40)")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _options)
    sys.stdout.reconfigure(line_buffering=True)  # a long run shows its progress
    rounds = args.rounds or (40 if args.quick else 200)
    trials = 5 if args.quick else 20
    banner("history: the history and rates API, the history page, 50 services x 7 days", args.quick)
    services: list[dict[str, TomlValue]] = [
        {
            "name": name,
            "command": ["sleep", "3600"],
            "ready": 0,
            "heartbeat_timeout": "1d",
            **({"data_timeout": {k: "1d" for k in data_kinds(i)}} if data_kinds(i) else {}),
            "stop_timeout": "2s",
        }
        for i, name in enumerate(service_names())
    ]
    with Workdir("history", args.keep) as work:
        folder = work.path / "daemon"
        history_file = folder / "state" / "history.sqlite3"
        written = time.perf_counter()
        entries, rows = write_history(history_file, time.time())
        seconds = time.perf_counter() - written
        size_mb = history_file.stat().st_size / 2**20
        print(
            f"   history written in {seconds:.1f} s: {entries:,} entries, {rows:,} minute counts, "
            f"{size_mb:.1f} MB"
        )
        daemon = Daemon(folder, services)
        with daemon:
            ok = wait_until(
                lambda: all(s["state"] == "running" for s in daemon.services()), timeout=60
            )
            if not ok:
                print("not every service reached running within 60 s: nothing measured")
                return
            rss_start = rss_mb(daemon.pid)
            latencies, cpu, sizes = measure_api(daemon, rounds)
            rss_api = rss_mb(daemon.pid)
            print()
            print(f"API: {rounds} rounds, one request of each kind per round (one connection)")
            print_table(
                [*SUMMARY_HEADERS, "CPU p50 ms", "body KB"],
                [
                    [*summary_row(label, values), median(cpu[label]), sizes[label] / 1024]
                    for label, values in latencies.items()
                ],
            )
            worst = max(
                percentile(values, 99)
                for label, values in latencies.items()
                if not label.startswith("baseline")
            )
            print(
                f"goal: history and rates p99 <= {GOAL_API_MS:g} ms: "
                f"{verdict(worst <= GOAL_API_MS)}"
            )
            chromium = shutil.which("chromium") or "/usr/bin/chromium"
            page_rss: list[float] = []
            try:
                import playwright  # noqa: F401
            except ImportError:
                print("playwright is not installed: the page is not measured")
            else:
                if not Path(chromium).exists():
                    print("no Chromium: the page is not measured")
                else:
                    loads, page_rss = measure_page(daemon, trials, chromium)
                    print()
                    print("first paint: navigation start -> the page's mark (a fresh context each)")
                    print_table(
                        SUMMARY_HEADERS,
                        [
                            summary_row(label, [v[0] for v in values])
                            for label, values in loads.items()
                        ],
                    )
                    print()
                    print("of which (p50): the last API answer in (Resource Timing), then drawing")
                    print_table(
                        ["", "API requests", "last answer ms", "then drawing ms", "slowest (ms)"],
                        [
                            [
                                label,
                                values[0][2],
                                median([v[1] for v in values]),
                                median([v[0] - v[1] for v in values]),
                                _slowest(values),
                            ]
                            for label, values in loads.items()
                        ],
                    )
                    worst_paint = max(
                        percentile([v[0] for v in values], 99)
                        for label, values in loads.items()
                        if not label.startswith("baseline")
                    )
                    print(
                        f"goal: every strip and chart drawn <= {GOAL_PAINT_MS:g} ms (p99): "
                        f"{verdict(worst_paint <= GOAL_PAINT_MS)}"
                    )
            print()
            print("daemon RSS (MB)")
            rss_rows: list[Sequence[object]] = [
                ["started, on the 7-day file", rss_start],
                [f"after {rounds} API rounds", rss_api],
            ]
            if page_rss:
                rss_rows += [["the history page open", page_rss[0]], ["10 s later", page_rss[1]]]
            print_table(["", "MB"], rss_rows)


if __name__ == "__main__":
    main()
