"""Programs speaking other liveness protocols, unchanged: systemd notify and Healthchecks pings."""

from __future__ import annotations

import shutil
import socket
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

from e2e.support import Pipeline, duration, wait_until
from heartwatch.daemon.statedir import StateDir

pytestmark = pytest.mark.e2e

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def notify_service(name: str, command: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "command": command,
        "ready": "notify",
        "startup_grace": duration(10),
        "heartbeat_timeout": duration(1.0),
        "max_restarts": 10,
    }


@pytest.mark.skipif(shutil.which("systemd-notify") is None, reason="no systemd-notify command")
def test_systemd_notify_command_drives_ready_and_watchdog(pipeline: Pipeline) -> None:
    """systemd-notify --ready and WATCHDOG=1 make it running; when the pings stop, it restarts."""
    script = (
        "sleep 0.2; systemd-notify --ready --status=booted; "
        "for i in 1 2 3 4 5 6 7 8; do systemd-notify WATCHDOG=1; sleep 0.1; done; sleep 600"
    )
    pipeline.write_config([notify_service("shell", ["sh", "-c", script])])
    daemon = pipeline.start_daemon()
    status = daemon.wait_running("shell")
    assert status["reason"] == "said it is ready"
    assert daemon.wait_service("shell", lambda s: s["status"] == "booted", "status text")
    daemon.wait_service("shell", lambda s: s["restarts"] >= 1, "restarted after pings stop", 20)
    assert "no heartbeat for" in daemon.log_text()


def test_sdnotify_package_drives_ready_watchdog_and_events(pipeline: Pipeline) -> None:
    """The sdnotify package: READY=1, STATUS, WATCHDOG=1 and X_HEARTWATCH_EVENT work as sent."""
    pytest.importorskip("sdnotify")
    code = (
        "import sdnotify, time\n"
        "n = sdnotify.SystemdNotifier()\n"
        "time.sleep(0.2)\n"
        "n.notify('READY=1\\nSTATUS=consuming')\n"
        "for i in range(3): n.notify('X_HEARTWATCH_EVENT=poiid')\n"
        "while True:\n"
        "    n.notify('WATCHDOG=1')\n"
        "    time.sleep(0.1)\n"
    )
    pipeline.write_config([notify_service("py", [sys.executable, "-c", code])])
    daemon = pipeline.start_daemon()
    daemon.wait_running("py")
    status = daemon.wait_service("py", lambda s: s["data"].get("poiid", {}).get("count") == 3, "3")
    assert status["status"] == "consuming"
    first_pid = status["pid"]
    wait_until(lambda: daemon.service("py")["messages"] >= 20, "watchdog pings keep coming", 10)
    assert daemon.service("py")["pid"] == first_pid
    assert daemon.service("py")["state"] == "running"


def test_notify_from_outside_the_service_tree_is_dropped(pipeline: Pipeline) -> None:
    """A READY=1 from a process outside every service is dropped and counted."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    pipeline.write_config([notify_service("waiter", sleeper)])
    daemon = pipeline.start_daemon()
    daemon.wait_service("waiter", lambda s: s["state"] == "starting", "starting")
    address = "\0heartwatch-" + StateDir(pipeline.state_dir).state_id
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"READY=1", address)

    def dropped() -> int:
        errors = daemon.request("GET", "/api/v1/ingest")["errors"]
        return sum(e["count"] for e in errors if e["code"] == "unknown_sender")

    wait_until(lambda: dropped() == 1, "the foreign datagram counted", 10)
    status = daemon.service("waiter")
    assert (status["state"], status["restarts"]) == ("starting", 0)


def ping(base: str, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(base + path, data=body, method=method)
    try:
        with _HTTP.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_http_pings_work_as_curl_lines_expect(pipeline: Pipeline) -> None:
    """GET/HEAD/POST pings: OK for known services, 404 unknown, 400 bad code; bodies kept."""
    pipeline.write_config([{"name": "backup", "heartbeat_timeout": duration(60)}])
    daemon = pipeline.start_daemon()
    base = daemon.http_url
    assert ping(base, "/ping/backup") == (200, "OK")
    assert ping(base, "/ping/backup", "HEAD")[0] == 200
    assert ping(base, "/ping/backup/start") == (200, "OK")
    assert ping(base, "/ping/backup/report", "POST", b"x" * 20_000) == (200, "OK")
    assert ping(base, "/ping/nobody") == (404, "not found")
    assert ping(base, "/ping/backup/999")[0] == 400
    status = daemon.wait_service("backup", lambda s: "report" in s["data"], "report event")
    assert status["data"]["report"]["last_data"] == "x" * 10_000
    assert status["state"] == "running"
    assert ping(base, "/ping/backup/3") == (200, "OK")
    daemon.wait_service("backup", lambda s: s["restarts"] == 1, "recovered after exit code 3")
    assert "reported failure: exit code 3" in daemon.log_text()
