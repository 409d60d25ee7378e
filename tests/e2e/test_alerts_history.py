"""Alerts to a real webhook receiver, and history that outlives the daemon.

The receiver is a plain HTTP server on 127.0.0.1 port 0 taking apprise's JSON webhook
(``json://``), exactly as a chat bridge or an incident tool would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from e2e.support import Pipeline, duration, scaled, send_tcp, wait_until, worker_command

pytestmark = pytest.mark.e2e


class Receiver:
    """Collects the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def titles(self) -> list[str]:
        return [body["title"] for body in self.bodies]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def notify(receiver: Receiver) -> dict[str, dict[str, Any]]:
    return {"notify": {"urls": [receiver.url], "retry_delay": "0.2s", "recovered_after": "0.5s"}}


def test_webhook_gets_down_recovered_and_gave_up_once_each(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    """A hang recovers (down, recovered); a crash loop gives up (down, gave up); once each."""
    hang = {
        "name": "hang",
        "command": worker_command("--beat", "0.1"),
        "heartbeat_timeout": duration(1.0),
        "stop_timeout": duration(0.5),
    }
    crash = {
        "name": "crash",
        "command": worker_command("--exit-now", "1"),
        "heartbeat_timeout": duration(60),  # ready only at a first message, which never comes
        "max_restarts": 2,
        "backoff_initial": "0.1s",
        "backoff_max": "0.2s",
    }
    pipeline.write_config([hang, crash], extra=notify(receiver))
    daemon = pipeline.start_daemon()
    pid = daemon.wait_running("hang")["pid"]
    os.kill(pid, signal.SIGSTOP)
    daemon.wait_service("hang", lambda s: s["pid"] not in (None, pid), "restarted")
    daemon.wait_running("hang")
    daemon.wait_service("crash", lambda s: s["state"] == "failed", "failed")
    expected = {
        "heartwatch: hang is down",
        "heartwatch: hang recovered",
        "heartwatch: crash is down",
        "heartwatch: crash failed: heartwatch gave up restarting it",
    }
    wait_until(lambda: set(receiver.titles()) >= expected, "four alerts", timeout=15)
    down = next(b for b in receiver.bodies if b["title"] == "heartwatch: hang is down")
    assert down["type"] == "warning" and "no heartbeat for" in down["message"]
    recovered = next(b for b in receiver.bodies if b["title"] == "heartwatch: hang recovered")
    assert recovered["type"] == "success" and "running again after" in recovered["message"]
    gave_up = next(b for b in receiver.bodies if "gave up" in b["title"])
    assert gave_up["type"] == "failure" and "gave up after 2 restarts" in gave_up["message"]

    # An alert is journaled once its send is done, which the receiver may see first: wait for
    # the four entries (stored from the journal in the recorder's thread).
    def journaled() -> list[dict[str, Any]] | None:
        found = daemon.request("GET", "/api/v1/events?limit=1000")["events"]
        return found if sum(e["kind"] == "alert" for e in found) >= 4 else None

    events = wait_until(journaled, "four alerts in the journal")
    restarts = [e["reason"] for e in events if e["kind"] == "restart" and e["service"] == "crash"]
    # The cause, not "waiting": an exit at once is a failed start (within startsecs).
    assert restarts and set(restarts) == {"exited within startsecs 1 s: exit code 1"}, restarts
    alerts = [e for e in events if e["kind"] == "alert"]
    assert sorted((e["service"], e["detail"]["alert"]) for e in alerts) == [
        ("crash", "down"),
        ("crash", "gave_up"),
        ("hang", "down"),
        ("hang", "recovered"),
    ]
    assert {e["detail"]["outcome"] for e in alerts} == {"sent"}
    # Down since its last heartbeat, a heartbeat_timeout before the hang was noticed; the
    # restart itself takes a fraction of that (it used to be all the downtime said).
    hang_recovered = next(e for e in alerts if e["detail"]["alert"] == "recovered")
    assert hang_recovered["detail"]["downtime"] >= scaled(1.0), hang_recovered
    noticed = next(
        e
        for e in events
        if e["kind"] == "transition" and e["service"] == "hang" and e["state"] == "unresponsive"
    )
    assert noticed["at"] - noticed["detail"]["down_since"] >= scaled(1.0), noticed
    status, _, body = daemon.raw("GET", "/metrics")
    assert status == 200
    assert 'heartwatch_alerts_total{alert="down",outcome="sent"} 2.0' in body.decode()
    # Nothing more came: the daemon sends what it decided before it exits (its stop alerts
    # nobody), so once it is gone, everything it would have sent is here.
    assert daemon.terminate() == 0
    assert sorted(receiver.titles()) == sorted(expected)


def test_undeliverable_alert_is_retried_then_recorded_as_failed(pipeline: Pipeline) -> None:
    """A receiver that is not there: retries, then a failed alert, and the daemon carries on."""
    dead = {"urls": ["json://127.0.0.1:9/hook"], "retries": 1, "retry_delay": "0.1s"}
    crash = {"name": "crash", "command": worker_command("--exit-now", "1"), "max_restarts": 0}
    pipeline.write_config([crash], extra={"notify": dead})
    daemon = pipeline.start_daemon()

    def failed_alerts() -> list[dict[str, Any]] | None:
        events = daemon.request("GET", "/api/v1/events?service=crash")["events"]
        found = [e for e in events if e["kind"] == "alert" and e["detail"]["outcome"] == "failed"]
        return found or None

    found = wait_until(failed_alerts, "a failed alert", timeout=20)
    assert found[0]["detail"]["alert"] in ("down", "gave_up")
    assert daemon.service("crash")["state"] == "failed"
    log = daemon.log_text()
    assert "not delivered" in log and "127.0.0.1:9" not in log  # URLs stay out of logs


def test_history_survives_a_daemon_restart_without_alerts_or_restarts(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    """Events and counts stay; the new daemon's ids go on; its own restart alerts nobody."""
    beater = {"name": "beater", "command": worker_command("--beat", "0.05")}
    pipeline.write_config([beater], extra=notify(receiver))
    daemon = pipeline.start_daemon()
    daemon.wait_running("beater")
    daemon.control("beater", "restart")
    daemon.wait_service(
        "beater",
        lambda s: (s["restarts"], s["restarts_requested"], s["state"]) == (0, 1, "running"),
        "up again, a restart asked for (not a recovery)",
    )
    wait_until(lambda: daemon.service("beater")["messages"] > 5, "some heartbeats")
    before = daemon.request("GET", "/api/v1/events?limit=1000")["events"]
    assert any(e["kind"] == "restart" and e["reason"] == "restart requested" for e in before)
    assert daemon.terminate() == 0
    daemon_after = pipeline.start_daemon()
    counted = sum(p["counts"].get("heartbeat", 0) for p in _series_of(daemon_after, "beater"))
    assert counted > 5, "the first daemon's heartbeats were not kept"
    daemon_after.wait_running("beater")
    after = daemon_after.request("GET", "/api/v1/events?limit=1000")["events"]
    old_ids = {e["id"] for e in before}
    assert old_ids <= {e["id"] for e in after}, "events of the first daemon are gone"
    new = [e for e in after if e["id"] not in old_ids]
    assert min(e["id"] for e in new) > max(old_ids)
    reasons = [e["reason"] for e in new if e["kind"] == "daemon"]
    assert any(r == "heartwatch stopping" for r in reasons)
    assert any(r.startswith("heartwatch started") for r in reasons)
    assert daemon_after.service("beater")["restarts"] == 0
    assert not [e for e in after if e["kind"] == "alert"]
    # Once the second daemon has exited, everything it would have sent has been sent.
    assert daemon_after.terminate() == 0
    assert receiver.bodies == []


def _series_of(daemon: Any, name: str) -> list[dict[str, Any]]:
    series = daemon.request("GET", f"/api/v1/services/{name}/series?since=0")
    assert series["service"] == name and series["step"] == 60
    points: list[dict[str, Any]] = series["points"]
    assert all(p["at"] % 60 == 0 for p in points)
    return points


def test_events_websocket_streams_snapshot_then_changes(pipeline: Pipeline) -> None:
    """``/ws/events``: a snapshot first, then each transition with the service's status."""
    import asyncio

    from websockets.asyncio.client import connect

    beater = {"name": "beater", "command": worker_command("--beat", "0.05")}
    pipeline.write_config([beater])
    daemon = pipeline.start_daemon()
    first_pid = daemon.wait_running("beater")["pid"]
    url = "ws" + daemon.http_url.removeprefix("http") + "/ws/events"

    async def main() -> list[dict[str, Any]]:
        async with asyncio.timeout(scaled(20)), connect(url) as websocket:
            snapshot = json.loads(await websocket.recv())
            assert snapshot["type"] == "snapshot"
            assert [s["name"] for s in snapshot["services"]] == ["beater"]
            assert snapshot["events"][0]["id"] > snapshot["events"][-1]["id"]
            await asyncio.to_thread(daemon.control, "beater", "restart")
            seen: list[dict[str, Any]] = []
            while not any(
                m["type"] == "event"
                and m["event"]["state"] == "running"
                and m["service"]["pid"] != first_pid
                for m in seen
            ):
                seen.append(json.loads(await websocket.recv()))
            return seen

    messages = asyncio.run(main())
    events = [m["event"] for m in messages if m["type"] == "event"]
    states = [e["state"] for e in events if e["kind"] == "transition"]
    assert states[0] == "restarting" and states[-1] == "running"
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)


def test_notify_test_reports_each_url(pipeline: Pipeline, receiver: Receiver) -> None:
    """``heartwatch notify-test``: a message through each URL; an unreachable one exits 1."""
    pipeline.write_config(
        [], extra={"notify": {"urls": [receiver.url, "json://127.0.0.1:9/none"], "timeout": 5}}
    )
    result = subprocess.run(
        [sys.executable, "-m", "heartwatch", "notify-test", "-c", str(pipeline.config_path)],
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )
    assert result.returncode == 1, result.stderr
    assert "notify.urls[0] (json://…): delivered" in result.stdout
    assert "notify.urls[1] (json://…): not delivered" in result.stdout
    assert receiver.titles() == ["heartwatch: test"]


def test_metrics_in_prometheus_format(pipeline: Pipeline) -> None:
    """``/metrics``: state, up, restarts, heartbeat age, data by kind, ingest and errors."""
    from prometheus_client.parser import text_string_to_metric_families

    watched = {"name": "watched", "heartbeat_timeout": "1h"}
    pipeline.write_config([watched])
    daemon = pipeline.start_daemon()
    for line in (
        b'{"type":"heartbeat","service":"watched"}\n',
        b'{"type":"poiid","service":"watched","dat":{"id":1}}\n',
        b'{"type":"poiid","service":"watched"}\n',
        b"not json\n",
    ):
        send_tcp(daemon.tcp_address, line)
    wait_until(lambda: daemon.service("watched")["messages"] == 3, "three messages")
    status, headers, body = daemon.raw("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    service = (("service", "watched"),)
    assert samples["heartwatch_service_state", (*service, ("state", "running"))] == 1
    assert samples["heartwatch_service_state", (*service, ("state", "failed"))] == 0
    assert samples["heartwatch_service_up", service] == 1
    assert samples["heartwatch_service_restarts_total", service] == 0
    assert 0 <= samples["heartwatch_service_last_heartbeat_age_seconds", service] < 60
    assert samples["heartwatch_data_events_total", (("kind", "poiid"), *service)] == 2
    assert samples["heartwatch_ingest_messages_total", (("transport", "tcp"),)] == 3
    assert samples["heartwatch_ingest_errors_total", (("code", "json"), ("transport", "tcp"))] == 1
    assert samples["heartwatch_ingest_connections_closed_total", (("why", "evicted"),)] == 0
    assert samples["heartwatch_ingest_connections_closed_total", (("why", "refused"),)] == 0
    assert samples["heartwatch_ingest_accept_pauses_total", ()] == 0
