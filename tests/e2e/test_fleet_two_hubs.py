"""Two hubs at once against the same broker and database: every event stored once, every alert
sent once, and both serve the same fleet."""

from __future__ import annotations

import collections

import pytest

from e2e.fleet_support import (
    Fleet,
    duplicate_events,
    fleet,
    query,
    seq_problems,
    stored_entries,
)
from e2e.support import hold_still, wait_until

pytestmark = pytest.mark.e2e

__all__ = ["fleet"]  # the fixture, used by name


def test_two_hubs_store_every_event_once_and_send_every_alert_once(fleet: Fleet) -> None:
    hub_1 = fleet.hub("hub-1")
    hub_2 = fleet.hub("hub-2")
    hub_1.start()
    hub_2.start()
    host_a, host_b = fleet.start_agents("host-a", "host-b")
    for hub in (hub_1, hub_2):
        wait_until(
            lambda hub=hub: hub.service("host-b", "collector"), f"{hub.name} to know host-b", 20
        )

    # A service alert (host-b's collector hangs) and a host alert (host-a is killed).
    hung = host_b.hang("collector")
    host_b.wait_recovered("collector", hung)
    host_a.kill()
    for hub in (hub_1, hub_2):
        hub.wait_host_state("host-a", "unreachable", 20)
    wait_until(lambda: fleet.sink.matching("host-b", "collector"), "host-b's alert", 20)
    wait_until(lambda: fleet.sink.matching("host-a", "unreachable"), "host-a's alert", 20)
    fleet.wait_caught_up("host-b")
    # Both dashboards see the recovered collector (the second through the change feed).
    for hub in (hub_1, hub_2):
        wait_until(
            lambda hub=hub: (
                (s := hub.service("host-b", "collector"))
                and s["state"] == "running"
                and s["reason"] == "first heartbeat"
            ),
            f"{hub.name} to show host-b's collector running again",
            20,
        )

    def no_alert_twice() -> bool:
        counts = collections.Counter(fleet.sink.texts())
        return all(count == 1 for count in counts.values())

    hold_still(no_alert_twice, "every alert received once", 4)
    assert duplicate_events(fleet.database) == 0
    assert seq_problems(fleet.database) == []
    assert stored_entries(fleet.database, "host-b") == host_b.journal()
    sent = query(fleet.database, "SELECT key, sent_by, sent FROM alerts ORDER BY created_at")
    assert len(sent) == len(fleet.sink.received()), (sent, fleet.sink.texts())
    assert all(row[2] for row in sent), sent
    assert {row[1] for row in sent} <= {"hub-1", "hub-2"}

    # One hub ingests (single active consumer); killed, the other takes the queue over.
    ingested = {hub.name: hub.metric("heartwatch_hub_events_total") for hub in (hub_1, hub_2)}
    assert sorted(count > 0 for count in ingested.values()) == [False, True], ingested
    active, standby = (hub_1, hub_2) if ingested["hub-1"] else (hub_2, hub_1)
    active.kill()
    hung = host_b.hang("collector")
    host_b.wait_recovered("collector", hung)
    fleet.wait_caught_up("host-b")
    wait_until(
        lambda: len(fleet.sink.matching("host-b/collector is down")) == 2,
        f"{standby.name}'s alert for the second hang",
        20,
    )
    assert standby.metric("heartwatch_hub_events_total") > 0
    hold_still(
        lambda: len(fleet.sink.matching("host-b/collector is down")) == 2,
        "the second hang alerted once",
        2,
    )
    assert duplicate_events(fleet.database) == 0
    assert seq_problems(fleet.database) == []
    assert stored_entries(fleet.database, "host-b") == host_b.journal()
