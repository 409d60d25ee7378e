"""Fleet: a state change on an agent -> the hub's dashboard DOM, beside the agent's own.

Goal (issue 12): p99 <= 250 ms from a service's state change on a host to the fleet dashboard
showing it.

Method. One hub (``heartwatch hub``, its own database and exchange) and one real agent (a
heartwatch daemon with ``[fleet]``, heartbeat 1 s) supervising ten ``sleep`` services. Chromium
(the system's, headless, Playwright) opens the hub's ``/`` (the token in local storage, as the
page keeps it) and the agent's own ``/``, each in a context (a window) of its own: a page in a
background tab gets no animation frames, and the fleet page draws in them (an earlier version
of this bench had both as tabs of one window and measured that, ~0.7 s). An init script in each
page notes, with the wall-clock time (``performance.timeOrigin + now()``), every ``data-state``
the service's row takes (the hub's ``.frow.svc[data-host][data-service]``, the agent's
``tr[data-service]``), and on the hub's page when each ``/ws/events`` message about it came.
Each trial stops, then starts, the service through the agent's own API; once the hub stored the
last transition, and 0.8 s more, the pages' notes are read. Latency, per transition: the time a
page first showed its state minus the transition's time in the agent's journal (same machine,
same clock); split on the hub's side into its commit (``events.received_at``, PostgreSQL's
``now()``), the websocket message, and the page's drawing. The agent's own dashboard, for the
same transitions, is the baseline. A state the hub's row never showed is counted apart (the
hub's feed pushes a row at most every 0.1 s: ``stopping`` is usually folded into ``stopped``).
``--quick``: 10 trials (20 changes, about 40 transitions), else 40.
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
from fleet_sim import AMQP_URL, HubProcess, bench_database, broker_held, delete_names

GOAL_MS = 250.0
FOREGROUND_ARGS = [
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
SERVICES = 10
TARGET = "svc-00"
HOST = "latency-host"

# Before any page script: note every state the target's row shows, and when (wall clock).
# An init script, not an evaluate per trial: a page is only read after each change.
STATES_JS = """
(() => {
  window.__hwStates = [];
  const stamp = () => performance.timeOrigin + performance.now();
  new MutationObserver((mutations) => {
    for (const mutation of mutations) {
      const row = mutation.target;
      if (mutation.attributeName === "data-state" && row.matches?.(SELECTOR)) {
        window.__hwStates.push([row.dataset.state, stamp()]);
      }
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
})();
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
    with (
        broker_held(),
        Workdir("fleet-latency", keep=args.keep) as work,
        bench_database(args.keep) as database,
    ):
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
            hub_row = f'.frow.svc[data-host="{HOST}"][data-service="{TARGET}"]'
            agent_row = f'tr[data-service="{TARGET}"]'
            with sync_playwright() as playwright:
                # Each page in a context (a window) of its own, both in the foreground: a
                # background tab gets no animation frames, and the fleet page draws in them.
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=[*CHROMIUM_ARGS, *FOREGROUND_ARGS]
                )
                hub_context = browser.new_context(viewport={"width": 1400, "height": 1000})
                hub_context.add_init_script(
                    f"localStorage.setItem('heartwatch.token', {json.dumps(token)});"
                )
                hub_context.add_init_script(
                    WS_SPY_JS.replace("HOST", json.dumps(HOST)).replace(
                        "TARGET", json.dumps(TARGET)
                    )
                )
                hub_context.add_init_script(STATES_JS.replace("SELECTOR", json.dumps(hub_row)))
                hub_page = hub_context.new_page()
                hub_page.goto(f"http://{hub_http}/")
                agent_context = browser.new_context(viewport={"width": 1400, "height": 1000})
                agent_context.add_init_script(STATES_JS.replace("SELECTOR", json.dumps(agent_row)))
                agent_page = agent_context.new_page()
                agent_page.goto(f"http://{agent.http}/")
                hub_page.wait_for_selector(f'{hub_row}[data-state="running"]', state="attached")
                agent_page.wait_for_selector(f'{agent_row}[data-state="running"]', state="attached")
                for page in (hub_page, agent_page):
                    page.evaluate("window.__hwStates.splice(0); window.__hwWs?.splice(0)")
                for _ in range(args.trials):
                    for verb, final in (("stop", "stopped"), ("start", "running")):
                        started = time.time()
                        post(f"http://{agent.http}/api/v1/services/{TARGET}/{verb}")
                        changes = transitions(database, started - 0.5, final)
                        time.sleep(0.8)  # for the pages to show it (nothing asks them meanwhile)
                        seen_hub = hub_page.evaluate("window.__hwStates.splice(0)")
                        seen_agent = agent_page.evaluate("window.__hwStates.splice(0)")
                        messages = hub_page.evaluate("window.__hwWs.splice(0)")
                        if not any(state == final for state, _ in seen_hub):
                            missed += 1
                        for state, at, stored in changes:
                            on_hub = first_shown(seen_hub, state, at)
                            on_agent = first_shown(seen_agent, state, at)
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


def transitions(database: str, since: float, final: str) -> list[tuple[str, float, float]]:
    """The target's transitions since ``since``, once the one to ``final`` is stored: (state,
    the agent's time, the hub's commit time: PostgreSQL's now() in the ingest's transaction)."""
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
        if any(state == final for state, _, _ in rows) or time.monotonic() > deadline:
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
