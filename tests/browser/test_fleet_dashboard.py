"""The hub's fleet dashboard in a real Chromium against a real hub (``heartwatch hub``), fed
through the real broker by the agent protocol itself: this test publishes fleetwire envelopes
(snapshots, heartbeats, journal entries, command replies) as three agents would.

What must hold: the rows appear; a transition changes a row live and moves it first; a host
that falls silent goes unreachable and its services show "unknown" (grey, not red, not green);
search and the state filter narrow the bulk selection; a bulk restart asks for confirmation
naming the count and issues commands for exactly the filtered services (the hub's
GET /api/v1/commands says so); without a filter the count must be typed; a selection that
changes while its confirmation is open sends nothing; each command's reply
is shown on its row; the host's page shows its services and events; a hub gone is said as
"hub connection lost"; no console error, so no CSP violation, on the way.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from browser.support import ARTIFACTS, Watched
from e2e.fleet_support import Fleet, Hub, fleet  # noqa: F401 (fleet: the fixture)
from e2e.support import scaled, wait_until
from heartwatch.core import fleetcommands, fleetwire

expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect
pika = pytest.importorskip("pika", reason="pika is not installed")

pytestmark = pytest.mark.browser

SERVICES = ("a", "b", "collector@0", "collector@1")
HOSTS = {"farm-01": {"site": "sz"}, "farm-02": {"site": "sz"}, "lab-1": {"site": "ny"}}
HEARTBEAT_INTERVAL = 1.0


def ms(seconds: float) -> float:
    return scaled(seconds) * 1000


class Publisher:
    """One blocking connection to the broker, shared by the test and the heartbeat thread."""

    def __init__(self, url: str, exchange: str) -> None:
        self.exchange = exchange
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.lock = threading.Lock()

    def publish(self, envelope: fleetwire.Envelope, key: str) -> None:
        persistent = envelope.is_event
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2 if persistent else 1,
            expiration=None if persistent else str(int(3000 * HEARTBEAT_INTERVAL)),
        )
        with self.lock:
            self.channel.basic_publish(self.exchange, key, fleetwire.encode(envelope), properties)

    def close(self) -> None:
        with self.lock, contextlib.suppress(Exception):
            self.connection.close()


class FakeAgent:
    """What an agent says of itself over the broker: a boot, numbered events, reports."""

    def __init__(self, publisher: Publisher, host: str, labels: dict[str, str]) -> None:
        self.publisher = publisher
        self.host = host
        self.labels = labels
        self.boot = uuid.uuid4().hex
        self.seq = 0
        self.started_at = time.time()
        self.states = {name: "running" for name in SERVICES}
        self.alive = True

    def _send(self, kind: fleetwire.MessageType, body: dict[str, Any], seq: int) -> None:
        envelope = fleetwire.Envelope(kind, self.host, self.boot, seq, time.time(), body)
        self.publisher.publish(envelope, fleetwire.event_routing_key(envelope))

    def _report(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "config_hash": "c0ffee",
            "started_at": self.started_at,
            "version": "test",
            "heartbeat_interval": HEARTBEAT_INTERVAL,
        }

    def status(self, name: str) -> dict[str, Any]:
        state = self.states[name]
        running = state == "running"
        return {
            "name": name,
            "instance_of": "collector" if name.startswith("collector@") else None,
            "instance": int(name.split("@")[1]) if "@" in name else None,
            "state": state,
            "reason": "started" if running else "it failed",
            "since_age": 1.0,
            "uptime": 1.0 if running else None,
            "pid": 1000 + SERVICES.index(name) if running else None,
            "restarts": 0,
            "ready": running,
            "last_heartbeat_age": 0.2,
        }

    def snapshot(self) -> None:
        body = {**self._report(), "services": [self.status(name) for name in SERVICES]}
        self._send("snapshot", body, self.seq)

    def heartbeat(self) -> None:
        self._send("heartbeat", {**self._report(), "services": len(SERVICES)}, self.seq)

    def transition(self, name: str, state: str, reason: str) -> None:
        previous, self.states[name] = self.states[name], state
        self.seq += 1
        entry = {
            "id": self.seq,
            "at": time.time(),
            "kind": "transition",
            "service": name,
            "reason": reason,
            "state": state,
            "previous": previous,
            "detail": {"failure": state == "failed"},
        }
        self._send("entry", entry, self.seq)

    def reply(self, command: dict[str, Any], status: str, reason: str = "") -> None:
        self.seq += 1
        self._send("reply", fleetcommands.reply_body(command, status, reason), self.seq)  # type: ignore[arg-type]


@pytest.fixture
def agents(fleet: Fleet) -> Iterator[dict[str, FakeAgent]]:  # noqa: F811
    """Three agents' voices on one connection (their heartbeats: `start_beating`)."""
    publisher = Publisher(fleet.broker, fleet.exchange)
    try:
        yield {host: FakeAgent(publisher, host, labels) for host, labels in HOSTS.items()}
    finally:
        publisher.close()


def start_beating(agents: dict[str, FakeAgent], fleet: Fleet) -> threading.Event:  # noqa: F811
    """Heartbeats every second for every agent still `alive`, until the returned event is set."""
    stop = threading.Event()
    publisher = Publisher(fleet.broker, fleet.exchange)

    def beat() -> None:
        try:
            while not stop.wait(HEARTBEAT_INTERVAL):
                for agent in agents.values():
                    if not agent.alive:
                        continue
                    envelope = fleetwire.Envelope(
                        "heartbeat",
                        agent.host,
                        agent.boot,
                        agent.seq,
                        time.time(),
                        {**agent._report(), "services": len(SERVICES)},
                    )
                    with contextlib.suppress(Exception):
                        publisher.publish(envelope, fleetwire.event_routing_key(envelope))
        finally:
            publisher.close()

    threading.Thread(target=beat, daemon=True).start()
    return stop


# -- the page -------------------------------------------------------------------------------


# Recorded from before the page's own scripts run (an init script is not the page's: the CSP
# does not apply to it), read at the end.
CSP_WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective}: ${event.blockedURI}`);
});
"""


def open_fleet(watched: Watched, hub: Hub, path: str = "/") -> Any:
    page = watched.page
    page.add_init_script(CSP_WATCH)
    page.goto(hub.http_url + path)
    # The hub needs a token: the page asks for it once.
    page.locator("#token-input").fill(hub.token, timeout=ms(15))
    page.locator("#token-ok").click()
    expect(page.locator("#link")).to_have_attribute("data-link", "live", timeout=ms(15))
    return page


def problems(watched: Watched) -> list[str]:
    """Console errors, uncaught exceptions and CSP violations, but the one 401 by which the
    page learns that the hub needs a token (the prompt that follows is the design)."""
    found = [p for p in watched.problems() if "status of 401" not in p]
    return found + watched.page.evaluate("window.__violations")


def row(page: Any, host: str, service: str) -> Any:
    return page.locator(f'.frow.svc[data-host="{host}"][data-service="{service}"]')


def first_host(page: Any) -> str:
    return str(page.locator("#fleet .host").first.get_attribute("data-host"))


def commands_of(hub: Hub) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = hub.get("/api/v1/commands", limit=500)["commands"]
    return found


def search(page: Any, text: str) -> None:
    page.locator("#search").fill(text)


def test_fleet_dashboard_live(
    fleet: Fleet,  # noqa: F811
    agents: dict[str, FakeAgent],
    new_page: Any,
) -> None:
    """Rows, a live transition, unknown under an unreachable host, the filtered selection and
    its bulk restart, replies on the rows, the host's page, the hub gone; no console error."""
    hub = fleet.start_hub()
    stop = start_beating(agents, fleet)
    try:
        for agent in agents.values():
            agent.snapshot()
        wait_until(
            lambda: len(hub.fleet()["services"]) == len(HOSTS) * len(SERVICES),
            "the hub to know every service",
            scaled(20),
        )
        watched = new_page()
        page = open_fleet(watched, hub)

        # Every row, the instances under their [[service]]'s row, problems counted.
        expect(page.locator(".frow.svc")).to_have_count(len(HOSTS) * len(SERVICES))
        expect(page.locator('.host[data-host="farm-01"] .frow.instances')).to_have_count(1)
        expect(page.locator("#service-counts")).to_contain_text("12 running")

        # A transition: the row changes state live and moves first, its host first.
        agents["farm-02"].transition("b", "failed", "exited with code 3")
        expect(row(page, "farm-02", "b")).to_have_attribute("data-state", "failed", timeout=ms(10))
        assert first_host(page) == "farm-02"
        first_row = page.locator('.host[data-host="farm-02"] .frow.svc').first
        assert first_row.get_attribute("data-service") == "b"
        expect(row(page, "farm-02", "b").locator(".reason")).to_have_text("exited with code 3")
        # And the fleet's recent events have it on top, with its host.
        first_event = page.locator("#events .ev").first
        expect(first_event).to_contain_text("farm-02/b", timeout=ms(10))
        expect(first_event).to_contain_text("running → failed")
        expect(page.locator("#summary")).to_contain_text("1 service in trouble")

        # A host that falls silent: stale, then unreachable; its services unknown, in grey.
        agents["lab-1"].alive = False
        expect(page.locator('.host[data-host="lab-1"]')).to_have_attribute(
            "data-state", "unreachable", timeout=ms(20)
        )
        lab_a = row(page, "lab-1", "a")
        expect(lab_a).to_have_attribute("data-state", "unknown", timeout=ms(10))
        pill = lab_a.locator(".pill")
        colour = pill.evaluate("p => getComputedStyle(p).backgroundColor")
        assert colour in ("rgba(0, 0, 0, 0)", "transparent"), colour
        assert first_host(page) == "lab-1"  # an unreachable host comes first
        expect(page.locator("#service-counts")).to_contain_text("4 unknown")

        # Grouped by a label: one group per value, the one holding the unreachable host first.
        page.select_option("#group-by", "label:site")
        expect(page.locator(".fgroup")).to_have_count(2)
        expect(page.locator(".fgroup .fgroup-title")).to_have_text(["site=ny", "site=sz"])
        expect(page.locator(".fgroup").last).to_contain_text("2 hosts")
        page.select_option("#group-by", "host")
        expect(page.locator(".fgroup")).to_have_count(0)

        # The search narrows the selection; the state filter narrows it further.
        search(page, "host:farm-*")
        expect(page.locator("#selection-text")).to_contain_text("Selection: 8 services")
        expect(page.locator(".frow.svc")).to_have_count(8)
        page.select_option("#state-filter", "running")
        expect(page.locator("#selection-text")).to_contain_text("Selection: 7 services")
        page.select_option("#state-filter", "")
        search(page, "host:farm-* service:collector*")
        expect(page.locator("#selection-text")).to_contain_text("Selection: 4 services")
        expect(page.locator("#bulk-restart")).to_have_text("Restart 4")
        assert "q=host%3Afarm-*+service%3Acollector*" in page.url  # the filters in the address

        # A bulk restart: confirmed with its count, commands for exactly those four.
        before = {c["id"] for c in commands_of(hub)}
        page.locator("#bulk-restart").click()
        expect(page.locator("#confirm-title")).to_have_text("Restart 4 services?")
        expect(page.locator("#confirm-count-field")).to_be_hidden()  # filtered: no typing
        expect(page.locator("#confirm-list li")).to_have_count(4)
        page.locator("#confirm-ok").click()
        expect(page.locator("#bulk-status")).to_contain_text("restart of 4", timeout=ms(10))
        wait_until(
            lambda: len([c for c in commands_of(hub) if c["id"] not in before]) == 4,
            "four commands on the hub",
            scaled(10),
        )
        issued = [c for c in commands_of(hub) if c["id"] not in before]
        assert sorted(f"{c['host']}/{c['service']}" for c in issued) == [
            "farm-01/collector@0",
            "farm-01/collector@1",
            "farm-02/collector@0",
            "farm-02/collector@1",
        ]
        assert {c["verb"] for c in issued} == {"restart"}

        # The replies: shown on the rows that issued them, and summed up on the bar.
        by_target = {f"{c['host']}/{c['service']}": c for c in issued}
        for target, command in by_target.items():
            host = target.split("/")[0]
            agents[host].reply(command, "accepted")
        done = by_target["farm-01/collector@0"]
        agents["farm-01"].reply(done, "done")
        failed = by_target["farm-02/collector@1"]
        agents["farm-02"].reply(failed, "failed", "it did not stop in time")
        expect(row(page, "farm-01", "collector@0").locator(".command")).to_have_text(
            "restart done", timeout=ms(10)
        )
        failed_cell = row(page, "farm-02", "collector@1").locator(".command")
        expect(failed_cell).to_have_text("restart failed", timeout=ms(10))
        assert "it did not stop in time" in str(failed_cell.get_attribute("title"))
        expect(row(page, "farm-01", "collector@1").locator(".command")).to_have_text(
            "restart accepted"
        )
        expect(page.locator("#bulk-status")).to_contain_text("1 failed", timeout=ms(10))

        # No filter: the whole fleet, whose size must be typed; cancelled, nothing is sent.
        search(page, "")
        expect(page.locator("#selection-text")).to_contain_text("no filter: the whole fleet")
        page.locator("#bulk-restart").click()
        expect(page.locator("#confirm-count-field")).to_be_visible()
        expect(page.locator("#confirm-ok")).to_be_disabled()
        page.locator("#confirm-count").fill("11")
        expect(page.locator("#confirm-ok")).to_be_disabled()
        page.locator("#confirm-count").fill("12")
        expect(page.locator("#confirm-ok")).to_be_enabled()
        page.locator("#confirm-cancel").click()
        time.sleep(0.5)
        assert len(commands_of(hub)) == len(before) + 4

        # The selection changes while its confirmation is open: nothing is sent, it says why.
        page.select_option("#state-filter", "failed")
        expect(page.locator("#selection-text")).to_contain_text("Selection: 1 service ")
        page.locator("#bulk-stop").click()
        expect(page.locator("#confirm-title")).to_have_text("Stop 1 service?")
        agents["farm-02"].transition("b", "running", "restarted")
        expect(page.locator("#selection-text")).to_contain_text("Selection: 0 services")
        page.locator("#confirm-ok").click()
        expect(page.locator("#notice-text")).to_contain_text("The selection changed")
        expect(page.locator("#bulk-stop")).to_be_disabled()  # nothing to act on
        time.sleep(0.5)
        assert len(commands_of(hub)) == len(before) + 4
        page.locator("#notice-close").click()
        page.select_option("#state-filter", "")

        page.screenshot(path=str(ARTIFACTS / "fleet-dashboard.png"), full_page=True)
        assert problems(watched) == []

        # The hub goes away: the page says so, honestly.
        hub.kill()
        expect(page.locator("#link")).to_contain_text("hub connection lost", timeout=ms(10))
        expect(page.locator("#link")).to_have_attribute("data-link", "down")
        assert "stale" in str(page.locator("body").get_attribute("class"))
    finally:
        stop.set()


def test_fleet_host_page(
    fleet: Fleet,  # noqa: F811
    agents: dict[str, FakeAgent],
    new_page: Any,
) -> None:
    """A host's page: its facts, its services, its events, its state strips, live."""
    hub = fleet.start_hub()
    stop = start_beating(agents, fleet)
    try:
        agent = agents["farm-01"]
        agent.snapshot()
        agent.transition("a", "failed", "exited with code 1")
        wait_until(
            lambda: (hub.service("farm-01", "a") or {}).get("state") == "failed",
            "the hub to know farm-01/a failed",
            scaled(20),
        )
        watched = new_page()
        page = open_fleet(watched, hub, "/hosts/farm-01")
        expect(page.locator("#host-title")).to_have_text("farm-01")
        expect(page.locator('#host-facts [data-fact="labels"] dd')).to_have_text("site=sz")
        expect(page.locator(".frow.svc")).to_have_count(len(SERVICES))
        expect(row(page, "farm-01", "a")).to_have_attribute("data-state", "failed")
        expect(page.locator("#events .ev").first).to_contain_text(
            "running → failed", timeout=ms(10)
        )
        # Live: a recovery reaches the row and the event list without a reload.
        agent.transition("a", "running", "restarted")
        expect(row(page, "farm-01", "a")).to_have_attribute("data-state", "running", timeout=ms(10))
        expect(page.locator("#events .ev").first).to_contain_text(
            "failed → running", timeout=ms(10)
        )
        # The strips: one per service with history, from the hub's history answer.
        expect(
            page.locator('#strips .strip-block[data-service="a"] rect.seg').first
        ).to_be_attached(timeout=ms(10))
        page.screenshot(path=str(ARTIFACTS / "fleet-host-page.png"), full_page=True)
        assert problems(watched) == []
    finally:
        stop.set()


XSS_LINE = "<img src=x onerror=alert(1)>"


def answer_tail(fleet: Fleet, host: str, lines: list[str], timeout: float) -> dict[str, Any]:  # noqa: F811
    """Be `host`'s agent for one tail: take the hub's tail command from the host's command
    queue and publish `lines` on the fleet exchange under the stream's key
    (`<host>.<service>.log.<stream>`), as the agent streams a log; its args."""
    connection = pika.BlockingConnection(pika.URLParameters(fleet.broker))
    try:
        channel = connection.channel()
        name = fleetwire.command_queue(fleet.exchange, host)
        # Declared as the hub and the agent both declare it (the same arguments).
        channel.queue_declare(
            name, durable=True, arguments=fleetwire.command_queue_arguments(fleet.exchange)
        )
        deadline = time.monotonic() + timeout
        while True:
            method, _properties, body = channel.basic_get(name, auto_ack=True)
            if method is not None:
                command, _signature = fleetcommands.parse(body)
                if command.verb == "tail":
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"no tail command for {host} within {timeout:g} s")
            time.sleep(0.05)
        assert command.service is not None
        key = fleetwire.log_routing_key(host, command.service, str(command.args["stream"]))
        for line in lines:
            channel.basic_publish(
                fleet.exchange,
                key,
                json.dumps({"line": line}).encode(),
                pika.BasicProperties(content_type="application/json"),
            )
        return dict(command.args) | {"service": command.service}
    finally:
        connection.close()


def test_fleet_live_log(
    fleet: Fleet,  # noqa: F811
    agents: dict[str, FakeAgent],
    new_page: Any,
) -> None:
    """A service's name opens its live log through the hub: the agent's lines arrive, as text
    (a line that looks like markup stays text), in the agent's log panel."""
    hub = fleet.start_hub()
    stop = start_beating(agents, fleet)
    try:
        agents["farm-01"].snapshot()
        wait_until(
            lambda: hub.service("farm-01", "b") is not None, "the hub to know farm-01", scaled(20)
        )
        watched = new_page()
        page = open_fleet(watched, hub)
        found: dict[str, Any] = {}
        errors: list[BaseException] = []

        def agent_side() -> None:
            try:
                found.update(answer_tail(fleet, "farm-01", ["first line", XSS_LINE], scaled(15)))
            except BaseException as error:  # the main thread reports it
                errors.append(error)

        thread = threading.Thread(target=agent_side, daemon=True)
        thread.start()
        row(page, "farm-01", "b").locator(".svc-name").click()
        expect(row(page, "farm-01", "b")).to_have_class(re.compile(r"\bselected\b"))
        thread.join(scaled(20))
        assert not errors, errors
        assert found["service"] == "b"
        view = page.locator("#log-view")
        expect(view.locator(".line", has_text="first line")).to_have_count(1, timeout=ms(10))
        expect(view.locator(".line", has_text=XSS_LINE)).to_have_count(1, timeout=ms(10))
        assert view.locator("img").count() == 0
        expect(page.locator("#log-status")).to_contain_text("following farm-01/b")
        assert problems(watched) == []
    finally:
        stop.set()


def test_fleet_read_only(
    fleet: Fleet,  # noqa: F811
    agents: dict[str, FakeAgent],
    new_page: Any,
) -> None:
    """With the read token the page shows everything and offers no action."""
    read_token = uuid.uuid4().hex
    hub = fleet.start_hub(read_token=read_token)
    stop = start_beating(agents, fleet)
    try:
        agents["farm-01"].snapshot()
        wait_until(
            lambda: hub.service("farm-01", "a") is not None, "the hub to know farm-01", scaled(20)
        )
        watched = new_page()
        page = watched.page
        page.add_init_script(CSP_WATCH)
        page.goto(hub.http_url + "/")
        page.locator("#token-input").fill(read_token, timeout=ms(15))
        page.locator("#token-ok").click()
        expect(page.locator("#link")).to_have_attribute("data-link", "live", timeout=ms(15))
        expect(page.locator(".frow.svc")).to_have_count(len(SERVICES))
        assert "read-only" in str(page.locator("body").get_attribute("class"))
        expect(page.locator(".bulk")).to_be_hidden()
        expect(row(page, "farm-01", "a").locator(".act-restart")).to_be_hidden()
        assert problems(watched) == []
    finally:
        stop.set()
