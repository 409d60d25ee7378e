"""A hang on one host of a fleet: the hub's events and history show it with that host, and the
hub's alert names the host; the fleet dashboard's row for it shows the failure."""

from __future__ import annotations

import time

import pytest

from e2e.fleet_support import Fleet, default_services, fleet, stored_entries
from e2e.support import wait_until, worker_command

pytestmark = pytest.mark.e2e

__all__ = ["fleet"]  # the fixture, used by name


def test_a_hang_on_host_b_shows_on_the_hub_with_host_b(fleet: Fleet) -> None:
    hub = fleet.start_hub()
    host_a, host_b = fleet.start_agents("host-a", "host-b")
    pids_a = host_a.wait_all_running()
    wait_until(
        lambda: hub.service("host-b", "collector") and hub.service("host-a", "collector"),
        "the hub to know both hosts' collectors",
        20,
    )
    hung_at = time.time()
    hung = host_b.hang("collector")
    host_b.wait_recovered("collector", hung)

    # The hub's events: host B's collector went unresponsive, under host B and only there.
    def hub_saw_it() -> list[dict[str, object]] | None:
        events = hub.events(host="host-b", service="collector", limit=200)
        found = [e for e in events if e["state"] == "unresponsive" and float(e["at"]) >= hung_at]
        return found or None

    found = wait_until(hub_saw_it, "the hang among the hub's events for host-b", 20, 0.2)
    assert all(e["host"] == "host-b" and e["type"] == "entry" for e in found)
    assert not [e for e in fleet_events(fleet, "host-a") if e.get("state") == "unresponsive"], (
        "host-a never hung"
    )
    assert host_a.wait_all_running() == pids_a

    # Its history (the same answer as the agent's /api/v1/history/{name}), from the hub's events.
    history = hub.get("/api/v1/hosts/host-b/history/collector", window="1h")
    states = [segment["state"] for segment in history["segments"]]
    assert "unresponsive" in states, history
    assert [i["reason"] for i in history["incidents"]] == ["no heartbeat for 1.0 s"], history
    agent_history = host_b.daemon.request("GET", "/api/v1/history/collector?window=1h")
    assert history["summary"]["incidents"] == agent_history["summary"]["incidents"] == 1
    assert len(history["recoveries"]) == len(agent_history["recoveries"])

    # The hub's alert names the host (and the service).
    alerts = wait_until(
        lambda: fleet.sink.matching("host-b", "collector"), "the hub's alert naming host-b", 20
    )
    assert not fleet.sink.matching("host-a"), fleet.sink.texts()
    assert any("down" in text.lower() for text in alerts), alerts

    # The hub's current state: host B's collector running again, with the agent's new pid and
    # restart count (its journal's "restart" entry carries both).
    wait_until(
        lambda: (s := hub.service("host-b", "collector")) and s["state"] == "running",
        "the hub to show host-b's collector running again",
        20,
    )
    agent_now = host_b.daemon.service("collector")
    wait_until(
        lambda: (
            (s := hub.service("host-b", "collector"))
            and (s["pid"], s["restarts"]) == (agent_now["pid"], agent_now["restarts"])
        ),
        f"the hub to show host-b's collector's new pid and restarts {agent_now['pid']}, "
        f"{agent_now['restarts']} (it shows {hub.service('host-b', 'collector')})",
        10,
    )


def fleet_events(fleet: Fleet, host: str) -> list[dict[str, object]]:
    return stored_entries(fleet.database, host)


# Arm an observer noting every state the row `selector` shows (rows may be rebuilt: the whole
# page is watched, not one element).
WATCH_ROW_JS = """
(selector) => {
  window.__hwStates = [];
  const note = () => {
    const state = document.querySelector(selector)?.dataset.state;
    if (state && window.__hwStates.at(-1) !== state) window.__hwStates.push(state);
  };
  note();
  new MutationObserver(note).observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"],
  });
}
"""


@pytest.mark.browser
def test_a_hang_on_host_b_shows_on_the_fleet_dashboard(fleet: Fleet) -> None:
    from browser.support import CHROMIUM_ARGS, find_chromium

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium: neither /usr/bin/chromium nor `chromium` on PATH")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    hub = fleet.start_hub()
    # Host B's collector ignores SIGTERM: once hung, it stays "restarting" for its 2 s stop
    # timeout, so even a hub that sends only the latest state shows the failure.
    slow = [dict(s) for s in default_services()]
    slow[0]["command"] = worker_command("--beat", "0.2", "--ignore-term")
    fleet.agent("host-b", services=slow)
    _, host_b = fleet.start_agents("host-a", "host-b")
    wait_until(lambda: hub.service("host-b", "collector"), "the hub to know host-b", 20)
    row = '.frow.svc[data-host="host-b"][data-service="collector"]'
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(20_000)
            context.add_init_script(f"localStorage.setItem('heartwatch.token', {fleet.token!r});")
            page = context.new_page()
            page.goto(hub.http_url + "/")
            page.wait_for_selector(f'{row}[data-state="running"]', state="attached")
            page.evaluate(WATCH_ROW_JS, row)
            hung = host_b.hang("collector")
            host_b.wait_recovered("collector", hung)
            page.wait_for_function(
                "() => window.__hwStates.some((s) => s === 'unresponsive' || s === 'restarting')"
                " && window.__hwStates.at(-1) === 'running'"
            )
            states = page.evaluate("window.__hwStates")
            assert states[0] == "running", states
            other = '.frow.svc[data-host="host-a"][data-service="collector"]'
            assert page.get_attribute(other, "data-state") == "running"
        finally:
            browser.close()
