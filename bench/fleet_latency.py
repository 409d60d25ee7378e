"""Fleet: a state change on an agent -> the hub's dashboard DOM, beside the agent's own.

Goal (issue 12): p99 <= 250 ms from a service's state change on a host to the fleet dashboard
showing it.

Method. One hub (``heartwatch hub``, its own database and exchange) and one real agent (a
heartwatch daemon with ``[fleet]``, heartbeat 1 s) supervising ten ``sleep`` services. Chromium
(the system's, headless, Playwright) opens the hub's ``/`` (the token in local storage, as the
page keeps it) and the agent's own ``/`` side by side. Each trial stops, then starts, one
service through the agent's own API (``POST /api/v1/services/<name>/stop|start``: the daemon
changes the state at once). Before the request both pages arm a ``MutationObserver`` on the
service's row (the hub's ``.frow.svc[data-host][data-service]``, the agent's
``tr[data-service]``) that notes the wall-clock time (``performance.timeOrigin + now()``) when
its ``data-state`` first leaves the old state and when it reaches the final one (``stopped`` /
``running``). Latency = that time minus the wall-clock time just before the request, in this
process (same machine, same clock). The agent's own dashboard, in the same trial, is the
baseline: what the hub adds is the broker, the ingest's batch, PostgreSQL, LISTEN/NOTIFY and
the hub's websocket. ``--quick``: 10 trials (20 changes), else 40 (80 changes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from _common import (
    CHROMIUM_ARGS,
    SUMMARY_HEADERS,
    Daemon,
    TomlValue,
    Workdir,
    banner,
    percentile,
    print_table,
    summary_row,
    verdict,
    wait_until,
)
from fleet_sim import AMQP_URL, HubProcess, bench_database, delete_names

GOAL_MS = 250.0
FOREGROUND_ARGS = [
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
SERVICES = 10
TARGET = "svc-00"
HOST = "latency-host"

# Arm an observer on the row `selector`: window.__hwChange resolves with every state the row
# showed (and the wall-clock time it did), once it shows `final` (or after 10 s).
ARM_JS = """
([selector, final]) => {
  const stamp = () => performance.timeOrigin + performance.now();
  const current = () => document.querySelector(selector)?.dataset.state ?? null;
  const seen = [];
  window.__hwChange = new Promise((resolve) => {
    const check = () => {
      const state = current();
      if (state !== null && (seen.length === 0 || seen.at(-1)[0] !== state)) {
        seen.push([state, stamp()]);
      }
      if (state === final && seen.length > 1) {
        observer.disconnect();
        resolve({ seen, done: true });
      }
    };
    const observer = new MutationObserver(check);
    observer.observe(document.body, {
      subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"],
    });
    check();
    setTimeout(() => { observer.disconnect(); resolve({ seen, done: false }); }, 10000);
  });
}
"""

# Before any page script: note when each /ws/events "service" message for the target arrives
# (listeners run in the order added: this one before the page's own).
WS_SPY_JS = """
(() => {
  const Original = window.WebSocket;
  window.__hwWs = [];
  window.WebSocket = class extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        try {
          const message = JSON.parse(event.data);
          const service = message.service;
          if (message.type === "service" && service.host === HOST && service.name === TARGET) {
            window.__hwWs.push([service.state, performance.timeOrigin + performance.now()]);
          }
        } catch {}
      });
    }
  };
})();
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 trials")
    parser.add_argument("--keep", action="store_true", help="keep the folder and database")
    parser.add_argument("--trials", type=int, default=None)
    args = parser.parse_args()
    args.trials = args.trials or (10 if args.quick else 40)
    return args


def post(url: str) -> None:
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def hub_state(hub_http: str, token: str) -> str | None:
    request = urllib.request.Request(f"http://{hub_http}/api/v1/fleet")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        fleet = json.loads(response.read())
    for service in fleet["services"]:
        if service["host"] == HOST and service["name"] == TARGET:
            return str(service["state"])
    return None


def main() -> None:
    args = parse_args()
    banner(f"fleet latency: agent state change -> hub dashboard, {args.trials} trials", args.quick)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright is not installed: nothing measured")
        return
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        print("no Chromium (/usr/bin/chromium or `chromium` on PATH): nothing measured")
        return
    exchange = f"hwbench.{uuid.uuid4().hex}"
    results: dict[str, list[float]] = {
        "hub": [],
        "stored": [],
        "ws": [],
        "ws to dom": [],
        "agent": [],
    }
    missed = 0
    unseen: dict[str, int] = {}
    with Workdir("fleet-latency", keep=args.keep) as work, bench_database(args.keep) as database:
        hub = HubProcess(work.path, exchange, database)
        services: list[dict[str, TomlValue]] = [
            {"name": f"svc-{i:02d}", "command": ["sleep", "3600"], "stop_timeout": "2s"}
            for i in range(SERVICES)
        ]
        fleet: dict[str, TomlValue] = {
            "broker": AMQP_URL,
            "host": HOST,
            "exchange": exchange,
            "heartbeat_interval": "1s",
            "hub_keys": [hub.public_key],
        }
        agent = Daemon(work.path / "agent", services, sections={"fleet": fleet})
        try:
            hub.start()
            hub_http = hub.http
            token = hub.token
            agent.start()
            if not wait_until(lambda: hub_state(hub_http, token) == "running", timeout=60):
                print("the hub never showed the agent's service running: nothing measured")
                return
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                context.add_init_script(
                    f"localStorage.setItem('heartwatch.token', {json.dumps(token)});"
                )
                context.add_init_script(
                    WS_SPY_JS.replace("HOST", json.dumps(HOST)).replace(
                        "TARGET", json.dumps(TARGET)
                    )
                )
                hub_page = context.new_page()
                hub_page.goto(f"http://{hub_http}/")
                agent_page = context.new_page()
                agent_page.goto(f"http://{agent.http}/")
                hub_row = f'.frow.svc[data-host="{HOST}"][data-service="{TARGET}"]'
                agent_row = f'tr[data-service="{TARGET}"]'
                hub_page.wait_for_selector(f'{hub_row}[data-state="running"]', state="attached")
                agent_page.wait_for_selector(f'{agent_row}[data-state="running"]', state="attached")
                for _ in range(args.trials):
                    for verb, final in (("stop", "stopped"), ("start", "running")):
                        hub_page.evaluate(ARM_JS, [hub_row, final])
                        agent_page.evaluate(ARM_JS, [agent_row, final])
                        started = time.time()
                        post(f"http://{agent.http}/api/v1/services/{TARGET}/{verb}")
                        seen_hub: Any = hub_page.evaluate("window.__hwChange")
                        seen_agent: Any = agent_page.evaluate("window.__hwChange")
                        if not (seen_hub["done"] and seen_agent["done"]):
                            missed += 1
                        changes = transitions(database, started - 0.5)
                        messages = hub_page.evaluate("window.__hwWs.splice(0)")
                        for state, at, stored in changes:
                            on_hub = first_shown(seen_hub["seen"], state, at)
                            on_agent = first_shown(seen_agent["seen"], state, at)
                            if on_hub is None:
                                unseen[state] = unseen.get(state, 0) + 1
                            else:
                                results["hub"].append(on_hub - at * 1000)
                            if on_agent is not None:
                                results["agent"].append(on_agent - at * 1000)
                            results["stored"].append((stored - at) * 1000)
                            on_ws = first_shown(messages, state, at)
                            if on_ws is not None:
                                results["ws"].append(on_ws - at * 1000)
                            if on_ws is not None and on_hub is not None:
                                results["ws to dom"].append(on_hub - on_ws)
                        time.sleep(0.3)
                browser.close()
        finally:
            agent.stop()
            hub.stop()
            if not args.keep:
                delete_names(AMQP_URL, exchange)

    print()
    print(
        f"a transition of {TARGET} on the agent (its journal's time) -> the row's data-state "
        f"showing that state; {SERVICES} services on one host, stop and start"
    )
    print_table(
        SUMMARY_HEADERS,
        [
            summary_row("hub dashboard", results["hub"]),
            summary_row("- agent -> stored by the hub (commit)", results["stored"]),
            summary_row("- agent -> the hub's /ws/events message", results["ws"]),
            summary_row("- that message -> the row's data-state", results["ws to dom"]),
            summary_row("baseline: the agent's own dashboard", results["agent"]),
        ],
    )
    if missed:
        print(f"   {missed} changes not complete on a page within 10 s")
    if unseen:
        print(f"   states the hub's row never showed (coalesced or late): {unseen}")
    p99 = percentile(results["hub"], 99)
    ok = verdict(p99 <= GOAL_MS)
    print(f"\n   goal p99 <= {GOAL_MS:.0f} ms (hub dashboard): {ok} ({p99:.0f} ms)")


def transitions(database: str, since: float) -> list[tuple[str, float, float]]:
    """The target's transitions since ``since``: (state, the agent's time, the hub's commit
    time), as the hub stored them (PostgreSQL's now() at the ingest's transaction)."""
    import psycopg

    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(database, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT state, at, extract(epoch FROM received_at) FROM events"
                " WHERE host = %s AND service = %s AND type = 'entry' AND kind = 'transition'"
                " AND at >= %s ORDER BY seq",
                (HOST, TARGET, since),
            ).fetchall()
        if rows or time.monotonic() > deadline:
            return [(str(state), float(at), float(stored)) for state, at, stored in rows]
        time.sleep(0.1)


def first_shown(seen: list[list[Any]], state: str, at: float) -> float | None:
    """When a page first showed ``state`` at or after the agent's ``at`` (ms), if it did."""
    for shown, when in seen:
        if shown == state and when >= at * 1000 - 5:  # 5 ms: the clocks' rounding
            return float(when)
    return None


if __name__ == "__main__":
    sys.exit(main())
