"""Live reload with a real daemon: an invalid file refused whole, a valid one applied as a
difference (the untouched service keeps its process and its heartbeat connection), SIGHUP."""

from __future__ import annotations

import signal

import psutil
import pytest

from e2e.support import Pipeline, alive, capture, wait_until, worker_command

pytestmark = pytest.mark.e2e


def heartbeat_connection(pid: int) -> tuple[str, int]:
    """The local address of the one TCP connection ``pid`` beats on."""

    def find() -> tuple[str, int] | None:
        tcp = [c for c in psutil.Process(pid).net_connections("tcp") if c.raddr]
        return (tcp[0].laddr.ip, tcp[0].laddr.port) if len(tcp) == 1 else None

    return wait_until(find, f"pid {pid}'s heartbeat connection")


# startsecs = 0: ready once running, so that the test does not wait a second per start.
STEADY = {
    "name": "steady",
    "command": worker_command("--beat", "0.1"),
    "heartbeat_timeout": "3s",
    "startsecs": 0,
}
BASE = {"name": "base", "command": worker_command(), "stop_timeout": "2s", "startsecs": 0}
TOP = {**BASE, "name": "top", "requires": ["base"]}
OLD = {**BASE, "name": "old"}
OLD_TOP = {**BASE, "name": "old_top", "requires": ["old"]}


def test_reload_applies_a_difference_and_refuses_an_invalid_file(pipeline: Pipeline) -> None:
    """Invalid: refused whole, every problem at its path, nothing touched. Valid: added starts,
    removed stops (dependents first), changed restarts with its dependents, the untouched
    service keeps its pid and its heartbeat connection. SIGHUP reloads the same way."""
    pipeline.write_config([STEADY, BASE, TOP, OLD, OLD_TOP])
    daemon = pipeline.start_daemon()
    pids = {name: daemon.wait_running(name)["pid"] for name in ("steady", "base", "top", "old")}
    daemon.wait_running("old_top")
    steady_connection = heartbeat_connection(pids["steady"])

    pipeline.write_config([{**STEADY, "stop_timeout": "soon", "bogus": 1}, BASE, TOP])
    status, body = daemon.post_json("/api/v1/reload")
    assert status == 422 and body["code"] == "invalid_config"
    assert sorted(p["path"] for p in body["problems"]) == [
        "service[0] (steady).bogus",
        "service[0] (steady).stop_timeout",
    ]
    assert {s["name"]: s["pid"] for s in daemon.services()} == {
        **pids,
        "old_top": daemon.service("old_top")["pid"],
    }
    wait_until(lambda: "reload refused" in daemon.log_text(), "the refusal in the log")

    new = {**BASE, "name": "new"}
    pipeline.write_config([STEADY, {**BASE, "env": {"MODE": "2"}}, TOP, new])
    status, body = daemon.post_json("/api/v1/reload")
    assert status == 200, body
    assert body == {
        "added": ["new"],
        "removed": ["old", "old_top"],
        "changed": ["base"],
        "unchanged": ["steady"],
        "restarted": ["top"],
        "needs_daemon_restart": [],
        "overrides": {},
        "warnings": [],
    }
    daemon.wait_running("new")
    for name in ("base", "top"):
        daemon.wait_service(name, lambda s, n=name: s["pid"] not in (None, pids[n]), "a new run")
        daemon.wait_running(name)
    wait_until(
        lambda: {s["name"] for s in daemon.services()} == {"steady", "base", "top", "new"},
        "the removed services gone",
    )
    stopped = [e.service for e in pipeline.events("stop") if e.service in ("old", "old_top")]
    assert stopped == ["old_top", "old"]
    steady = daemon.service("steady")
    assert steady["pid"] == pids["steady"] and steady["restarts"] == 0
    assert heartbeat_connection(pids["steady"]) == steady_connection
    assert daemon.raw("GET", "/api/v1/services/old")[0] == 404

    def journaled() -> bool:
        events = daemon.request("GET", "/api/v1/events?limit=100")["events"]
        reasons = [e["reason"] for e in events if e["kind"] == "reload"]
        return any(r.startswith("reload: added new; changed base;") for r in reasons)

    wait_until(journaled, "the reload in the history")

    # SIGHUP: the same reload; a listen address changed is reported, not applied.
    pipeline.write_config(
        [STEADY, {**BASE, "env": {"MODE": "2"}}, TOP], server={"tcp": "127.0.0.1:1"}
    )
    new_process = capture(daemon.service("new")["pid"])
    daemon.popen.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: removed new" in daemon.log_text(), "the SIGHUP reload logged")
    assert "needs a daemon restart for server.tcp" in daemon.log_text()
    wait_until(lambda: not alive(new_process), "the removed service's process gone")
    assert daemon.service("steady")["pid"] == pids["steady"]
    assert heartbeat_connection(pids["steady"]) == steady_connection


# Ignores SIGTERM: its stop lasts its whole stop_timeout, then it is killed.
GHOST = {
    "name": "ghost",
    "command": "sh -c 'trap \"\" TERM; while :; do sleep 0.2; done'",
    "stop_timeout": "2s",
    "startsecs": 0,
}


def test_reloads_in_a_row_while_a_removed_service_stops(pipeline: Pipeline) -> None:
    """Review 11, items 1 and 3: removed, added back and removed again while its process
    still stops, the last reload says it is removed and it is gone for good once its process
    is; meanwhile start and restart of `all` act on what is configured only, and naming it
    to start or restart is refused whole, before anything is done."""
    pipeline.write_config([BASE, GHOST])
    daemon = pipeline.start_daemon()
    base_pid = daemon.wait_running("base")["pid"]
    ghost = capture(daemon.wait_running("ghost")["pid"])
    removed: list[list[str]] = []
    for services in ([BASE], [BASE, GHOST], [BASE]):
        pipeline.write_config(services)
        status, body = daemon.post_json("/api/v1/reload")
        assert status == 200, body
        removed.append(body["removed"])
    assert removed == [["ghost"], [], ["ghost"]]
    assert daemon.service("ghost")["state"] == "stopping"

    status, body = daemon.post_json("/api/v1/control/start", {"names": ["all"]})
    assert (status, [s["name"] for s in body]) == (200, ["base"])
    status, body = daemon.post_json("/api/v1/control/restart", {"names": ["base", "ghost"]})
    assert status == 404 and "removed by a reload" in body["message"], body
    assert daemon.post_json("/api/v1/services/ghost/restart")[0] == 404
    assert daemon.service("base")["pid"] == base_pid  # not half done

    wait_until(lambda: not alive(ghost), "the removed service's process gone")
    wait_until(
        lambda: [s["name"] for s in daemon.services()] == ["base"], "the removed service gone"
    )
    assert "cannot carry out" not in daemon.log_text()
    assert daemon.terminate() == 0
