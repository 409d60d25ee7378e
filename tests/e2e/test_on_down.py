"""A watch-only service's recovery is its ``on_down`` command, run for real.

The service (an emulator heartwatch does not start) is watched by its messages; when they stop,
``on_down`` runs in a shell with the service's environment, its output goes into the service's
log, its outcome is journaled, and the service gets its startup grace to come back.
"""

from __future__ import annotations

import json
import time

import pytest

from e2e.support import Pipeline, duration, scaled, send_tcp, wait_until

pytestmark = pytest.mark.e2e


def beat(address: tuple[str, int]) -> None:
    send_tcp(address, json.dumps({"type": "heartbeat", "service": "phone"}).encode())


def test_on_down_runs_when_a_watched_service_falls_silent(pipeline: Pipeline) -> None:
    marker = pipeline.folder / "on_down.ran"
    pipeline.write_config(
        [
            {
                "name": "phone",
                "heartbeat_timeout": duration(2.0),
                "startup_grace": duration(30),
                "on_down": f'echo "rebooting $HEARTWATCH_SERVICE"; echo ran >> {marker}; exit 3',
                "on_down_timeout": duration(10),
            }
        ]
    )
    daemon = pipeline.start_daemon()
    beat(daemon.tcp_address)
    # Watch-only: running without a pid, until its deadline passes (2 s from this beat).
    daemon.wait_service("phone", lambda s: s["state"] == "running", "running", timeout=2)
    # Silence: the deadline passes, on_down runs once.
    wait_until(lambda: marker.exists(), "on_down to run", timeout=15)
    events = wait_until(
        lambda: (
            [
                e
                for e in daemon.request("GET", "/api/v1/events?service=phone&limit=100")["events"]
                if "on_down" in e["reason"]
            ]
            or None
        ),
        "on_down's outcome in the journal",
    )
    assert marker.read_text() == "ran\n"
    output = (pipeline.log_dir / "phone.log").read_text()
    assert "[heartwatch] on_down:" in output and "rebooting phone" in output
    log = daemon.log_text()
    assert "phone: on_down finished: exit code 3" in log, log
    assert events, events
    # It comes back: its messages resume within the startup grace it was given again.
    deadline = time.monotonic() + scaled(15)
    while daemon.service("phone")["state"] != "running" and time.monotonic() < deadline:
        beat(daemon.tcp_address)
        time.sleep(0.1)
    assert daemon.service("phone")["state"] == "running"
    assert marker.read_text() == "ran\n"  # once: the recovery was not repeated meanwhile
