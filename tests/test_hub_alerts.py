"""Fleet alerts against the real PostgreSQL and a real json:// receiver: once across hubs,
held back for unreachable hosts, old replays silent, host alerts naming the host."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.fleet_support import AlertSink
from heartwatch.hub.alerts import HELD_BACK, FleetAlerter
from heartwatch.hub.config import parse_hub_config
from heartwatch.hub.store import BatchResult, FleetStore
from hubstore_support import NOW, heartbeat, new_boot, opened_store, rows, run, storable, transition


@pytest.fixture
def sink() -> Iterator[AlertSink]:
    receiver = AlertSink()
    yield receiver
    receiver.close()


def hub_config(name: str, url: str) -> Any:
    return parse_hub_config(
        {
            "hub": {
                "name": name,
                "broker": "amqp://guest:guest@127.0.0.1/",
                "database": "postgresql://postgres@127.0.0.1/x",
            },
            "alerts": {"urls": [url], "retries": 0, "timeout": "10s", "recovered_after": "0s"},
        },
        environ={},
    )


async def down_batch(store: FleetStore, host: str) -> BatchResult:
    boot = new_boot()
    return await store.write_batch(
        storable(
            [
                heartbeat(host, boot),
                transition(host, boot, 1, "collector@2", "running"),
                transition(
                    host,
                    boot,
                    2,
                    "collector@2",
                    "unresponsive",
                    "heartbeat timeout 30 s",
                    failure=True,
                ),
            ]
        )
    )


def fixed_clock() -> float:
    return NOW + 10.0  # just after the helpers' entries


def test_hub_alerts_two_hubs_deciding_the_same_alert_send_it_once(
    fresh_database: str, sink: AlertSink
) -> None:
    """Both hubs see the same newly stored down (the worst case): one sends, naming the host."""

    async def main() -> list[Any]:
        async with opened_store(fresh_database) as store:
            result = await down_batch(store, "farm-07")
            hubs = [
                FleetAlerter(hub_config(name, sink.url), store.pool, wall_clock=fixed_clock)
                for name in ("hub-1", "hub-2")
            ]
            for hub in hubs:
                hub.start()
                hub.receive_batch(result)
            for hub in hubs:
                await hub.close(timeout=20)
            return await rows(store, "SELECT key, kind, sent, sent_by, error FROM alerts")

    alerts = run(main)
    assert len(alerts) == 1
    key, kind, sent, _, error = alerts[0]
    assert (kind, sent, error) == ("down", True, None)
    assert key.startswith("farm-07/collector@2/down/")
    texts = sink.matching("farm-07/collector@2", "down", "heartbeat timeout 30 s")
    assert len(texts) == 1, sink.texts()
    assert len(sink.received()) == 1


def test_hub_alerts_of_an_unreachable_hosts_services_are_held_back(
    fresh_database: str, sink: AlertSink
) -> None:
    """The host is unreachable when the alert is decided: recorded as held back, not sent."""

    async def main() -> list[Any]:
        async with opened_store(fresh_database) as store:
            result = await down_batch(store, "farm-08")
            async with store.pool.connection() as connection:
                await connection.execute("UPDATE hosts SET state = 'unreachable'")
            hub = FleetAlerter(hub_config("hub-1", sink.url), store.pool, wall_clock=fixed_clock)
            hub.start()
            hub.receive_batch(result)
            await hub.close(timeout=20)
            return await rows(store, "SELECT kind, sent, error FROM alerts")

    assert run(main) == [("down", False, HELD_BACK)]
    assert sink.received() == []


def test_hub_alerts_old_replayed_entries_do_not_alert(fresh_database: str, sink: AlertSink) -> None:
    """Entries older than the replay horizon on arrival are history: no alert, no row."""

    async def main() -> list[Any]:
        async with opened_store(fresh_database) as store:
            result = await down_batch(store, "farm-09")
            hub = FleetAlerter(
                hub_config("hub-1", sink.url), store.pool, wall_clock=lambda: fixed_clock() + 3600.0
            )
            hub.start()
            hub.receive_batch(result)
            await hub.close(timeout=20)
            return await rows(store, "SELECT kind FROM alerts")

    assert run(main) == []
    assert sink.received() == []


def test_hub_alerts_host_unreachable_once_then_back(fresh_database: str, sink: AlertSink) -> None:
    """Two hubs told of the same outage: one unreachable alert; then one back alert; a back
    with no unreachable alert before it (an outage nobody announced) says nothing."""

    async def main() -> list[Any]:
        async with opened_store(fresh_database) as store:
            hubs = [FleetAlerter(hub_config(name, sink.url), store.pool) for name in ("a", "b")]
            for hub in hubs:
                hub.start()
                hub.receive_host_change("farm-10", "unreachable", 1000.5, 46.0)
            for hub in hubs:
                hub.receive_batch(BatchResult(back=[("farm-10", 1000.5), ("farm-11", 7.0)]))
            for hub in hubs:
                await hub.close(timeout=20)
            return await rows(store, "SELECT key, kind, sent FROM alerts ORDER BY created_at")

    alerts = run(main)
    assert [(kind, sent) for _, kind, sent in alerts] == [("unreachable", True), ("back", True)]
    assert sink.matching("farm-10", "unreachable") and sink.matching("farm-10", "reachable again")
    assert len(sink.received()) == 2
    assert not sink.matching("farm-11")


def test_hub_alerts_recovered_after_down_names_the_host(
    fresh_database: str, sink: AlertSink
) -> None:
    """down, then running again: a recovery alert (recovered_after 0 s) naming host/service."""

    async def main() -> None:
        async with opened_store(fresh_database) as store:
            result = await down_batch(store, "farm-12")
            boot = next(iter(await rows(store, "SELECT boot FROM hosts")))[0]
            again = await store.write_batch(
                storable(
                    [
                        transition("farm-12", boot, 3, "collector@2", "running", "ready"),
                    ]
                )
            )
            hub = FleetAlerter(hub_config("hub-1", sink.url), store.pool, wall_clock=fixed_clock)
            hub.start()
            hub.receive_batch(result)
            hub.receive_batch(again)
            deadline = time.monotonic() + 20
            while len(sink.received()) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await hub.close(timeout=20)

    run(main)
    assert len(sink.matching("farm-12/collector@2 down: heartbeat timeout 30 s")) == 1
    assert len(sink.matching("farm-12/collector@2", "running again")) == 1
