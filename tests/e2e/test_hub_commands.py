"""``heartwatch --hub URL`` end to end: a real hub, real agents, the real broker."""

from __future__ import annotations

import subprocess
import sys

import pytest

from e2e.fleet_support import Fleet, fleet
from e2e.support import duration, wait_until

pytestmark = pytest.mark.e2e

__all__ = ["fleet"]  # the fixture, used by name


def _cli(fleet: Fleet, *arguments: str) -> subprocess.CompletedProcess[str]:
    hub = fleet.hubs[0]
    command = [sys.executable, "-m", "heartwatch", "--hub", hub.http_url, *arguments]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={"HEARTWATCH_TOKEN": fleet.token, "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )


def test_the_cli_restarts_through_the_hub_and_prints_the_reply(fleet: Fleet) -> None:
    """restart host/service: runs on that host once, the reply printed, exit 0; status lists
    both hosts' services."""
    hub = fleet.start_hub()
    host_a, host_b = fleet.start_agents("host-a", "host-b")
    wait_until(
        lambda: hub.service("host-a", "collector") and hub.service("host-b", "collector"),
        "the hub to know both collectors",
        20,
    )
    pid_a, pid_b = host_a.pid("collector"), host_b.pid("collector")
    done = _cli(fleet, "restart", "host-a/collector")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith("host-a/collector: done"), line
    host_a.wait_recovered("collector", pid_a)
    assert host_b.pid("collector") == pid_b

    wait_until(
        lambda: (hub.service("host-a", "collector") or {}).get("state") == "running",
        "host-a/collector running again on the hub",
        20,
    )
    status = _cli(fleet, "status")
    rows = [line.split()[:3] for line in status.stdout.splitlines()[1:]]
    assert ["host-a", "collector", "running"] in rows and ["host-b", "emulator", "running"] in rows
    assert status.returncode == 0, status.stdout

    unknown = _cli(fleet, "stop", "host-a/colector")
    assert unknown.returncode == 2
    assert "no service 'colector'" in unknown.stderr


def test_a_command_for_a_silent_host_expires_and_the_cli_says_it_never_ran(fleet: Fleet) -> None:
    """The agent killed: stop waits for the expiry, prints "expired, never ran", exit 1; the
    agent, back, does not run it."""
    fleet.start_hub(command_ttl=duration(2))
    (host_a,) = fleet.start_agents("host-a")
    hub = fleet.hubs[0]
    wait_until(lambda: hub.service("host-a", "emulator"), "the hub to know host-a", 20)
    host_a.kill()
    expired = _cli(fleet, "stop", "host-a/emulator")
    assert expired.returncode == 1, expired.stdout + expired.stderr
    assert expired.stdout.strip() == (
        "host-a/emulator: expired, never ran (not delivered within 2 s)"
    )
    host_a.start()
    host_a.wait_all_running()
    wait_until(
        lambda: (hub.service("host-a", "emulator") or {}).get("state") == "running",
        "host-a/emulator known running again",
        20,
    )
    assert host_a.daemon.service("emulator")["state"] == "running"  # never stopped
