"""Commands from the hub: a restart runs once, on the right host, and replies; one for an
unreachable host expires and never runs; a forged or replayed command is refused and logged."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from e2e.fleet_support import (
    Fleet,
    command_replies,
    fleet,
    publish_command,
    signed_command,
)
from e2e.support import hold_still, wait_until

pytestmark = pytest.mark.e2e

__all__ = ["fleet"]  # the fixture, used by name


def wait_command(fleet: Fleet, command_id: str, status: str, timeout: float = 20.0) -> dict:
    hub = fleet.hubs[0]
    return wait_until(
        lambda: (c := hub.command(command_id))["status"] == status and c,
        f"command {command_id} {status} (now {hub.command(command_id)['status']})",
        timeout,
        0.1,
    )


def test_a_restart_from_the_hub_runs_once_on_its_host_and_replies_done(fleet: Fleet) -> None:
    hub = fleet.start_hub()
    host_a, host_b = fleet.start_agents("host-a", "host-b")
    wait_until(
        lambda: hub.service("host-a", "collector") and hub.service("host-b", "collector"),
        "the hub to know both collectors",
        20,
    )
    pid_a, pid_b = host_a.pid("collector"), host_b.pid("collector")
    asked = host_a.daemon.service("collector")["restarts_requested"]

    # One unknown target refuses the whole request: nothing runs anywhere.
    status, answer = hub.issue(["host-a/collector", "host-z/collector"], "restart")
    assert status == 422, answer
    assert "host-z" in answer["message"], answer

    status, answer = hub.issue(["host-a/collector"], "restart", ttl=20)
    assert status == 202, answer
    [command] = answer["commands"]
    assert (command["host"], command["service"], command["verb"]) == (
        "host-a",
        "collector",
        "restart",
    )
    done = wait_command(fleet, command["id"], "done")
    assert done["issued_by"] == hub.name
    host_a.wait_recovered("collector", pid_a)
    assert host_b.pid("collector") == pid_b
    hold_still(
        lambda: host_a.daemon.service("collector")["restarts_requested"] == asked + 1,
        "host-a's collector restarted exactly once",
        2,
    )
    assert host_b.pid("collector") == pid_b
    assert command_replies(fleet.database, command["id"]) == ["accepted", "done"]
    listed = hub.get("/api/v1/commands", host="host-a")["commands"]
    assert [c["id"] for c in listed] == [command["id"]]


def test_a_command_for_an_unreachable_host_expires_and_never_runs(fleet: Fleet) -> None:
    hub = fleet.start_hub()
    (host_a,) = fleet.start_agents("host-a")
    wait_until(lambda: hub.service("host-a", "collector"), "the hub to know host-a", 20)
    host_a.kill()
    hub.wait_host_state("host-a", "unreachable", 20)

    status, answer = hub.issue(["host-a/collector"], "restart", ttl=5)
    assert status == 202, answer
    [command] = answer["commands"]
    expired = wait_command(fleet, command["id"], "expired", 20)
    assert "never ran" in expired["reason"], expired

    host_a.start()
    host_a.wait_all_running()
    hub.wait_host_state("host-a", "live", 20)
    fleet.wait_caught_up("host-a")
    asked = host_a.daemon.service("collector")["restarts_requested"]
    hold_still(
        lambda: (
            hub.command(command["id"])["status"] == "expired"
            and host_a.daemon.service("collector")["restarts_requested"] == asked
        ),
        "the expired command still expired, never run",
        3,
    )
    replies = command_replies(fleet.database, command["id"])
    assert "accepted" not in replies and "done" not in replies, replies


def test_a_forged_or_replayed_command_is_refused_and_logged(fleet: Fleet) -> None:
    hub = fleet.start_hub()
    (host_a,) = fleet.start_agents("host-a")
    wait_until(lambda: hub.service("host-a", "collector"), "the hub to know host-a", 20)
    pid = host_a.pid("collector")

    # Forged: signed by a key no hub of this agent holds.
    forged, data = signed_command(Ed25519PrivateKey.generate(), "host-a", "collector")
    publish_command(fleet.broker, fleet.exchange, "host-a", forged, data)
    wait_until(
        lambda: command_replies(fleet.database, forged) == ["refused"],
        "the agent's refusal of the forged command",
        20,
    )
    wait_until(lambda: forged in host_a.log_text(), "the agent to log the forged command", 5)
    assert "trusted" in next(line for line in host_a.log_text().splitlines() if forged in line)
    assert host_a.pid("collector") == pid

    # Replayed: a genuine command (signed with the hub's key), its very bytes published twice.
    genuine, data = signed_command(fleet.key, "host-a", "collector")
    publish_command(fleet.broker, fleet.exchange, "host-a", genuine, data)
    wait_until(
        lambda: command_replies(fleet.database, genuine) == ["accepted", "done"],
        "the genuine command done",
        20,
    )
    new_pid = host_a.wait_recovered("collector", pid)["pid"]
    publish_command(fleet.broker, fleet.exchange, "host-a", genuine, data)
    wait_until(
        lambda: command_replies(fleet.database, genuine) == ["accepted", "done", "refused"],
        "the replay refused",
        20,
    )
    assert "already ran" in "\n".join(
        line for line in host_a.log_text().splitlines() if genuine in line
    )
    assert host_a.pid("collector") == new_pid

    # Even after the agent restarts, the id it ran is remembered.
    host_a.daemon.terminate()
    host_a.start()
    restarted_pid = host_a.wait_all_running()["collector"]
    publish_command(fleet.broker, fleet.exchange, "host-a", genuine, data)
    wait_until(
        lambda: (
            command_replies(fleet.database, genuine) == ["accepted", "done", "refused", "refused"]
        ),
        "the replay after the agent's restart refused",
        20,
    )
    assert host_a.pid("collector") == restarted_pid
    # The hub never issued that id: no command changes, but the refusal is said in its log.
    assert forged in hub.stderr_text(), "the hub's log says nothing of the forged command"
