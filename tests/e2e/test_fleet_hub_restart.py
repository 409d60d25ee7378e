"""The hub killed (SIGKILL) and restarted: the events made meanwhile waited in the queue, none is
lost or stored twice, and the restarted hub raises no host alert for hosts that are fine."""

from __future__ import annotations

import time

import pytest

from e2e.fleet_support import TIMINGS, Fleet, duplicate_events, fleet, seq_problems, stored_entries
from e2e.support import hold_still, scaled

pytestmark = pytest.mark.e2e

__all__ = ["fleet"]  # the fixture, used by name


def test_a_killed_hub_loses_no_event_and_floods_no_alert_when_restarted(fleet: Fleet) -> None:
    hub = fleet.start_hub()
    agents = fleet.start_agents("host-a", "host-b")
    for agent in agents:
        fleet.wait_caught_up(agent.host)
        hub.wait_host_state(agent.host, "live")

    hub.kill()
    killed_at, killed_wall = time.monotonic(), time.time()
    # Events while no hub listens: restarts people asked for (no alert), on both hosts.
    for agent in agents:
        old = agent.pid("collector")
        assert agent.daemon.post_json("/api/v1/services/collector/restart")[0] == 200
        agent.wait_recovered("collector", old)
    # Down longer than unreachable_after: without the start grace, every host would be
    # unreachable on the restarted hub's clock.
    time.sleep(max(0.0, scaled(TIMINGS["unreachable_after"] + 1) - (time.monotonic() - killed_at)))
    hub.start()

    for agent in agents:
        journal = fleet.wait_caught_up(agent.host, timeout=30)
        stored = stored_entries(fleet.database, agent.host)
        assert stored == journal
        assert [e for e in stored if e["at"] >= killed_wall], "events made while the hub was down"
    assert duplicate_events(fleet.database) == 0
    assert seq_problems(fleet.database) == []
    for agent in agents:
        hub.wait_host_state(agent.host, "live")
    # Past the grace (the hosts were silent longer than unreachable_after on the hub's clock,
    # so without it every host would be unreachable at once): still not one alert.
    hold_still(
        lambda: not fleet.sink.received(),
        "no alert at all (the hosts are fine)",
        TIMINGS["start_grace"] + 2,
    )
    states = {h["host"]: h["state"] for h in hub.fleet()["hosts"]}
    assert states == {"host-a": "live", "host-b": "live"}
