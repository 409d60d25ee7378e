"""Probes end to end: real processes, a fake ``adb`` and ``frida-ps`` first on the daemon's PATH.

The fakes (``tests/fakes/``) play a device whose state is a file the test rewrites: it boots
(offline, then device with ``sys.boot_completed`` 0, then 1 with the package manager still
down, then up), goes offline, and frida-server hangs. The pipeline is the one the issue names:
an emulator (a ``sleep``, as heartwatch would run ``emulator -avd ...``) ready only when it has
really booted, and frida-server that starts only then and is checked with ``frida-ps``.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from e2e.support import Daemon, Pipeline, alive, duration, hold_still, wait_until

pytestmark = pytest.mark.e2e

FAKES = Path(__file__).resolve().parents[1] / "fakes"
BOOTED = (
    "sh -c 'adb -s emulator-5554 shell getprop sys.boot_completed | grep -qx 1"
    " && adb -s emulator-5554 shell pm path android'"
)


# The recipe's liveness check (docs/recipes.md): the first rung of the ladder inside it.
LADDER = (
    "sh -c 'adb -s emulator-5560 get-state | grep -qx device"
    " || { adb reconnect offline; adb -s emulator-5560 get-state | grep -qx device; }'"
)


def set_device(path: Path, **state: str) -> None:
    """Rewrite the fake device's state file (the fakes read it at each call)."""
    current = dict(line.split("=", 1) for line in path.read_text().split()) if path.exists() else {}
    current.update(state)
    path.write_text("".join(f"{key}={value}\n" for key, value in current.items()))


def calls(path: Path) -> list[str]:
    try:
        return Path(f"{path}.calls").read_text().splitlines()
    except FileNotFoundError:
        return []


def journal(daemon: Daemon, service: str) -> list[dict[str, Any]]:
    """The service's journal entries, oldest first."""
    page = daemon.request("GET", f"/api/v1/events?service={service}&limit=500")
    return list(reversed(page["events"]))


def start(pipeline: Pipeline, services: list[dict[str, Any]]) -> Daemon:
    pipeline.write_config(services)
    return pipeline.start_daemon(env={"PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}"})


def test_boot_gates_the_dependent_a_hung_frida_is_killed_and_readiness_fails_without_restart(
    pipeline: Pipeline,
) -> None:
    """frida-server starts only once the emulator has booted (boot_completed AND pm path); a
    hanging frida-ps is killed at its timeout, leaves nothing behind and restarts frida-server
    with the probe's reason; the emulator going offline later makes it not ready, unrestarted."""
    device = pipeline.folder / "device"
    set_device(device, state="offline", boot_completed="0", pm_ready="0", frida="ok")
    env = {"FAKE_DEVICE_STATE": str(device)}
    daemon = start(
        pipeline,
        [
            {
                "name": "emulator",
                "command": "sleep 600",
                "env": env,
                "readiness": {
                    "exec": BOOTED,
                    "period": duration(0.2),
                    "timeout": duration(3),
                    "failure_threshold": 2,
                },
            },
            {
                "name": "frida",
                "command": "sleep 600",
                "requires": ["emulator"],
                "env": env,
                "backoff_initial": duration(0.2),
                "liveness": {
                    "exec": "frida-ps -D emulator-5554",
                    "period": duration(0.3),
                    "timeout": duration(0.5),
                    "failure_threshold": 2,
                },
            },
        ],
    )
    # Offline, then booting: the emulator runs but is not ready; frida waits for it.
    daemon.wait_service(
        "emulator",
        lambda s: s["probes"]["readiness"]["passing"] is False and s["pid"] is not None,
        "its readiness failing while the device is offline",
    )
    set_device(device, state="device")
    seen = len(calls(device))
    wait_until(lambda: len(calls(device)) >= seen + 4, "the probe to ask the booting device")
    set_device(device, boot_completed="1")  # boot_completed alone is too early: pm still down
    seen = len(calls(device))
    wait_until(
        lambda: sum("pm path" in c for c in calls(device)[seen:]) >= 2, "pm path to be asked"
    )
    emulator = daemon.service("emulator")
    assert emulator["state"] == "starting" and emulator["ready"] is False, emulator
    assert daemon.service("frida")["pid"] is None
    set_device(device, pm_ready="1")
    frida = daemon.wait_running("frida")
    emulator = daemon.service("emulator")
    assert emulator["ready"] is True and emulator["probes"]["readiness"]["passing"] is True
    passed = [e for e in journal(daemon, "emulator") if e["kind"] == "probe"]
    assert passed[-1]["detail"]["passing"] is True, passed
    assert passed[-1]["reason"] == f"readiness probe `{BOOTED}` passed"
    started = [e for e in journal(daemon, "frida") if e["state"] == "starting"]
    assert started[0]["at"] >= passed[-1]["at"]

    # frida-server hangs: frida-ps blocks; killed at its timeout, twice, and frida restarts.
    set_device(device, frida="hang")
    daemon.wait_service(
        "frida",
        lambda s: s["restarts"] >= 1 and s["pid"] not in (None, frida["pid"]),
        "restarted after its liveness probe timed out",
    )
    set_device(device, frida="ok")
    reasons = [e["reason"] for e in journal(daemon, "frida") if e["state"] == "unresponsive"]
    assert reasons[0] == f"probe `frida-ps -D emulator-5554` timed out after {duration(0.5)[:-1]} s"
    hung = [
        int(pid) for line in Path(f"{device}.hung").read_text().splitlines() for pid in line.split()
    ]
    assert len(hung) >= 4  # two runs, each a shell and its sleep
    wait_until(
        lambda: not any(alive(psutil.Process(pid)) for pid in hung if psutil.pid_exists(pid)),
        "the hung frida-ps processes to be gone",
    )

    # Later the device goes offline: not ready (what dependents see), and not restarted.
    emulator = daemon.service("emulator")
    set_device(device, state="offline")
    daemon.wait_service(
        "emulator", lambda s: s["ready"] is False, "not ready while the device is offline"
    )
    now = daemon.service("emulator")
    assert (now["pid"], now["restarts"], now["state"]) == (emulator["pid"], 0, "running")
    failing = [e for e in journal(daemon, "emulator") if e["kind"] == "probe"][-1]
    assert failing["detail"]["passing"] is False
    assert failing["reason"].startswith(f"readiness probe `{BOOTED}` failed 2 times: exited 1")
    set_device(device, state="device")
    daemon.wait_service("emulator", lambda s: s["ready"] is True, "ready again")
    assert daemon.service("emulator")["pid"] == emulator["pid"]
    assert not any("kill-server" in c for c in calls(device))


def test_liveness_offline_restarts_with_its_reason_and_an_exhausted_startup_backs_off(
    pipeline: Pipeline,
) -> None:
    """A device going offline fails its liveness probe: a restart whose reason is the probe's
    words; with the recipe's first rung in the check (``adb reconnect offline``), a device
    that reconnects is no failure at all; a startup probe that never passes is a failed
    start, recovered with backoff."""
    phone, booting = pipeline.folder / "phone", pipeline.folder / "booting"
    ladder = pipeline.folder / "ladder"
    set_device(phone, state="device")
    set_device(booting, state="offline")
    set_device(ladder, state="device", reconnect_recovers="1")
    daemon = start(
        pipeline,
        [
            {
                "name": "phone",
                "command": "sleep 600",
                "env": {"FAKE_DEVICE_STATE": str(phone)},
                "liveness": {
                    "exec": "adb -s emulator-5556 get-state",
                    "period": duration(0.2),
                    "timeout": duration(3),
                    "failure_threshold": 2,
                },
            },
            {
                "name": "ladder",
                "command": "sleep 600",
                "env": {"FAKE_DEVICE_STATE": str(ladder)},
                "liveness": {"exec": LADDER, "period": duration(0.2), "timeout": duration(3)},
            },
            {
                "name": "booting",
                "command": "sleep 600",
                "env": {"FAKE_DEVICE_STATE": str(booting)},
                "backoff_initial": duration(1),
                "startup": {
                    "exec": "adb -s emulator-5558 wait-for-device",
                    "period": duration(0.1),
                    "timeout": duration(0.3),
                    "failure_threshold": 2,
                },
            },
        ],
    )
    first = daemon.wait_running("phone")
    set_device(phone, state="offline")
    daemon.wait_service(
        "phone", lambda s: s["restarts"] >= 1, "restarted by its failing liveness probe"
    )
    set_device(phone, state="device")
    late = [e for e in journal(daemon, "phone") if e["state"] == "unresponsive"]
    assert (
        late[0]["reason"]
        == "probe `adb -s emulator-5556 get-state` exited 1: error: device offline"
    )
    assert late[0]["detail"]["failure"] is True
    assert daemon.wait_running("phone")["pid"] != first["pid"]

    # The same offline device under the ladder's check: reconnected, never restarted.
    ladder_pid = daemon.wait_running("ladder")["pid"]
    set_device(ladder, state="offline")
    wait_until(lambda: "emulator-5554 reconnect offline" in calls(ladder), "a reconnect")
    wait_until(lambda: "state=device" in ladder.read_text(), "the device back")
    status = daemon.service("ladder")
    assert (status["pid"], status["restarts"]) == (ladder_pid, 0)
    assert status["probes"]["liveness"]["consecutive_failures"] == 0
    assert not any("kill-server" in c for c in calls(ladder))

    # The startup probe never passes: each run is a failed start, the second one backs off.
    wait_until(
        lambda: any(e["state"] == "backoff" for e in journal(daemon, "booting")),
        "booting to back off after failed starts",
    )
    entries = journal(daemon, "booting")
    failed = [e for e in entries if e["state"] == "unresponsive"]
    assert failed[0]["reason"] == (
        "startup probe `adb -s emulator-5558 wait-for-device` failed 2 times: "
        f"timed out after {duration(0.3)[:-1]} s"
    )
    assert not any(e["state"] == "running" for e in entries)  # never ready: never running


class _Drip(socketserver.BaseRequestHandler):
    """Answers one byte every half second: every read is quick, the answer never comes."""

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            for byte in b"HTTP/1.1 200 OK\r\n" * 20:
                self.request.sendall(bytes([byte]))
                time.sleep(0.5)


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(server: socketserver.TCPServer) -> Iterator[str]:
    server.daemon_threads = True  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_dripping_http_server_holds_neither_other_probes_nor_the_daemons_exit(
    pipeline: Pipeline,
) -> None:
    """Four readiness checks of a server that answers a byte every half second time out at
    their timeout without holding up a healthy service's liveness checks (never restarted),
    and the daemon stops promptly with those checks in flight."""
    with (
        serving(socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Drip)) as drip,
        serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)) as healthy,
    ):
        check = {"period": duration(0.3), "timeout": duration(1)}
        daemon = start(
            pipeline,
            [
                {
                    "name": "bad",
                    "command": "sleep 600",
                    "instances": 4,
                    "readiness": {"http": drip, **check},
                },
                {
                    "name": "good",
                    "command": "sleep 600",
                    "liveness": {"http": healthy, **check, "failure_threshold": 1},
                },
            ],
        )
        daemon.wait_service(
            "bad@3",
            lambda s: s["probes"]["readiness"]["consecutive_failures"] >= 1,
            "the dripping server's check to time out",
        )
        hold_still(
            lambda: daemon.service("good")["restarts"] == 0,
            "the healthy service never restarted",
            2.0,
        )
        good = daemon.service("good")["probes"]["liveness"]
        assert good["passing"] is True and good["consecutive_failures"] == 0, good
        reason = daemon.service("bad@0")["probes"]["readiness"]["reason"]
        assert reason.endswith(f"timed out after {duration(1)[:-1]} s"), reason
        assert daemon.terminate(timeout=10.0) == 0
