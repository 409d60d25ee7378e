"""Fleet dashboard: first load with 5,000 services, and smoothness while 1 % change each second.

Goals (issue 12): the hub's fleet dashboard, with 5,000 services (100 hosts x 50), shows every
visible row within 1.5 s of the navigation's start, and stays smooth while 1 % of the
services change state every second.

Method. What is measured is the page, so the hub is stood in for by a small server in this
process that answers as the hub does (docs/api.md): the pages and their static files exactly
as the hub serves them (the same CSP and headers, the agent's modules under /agent-static/),
``GET /api/v1/fleet``, and ``WS /ws/events`` sending the hello (the whole fleet: 100 hosts, 50
services each, two of them a [[service]] of 4 instances) and then 50 ``service`` deltas a
second (1 % of 5,000), in ten batches of five, each a service turning to a troubled state or
back to running. A real hub's ingest and feed are bench/fleet_sim.py's and fleet_latency.py's.

- *First load*: a fresh browser context per trial (empty cache), ``page.goto``, then the page's
  mark ``hw:fleet-painted`` (fleet.js: set in a task queued from the first frame after the
  first screens' rows are in the DOM), from the navigation's start; checked: the viewport is
  filled with service rows. Baseline, interleaved trial by trial: the same 5,000 rows as a
  plain server-rendered table (same stylesheet, no script), timed to its DOMContentLoaded
  (every row parsed). One warm-up load of each is not counted.
- *Smoothness*: the page open, the deltas flowing; for 10 s each, the gaps between animation
  frames (requestAnimationFrame) and the long tasks (PerformanceObserver ``longtask``, > 50 ms),
  first with the page still, then while it scrolls (300 px every 100 ms, which also makes the
  rows of the blocks coming into view). Baseline: the plain table receiving the same deltas
  through a script of its own that sets each changed row's state at once (no coalescing).
- ``--real-hub``: the same two measurements against a real ``heartwatch hub`` (RabbitMQ and
  PostgreSQL on this machine, a database and an exchange made for the run and removed), fed
  through the broker by bench/fleet_sim.py's simulator (100 hosts x 50 services: snapshots,
  heartbeats, then 50 transitions a second): the first load then includes the hub reading
  the fleet from PostgreSQL for the hello.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import (
    CHROMIUM_ARGS,
    ROOT,
    SUMMARY_HEADERS,
    Workdir,
    banner,
    median,
    parse_args,
    percentile,
    print_table,
    summary_row,
    verdict,
)

HOSTS = 100
PER_HOST = 50
INSTANCES = 4  # per [[service]]; two of each host's services are such groups
CHANGES_PER_SECOND = 50  # 1 % of 5,000
BATCHES_PER_SECOND = 10
GOAL_LOAD_MS = 1500.0
WATCH_MS = 10_000
TROUBLE = ("failed", "unresponsive", "restarting", "backoff")
HUB_STATIC = ROOT / "src" / "heartwatch" / "hub" / "static"
AGENT_STATIC = ROOT / "src" / "heartwatch" / "web" / "static"

PAINTED_JS = """
() => {
  const mark = performance.getEntriesByName("hw:fleet-painted")[0];
  if (!mark) return null;
  const at = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
  window.__phases = [at("hw:fleet-connect"), at("hw:fleet-hello"), at("hw:fleet-rendered")];
  const rows = [...document.querySelectorAll(".frow.svc")];
  const inView = rows.filter((row) => {
    const box = row.getBoundingClientRect();
    return box.bottom > 0 && box.top < innerHeight;
  });
  const lowest = Math.max(0, ...inView.map((row) => row.getBoundingClientRect().bottom));
  return [mark.startTime, inView.length, lowest >= innerHeight - 40];
}
"""

DCL_JS = """
() => {
  const nav = performance.getEntriesByType("navigation")[0];
  return nav && nav.domContentLoadedEventEnd > 0
    ? [nav.domContentLoadedEventEnd, document.querySelectorAll("tr.svc").length, true]
    : null;
}
"""

PHASES: list[list[float]] = []  # per fleet load: [socket opened, hello in, rows in the DOM] ms

# Frame gaps and long tasks for `ms`; `scroll`: 300 px down every 100 ms (back up at the end).
WATCH_JS = """
async ([ms, scroll]) => {
  const gaps = [];
  const longs = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) longs.push(entry.duration);
  });
  observer.observe({ type: "longtask" });
  let timer = 0;
  if (scroll) {
    timer = setInterval(() => {
      if (scrollY + innerHeight >= document.documentElement.scrollHeight - 10) scrollTo(0, 0);
      else scrollBy(0, 300);
    }, 100);
  }
  const start = performance.now();
  let last = start;
  await new Promise((resolve) => {
    const step = (t) => {
      gaps.push(t - last);
      last = t;
      if (t - start < ms) requestAnimationFrame(step);
      else resolve();
    };
    requestAnimationFrame(step);
  });
  clearInterval(timer);
  observer.disconnect();
  scrollTo(0, 0);
  return { gaps: gaps.slice(1), longs };
}
"""

# The baseline's script: each delta sets its row's state at once.
BASELINE_JS = """
const socket = new WebSocket(`ws://${location.host}/ws/events`);
socket.addEventListener("message", (message) => {
  const data = JSON.parse(message.data);
  if (data.type !== "service") return;
  const s = data.service;
  const row = document.getElementById(`${s.host}/${s.name}`);
  if (!row) return;
  row.dataset.state = s.state;
  row.querySelector(".pill").textContent = s.state;
  row.querySelector(".reason").textContent = s.reason;
});
"""


# -- the fleet ------------------------------------------------------------------------------


def make_fleet(now: float) -> dict[str, Any]:
    hosts: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    for h in range(HOSTS):
        name = f"farm-{h:03d}"
        hosts.append(
            {
                "host": name,
                "state": "live",
                "labels": {"site": ("sz", "ny", "fra")[h % 3], "rack": f"r{h % 7}"},
                "boot": f"boot-{h}",
                "version": "0.9.0",
                "config_hash": "c0ffee",
                "last_seen_age": 0.8,
                "state_since": now - 7200,
                "services": PER_HOST,
                "problems": 0,
            }
        )
        names = [(f"emulator-{i}", None) for i in range(PER_HOST - 2 * INSTANCES)]
        for group in ("collector", "uploader"):
            names += [(f"{group}@{i}", group) for i in range(INSTANCES)]
        for i, (service, group) in enumerate(names):
            services.append(
                {
                    "host": name,
                    "name": service,
                    "instance_of": group,
                    "state": "running",
                    "last_state": "running",
                    "reason": "started",
                    "since": now - 3600 - i,
                    "pid": 1000 + i,
                    "restarts": 0,
                    "ready": True,
                    "uptime": 3600.0 + i,
                    "last_heartbeat_age_at_report": 0.4,
                    "status": {"name": service, "state": "running"},
                }
            )
    return {"generated_at": now, "hosts": hosts, "services": services}


def changed(service: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The service turned to a troubled state, or back to running."""
    trouble = service["state"] == "running"
    state = rng.choice(TROUBLE) if trouble else "running"
    reason = f"no heartbeat for {rng.uniform(5, 60):.1f} s" if trouble else "recovered"
    return {**service, "state": state, "last_state": state, "reason": reason, "since": time.time()}


# -- the stand-in hub ----------------------------------------------------------------------


def baseline_page(fleet: dict[str, Any]) -> str:
    from html import escape

    rows = []
    for s in fleet["services"]:
        key = escape(f"{s['host']}/{s['name']}")
        rows.append(
            f'<tr class="svc" id="{key}" data-state="{s["state"]}"><th>{escape(s["host"])}</th>'
            f'<td>{escape(s["name"])}</td><td><span class="pill">{s["state"]}</span></td>'
            f"<td>{s['pid']}</td><td>{s['restarts']}</td>"
            f'<td class="reason">{escape(s["reason"])}</td></tr>'
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>baseline</title>"
        '<link rel="stylesheet" href="/agent-static/app.css">'
        '<script type="module" src="/bench/baseline.js"></script></head><body>'
        '<table class="services"><tbody>' + "".join(rows) + "</tbody></table></body></html>"
    )


class StandInHub:
    """The hub's pages and feed as the dashboard reads them, in a thread of this process."""

    def __init__(self) -> None:
        self.fleet = make_fleet(time.time())
        self.by_key = {f"{s['host']}/{s['name']}": s for s in self.fleet["services"]}
        self.port = 0
        self.sent = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.responses import HTMLResponse, JSONResponse, Response
        from starlette.routing import Mount, Route, WebSocketRoute
        from starlette.websockets import WebSocket, WebSocketDisconnect

        from heartwatch.web.dashboard import (
            CONSTANTS_BLOCK,
            SECURITY_HEADERS,
            server_constants,
            static_files,
        )
        from heartwatch.web.dashboard import _RevalidatedFiles as Files

        constants = json.dumps(server_constants()).replace("<", "\\u003c")

        def page(name: str) -> str:
            text = (HUB_STATIC / name).read_text(encoding="utf-8")
            return text.replace(CONSTANTS_BLOCK, CONSTANTS_BLOCK.replace("{}", constants))

        fleet_html, baseline_html = page("fleet.html"), baseline_page(self.fleet)
        host_html = page("host.html")
        rng = random.Random(12)
        keys = list(self.by_key)

        async def fleet_page(request: Any) -> Response:
            return HTMLResponse(fleet_html, headers=SECURITY_HEADERS)

        async def host_page(request: Any) -> Response:
            return HTMLResponse(host_html, headers=SECURITY_HEADERS)

        async def host_api(request: Any) -> Response:
            name = request.path_params["host"]
            found = [h for h in self.fleet["hosts"] if h["host"] == name]
            if not found:
                return JSONResponse({"code": "unknown_host", "message": name}, 404)
            services = [s for s in self.by_key.values() if s["host"] == name]
            return JSONResponse({**found[0], "service_list": services})

        async def events_api(request: Any) -> Response:
            return JSONResponse({"events": [], "next_before": None})

        async def baseline(request: Any) -> Response:
            return HTMLResponse(baseline_html, headers=SECURITY_HEADERS)

        async def baseline_js(request: Any) -> Response:
            return Response(BASELINE_JS, media_type="text/javascript")

        async def fleet_api(request: Any) -> Response:
            return JSONResponse({**self.fleet, "services": list(self.by_key.values())})

        async def auth(request: Any) -> Response:
            return JSONResponse({"code": "not_found", "message": "no auth here"}, 404)

        async def events(websocket: WebSocket) -> None:
            await websocket.accept()
            fleet = {**self.fleet, "services": list(self.by_key.values())}
            await websocket.send_text(json.dumps({"type": "hello", "fleet": fleet}))
            per_batch = CHANGES_PER_SECOND // BATCHES_PER_SECOND
            try:
                while True:
                    await asyncio.sleep(1 / BATCHES_PER_SECOND)
                    for _ in range(per_batch):
                        key = rng.choice(keys)
                        self.by_key[key] = changed(self.by_key[key], rng)
                        message = {"type": "service", "service": self.by_key[key]}
                        await websocket.send_text(json.dumps(message))
                        self.sent += 1
            except (WebSocketDisconnect, RuntimeError):
                return

        return Starlette(
            routes=[
                Route("/", fleet_page),
                Route("/baseline", baseline),
                Route("/bench/baseline.js", baseline_js),
                Route("/api/v1/fleet", fleet_api),
                Route("/api/v1/auth", auth),
                Route("/hosts/{host}", host_page),
                Route("/api/v1/hosts/{host}", host_api),
                Route("/api/v1/events", events_api),
                WebSocketRoute("/ws/events", events),
                Mount("/agent-static", static_files()),
                Mount("/static", Files(directory=HUB_STATIC)),
            ]
        )

    def __enter__(self) -> StandInHub:
        import uvicorn

        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the stand-in hub did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# -- a real hub ------------------------------------------------------------------------------


class Feeder:
    """bench/fleet_sim.py's simulated agents in a thread of their own: snapshots, heartbeats,
    and (once `changing` is set) CHANGES_PER_SECOND transitions a second."""

    def __init__(self, exchange: str) -> None:
        import fleet_sim

        self.sim = fleet_sim
        self.exchange = exchange
        self.hosts = [
            fleet_sim.SimHost(f"farm-{i:03d}", PER_HOST, hang_share=1.0) for i in range(HOSTS)
        ]
        self.changing = threading.Event()
        self.stopping = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._feed())
        except BaseException as error:  # reported by the main thread
            self.error = error

    async def _feed(self) -> None:
        sim = self.sim
        async with sim.Publisher(sim.AMQP_URL, self.exchange) as publisher:
            for host in self.hosts:
                await publisher.send(host.snapshot())
            await publisher.flush()
            next_beat = time.monotonic()
            started: float | None = None
            index = 0
            while not self.stopping.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    for host in self.hosts:
                        await publisher.send(host.heartbeat())
                    next_beat += sim.HEARTBEAT_INTERVAL
                if self.changing.is_set():
                    started = now if started is None else started
                    due = int((now - started) * CHANGES_PER_SECOND) - self.sent
                    for _ in range(max(0, due)):
                        index += 1
                        await publisher.send(self.hosts[(index * 37) % HOSTS].next_entry())
                        self.sent += 1
                await asyncio.sleep(0.02)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(30)


def hub_services(url: str, token: str) -> int:
    request = urllib.request.Request(url + "/api/v1/fleet")
    request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return len(json.load(response)["services"])


@contextlib.contextmanager
def real_hub(folder: Path) -> Iterator[tuple[str, str, Feeder]]:
    """A real hub on its own database and exchange, fed by the simulator: (url, token, feeder)."""
    import fleet_sim

    exchange = f"hwbench.{uuid.uuid4().hex}"
    with fleet_sim.bench_database(keep=False) as database:
        hub = fleet_sim.HubProcess(folder, exchange, database)
        try:
            hub.start()
            url = f"http://{hub.http}"
            with Feeder(exchange) as feeder:
                deadline = time.monotonic() + 120
                while hub_services(url, hub.token) < HOSTS * PER_HOST:
                    if feeder.error is not None or time.monotonic() > deadline:
                        raise SystemExit(f"the hub did not learn the fleet: {feeder.error}")
                    time.sleep(0.5)
                yield url, hub.token, feeder
        finally:
            hub.stop()
            with contextlib.suppress(Exception):
                fleet_sim.delete_names(fleet_sim.AMQP_URL, exchange)


# -- measurements ---------------------------------------------------------------------------


def poll_page(page: Any, script: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(script)
        if value:
            return value
        time.sleep(0.005)
    raise RuntimeError(f"timed out waiting for {script.strip()[:60]}")


def new_context(browser: Any, token: str | None) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    if token:  # the page's stored token (api.js), there before its scripts run
        context.add_init_script(f"localStorage.setItem('heartwatch.token', {json.dumps(token)})")
    return context


def load_once(browser: Any, url: str, script: str, token: str | None = None) -> tuple[float, int]:
    context = new_context(browser, token)
    try:
        page = context.new_page()
        page.goto(url, wait_until="commit")
        at, rows, filled = poll_page(page, script)
        if not rows or not filled:
            raise RuntimeError(f"the viewport is not filled with rows at {url} ({rows} in view)")
        phases = page.evaluate("window.__phases ?? null")
        if phases:
            PHASES.append(phases)
        return float(at), int(rows)
    finally:
        context.close()


def measure_loads(
    browser: Any, url: str, baseline_url: str, trials: int, token: str | None = None
) -> dict[str, list[float]]:
    load_once(browser, url, PAINTED_JS, token)  # warm-ups: not counted
    load_once(browser, baseline_url, DCL_JS)
    out: dict[str, list[float]] = {"fleet": [], "baseline": [], "rows": []}
    for _ in range(trials):
        at, rows = load_once(browser, url, PAINTED_JS, token)
        out["fleet"].append(at)
        out["rows"].append(rows)
        out["baseline"].append(load_once(browser, baseline_url, DCL_JS)[0])
    return out


def watch(
    browser: Any, url: str, ready: str, scroll: bool, token: str | None = None
) -> dict[str, list[float]]:
    context = new_context(browser, token)
    try:
        page = context.new_page()
        page.goto(url)
        poll_page(page, ready)
        time.sleep(1.0)  # the first deltas in
        result = page.evaluate(WATCH_JS, [WATCH_MS, scroll])
        result["troubled"] = [
            page.evaluate(
                "document.querySelectorAll('[data-state]:not([data-state=running])').length"
            )
        ]
        return result
    finally:
        context.close()


def frame_row(label: str, result: dict[str, list[float]]) -> list[object]:
    gaps, longs = result["gaps"], result["longs"]
    return [
        label,
        len(gaps),
        percentile(gaps, 50),
        percentile(gaps, 99),
        max(gaps) if gaps else float("nan"),
        sum(1 for gap in gaps if gap > 50),
        len(longs),
        sum(longs),
    ]


FRAME_HEADERS = [
    "",
    "frames",
    "p50 gap ms",
    "p99 gap ms",
    "max gap ms",
    "gaps > 50 ms",
    "long tasks",
    "long ms",
]
READY_JS = "() => document.body.dataset.rendered === 'true'"
BASE_READY_JS = "() => document.readyState === 'complete'"


def measure_page(
    browser: Any, url: str, baseline_url: str, trials: int, token: str | None = None
) -> dict[str, Any]:
    """First loads (beside the baseline's, interleaved), then frames still and scrolling."""
    PHASES.clear()
    loads = measure_loads(browser, url, baseline_url, trials, token)
    return {
        "loads": loads,
        "phases": PHASES[1:],  # the warm-up's left out
        "still": watch(browser, url, READY_JS, scroll=False, token=token),
        "scrolling": watch(browser, url, READY_JS, scroll=True, token=token),
    }


def report(title: str, result: dict[str, Any], base: dict[str, Any], sent: int) -> None:
    loads = result["loads"]
    print()
    print(f"{title}: first load, navigation start -> the viewport's rows painted")
    print_table(
        SUMMARY_HEADERS,
        [
            summary_row(f"fleet dashboard, {HOSTS * PER_HOST} services", loads["fleet"]),
            summary_row(
                "baseline: the rows as a plain table (DOMContentLoaded)", loads["baseline"]
            ),
        ],
    )
    print(f"   service rows in the viewport at that mark: {sorted(set(loads['rows']))}")
    phases = result["phases"]
    if phases:
        names = ("script ran, socket opened", "hello received", "rows in the DOM")
        parts = [f"{name} {median([p[i] for p in phases]):.0f}" for i, name in enumerate(names)]
        print(f"   p50 ms from the navigation's start: {', '.join(parts)}")
    print(f"{title}: frames while {CHANGES_PER_SECOND} services change state a second")
    print_table(
        FRAME_HEADERS,
        [
            frame_row("fleet dashboard, still", result["still"]),
            frame_row("fleet dashboard, scrolling", result["scrolling"]),
            frame_row("baseline: plain table, still", base["still"]),
            frame_row("baseline: plain table, scrolling", base["scrolling"]),
        ],
    )
    print(
        f"   {sent:,} deltas sent; rows not running at the end: dashboard "
        f"{result['still']['troubled'][0]}, baseline {base['still']['troubled'][0]}"
    )
    p50 = median(loads["fleet"])
    print(
        f"{title}: first load p50 {p50:.0f} ms, max {max(loads['fleet']):.0f} ms (plain table "
        f"p50 {median(loads['baseline']):.0f} ms); goal <= {GOAL_LOAD_MS:g} ms: "
        f"{verdict(p50 <= GOAL_LOAD_MS)}"
    )
    p99 = max(percentile(result["still"]["gaps"], 99), percentile(result["scrolling"]["gaps"], 99))
    base_p99 = max(percentile(base["still"]["gaps"], 99), percentile(base["scrolling"]["gaps"], 99))
    print(
        f"{title}: p99 frame gap {p99:.1f} ms (the worse of still and scrolling; "
        f"plain table {base_p99:.1f} ms)"
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--real-hub",
        action="store_true",
        help="also against a real hub fed through RabbitMQ, on PostgreSQL (both on this machine)",
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _options)
    sys.stdout.reconfigure(line_buffering=True)
    trials = 5 if args.quick else 11
    banner("fleet dashboard: first load with 5,000 services, 1 % changing a second", args.quick)
    print(
        f"   {HOSTS} hosts x {PER_HOST} services; {trials} loads each; "
        f"{CHANGES_PER_SECOND} state changes/s; frames watched {WATCH_MS / 1000:g} s per pass"
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
    with contextlib.ExitStack() as stack:
        stand_in = stack.enter_context(StandInHub())
        real: tuple[str, str, Feeder] | None = None
        if args.real_hub:
            work = stack.enter_context(Workdir("fleet_dashboard", args.keep))
            real = stack.enter_context(real_hub(work.path))
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        baseline_url = stand_in.url + "/baseline"
        base = {
            "still": watch(browser, baseline_url, BASE_READY_JS, scroll=False),
            "scrolling": watch(browser, baseline_url, BASE_READY_JS, scroll=True),
        }
        base_sent = stand_in.sent
        stood_in = measure_page(browser, stand_in.url + "/", baseline_url, trials)
        sent = stand_in.sent - base_sent
        if real is not None:
            url, token, feeder = real
            feeder.changing.set()
            on_hub = measure_page(browser, url + "/", baseline_url, trials, token)
            real_sent = feeder.sent
            real_error = feeder.error
        browser.close()
    report("stand-in hub", stood_in, base, sent)
    if real is not None:
        report("real hub", on_hub, base, real_sent)
        if real_error is not None:  # a broker restart (another test's outage), say
            print(
                f"   NOTE: the simulator stopped early, its figures are not valid: {real_error!r}"
            )


if __name__ == "__main__":
    main()
