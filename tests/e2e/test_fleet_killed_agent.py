"""An agent SIGKILLed: its host goes stale, then unreachable (one alert naming it, its services
unknown); restarted (a new boot), it is reconciled from its snapshot, with no event twice."""

from __future__ import annotations

import pytest

from e2e.fleet_support import Fleet, duplicate_events, fleet, query, seq_problems
from e2e.support import hold_still, wait_until

pytestmark = pytest.mark.e2e

__all__ = ["fleet"]  # the fixture, used by name


def test_a_killed_agent_goes_stale_then_unreachable_and_is_reconciled_when_back(
    fleet: Fleet,
) -> None:
    hub = fleet.start_hub()
    host_a, _host_b = fleet.start_agents("host-a", "host-b")
    wait_until(
        lambda: hub.host_state("host-a") == "live" and hub.host_state("host-b") == "live",
        "both hosts live on the hub",
        20,
    )
    first_boot = hub.get("/api/v1/hosts/host-a")["boot"]
    fleet.wait_caught_up("host-a")

    host_a.kill()
    hub.wait_host_state("host-a", "stale", 15)
    hub.wait_host_state("host-a", "unreachable", 15)
    assert hub.host_state("host-b") == "live"
    services = [s for s in hub.fleet()["services"] if s["host"] == "host-a"]
    assert services and all(s["state"] == "unknown" for s in services), services
    assert {s["last_state"] for s in services} == {"running"}, services
    alerts = wait_until(
        lambda: fleet.sink.matching("host-a", "unreachable"), "one alert: host-a unreachable", 15
    )
    hold_still(
        lambda: len(fleet.sink.matching("host-a", "unreachable")) == 1,
        "exactly one unreachable alert for host-a",
        3,
    )
    assert len(alerts) == 1, fleet.sink.texts()

    # Restarted: a new boot, reconciled from its snapshot.
    host_a.start()
    pids = host_a.wait_all_running()
    hub.wait_host_state("host-a", "live", 20)
    host = hub.get("/api/v1/hosts/host-a")
    assert host["boot"] != first_boot
    wait_until(
        lambda: (
            {
                s["name"]: s["pid"]
                for s in hub.fleet()["services"]
                if s["host"] == "host-a" and s["state"] == "running"
            }
            == pids
        ),
        f"the hub to know host-a's services again, running with pids {pids}",
        20,
    )
    fleet.wait_caught_up("host-a")
    fleet.wait_caught_up("host-b")
    assert duplicate_events(fleet.database) == 0
    assert seq_problems(fleet.database) == []
    boots = query(fleet.database, "SELECT DISTINCT boot FROM events WHERE host = 'host-a'")
    assert len(boots) == 2, boots
    assert len(fleet.sink.matching("host-a", "unreachable")) == 1, fleet.sink.texts()
    assert not fleet.sink.matching("host-b"), fleet.sink.texts()
