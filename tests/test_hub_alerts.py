"""Fleet alerts against the real PostgreSQL and a real json:// receiver: once across hubs,
held back for unreachable hosts, old replays silent (on the agent's own timeline), hosts'
skewed clocks changing nothing, host alerts naming the host."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.fleet_support import AlertSink
from heartwatch.core.alerting import Alert
from heartwatch.core.fleetwire import Envelope
from heartwatch.hub.alerts import HELD_BACK, FleetAlerter, HostTimeline
from heartwatch.hub.config import parse_hub_config
from heartwatch.hub.store import BatchResult, FleetStore
from hubstore_support import (
    NOW,
    envelope,
    heartbeat,
    new_boot,
    opened_store,
    rows,
    run,
    storable,
    transition,
)


@pytest.fixture
def sink() -> Iterator[AlertSink]:
    receiver = AlertSink()
    yield receiver
    receiver.close()


def hub_config(name: str, url: str, recovered_after: str = "0s") -> Any:
    return parse_hub_config(
        {
            "hub": {
                "name": name,
                "broker": "amqp://guest:guest@127.0.0.1/",
                "database": "postgresql://postgres@127.0.0.1/x",
            },
            "alerts": {
                "urls": [url],
                "retries": 0,
                "timeout": "10s",
                "recovered_after": recovered_after,
            },
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


def entry(
    host: str, boot: str, seq: int, service: str, state: str, at: float, **detail: Any
) -> Envelope:
    """A transition made at ``at`` on its agent's clock (a failure when ``failure=True``)."""
    body = {
        "id": seq,
        "at": at,
        "kind": "transition",
        "service": service,
        "reason": f"{state} at seq {seq}",
        "state": state,
        "previous": None,
        "detail": detail or None,
    }
    return envelope("entry", host, boot, seq, body, at=at)


def report(host: str, boot: str, at: float) -> Envelope:
    """A heartbeat made at ``at`` on its agent's clock."""
    return dataclasses.replace(heartbeat(host, boot), at=at)


async def wait_for_rows(store: FleetStore, query: str, count: int) -> list[Any]:
    deadline = time.monotonic() + 20
    while True:
        found = await rows(store, query)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


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
    """Entries older than the replay horizon on their agent's own timeline are history: no
    alert, no row. farm-09: its entry arrives an hour (of the hub's clock) after the one
    before it, stamped a second later (an outbox replay). farm-19: a replay arriving in one
    batch, the failure an hour before the newest entry; the fresh failure after it alerts.
    farm-29: nothing known of it before (a hub started meanwhile), its heartbeat an hour after
    its failure."""
    clock = [NOW + 10.0]

    async def main() -> list[Any]:
        async with opened_store(fresh_database) as store:
            hub = FleetAlerter(
                hub_config("hub-1", sink.url), store.pool, wall_clock=lambda: clock[0]
            )
            hub.start()
            boot, other = new_boot(), new_boot()
            hub.receive_batch(
                await store.write_batch(storable([entry("farm-09", boot, 1, "a", "running", NOW)]))
            )
            clock[0] += 3600.0
            late = entry("farm-09", boot, 2, "a", "unresponsive", NOW + 1, failure=True)
            hub.receive_batch(await store.write_batch(storable([late])))
            replay = [
                entry("farm-19", other, 1, "b", "unresponsive", NOW + 1, failure=True),
                entry("farm-19", other, 2, "b", "stopped", NOW + 3600),
                entry("farm-19", other, 3, "c", "unresponsive", NOW + 3601, failure=True),
            ]
            hub.receive_batch(await store.write_batch(storable(replay)))
            third = new_boot()
            replay = [
                report("farm-29", third, NOW + 3600),
                entry("farm-29", third, 1, "d", "unresponsive", NOW + 1, failure=True),
            ]
            hub.receive_batch(await store.write_batch(storable(replay)))
            await hub.close(timeout=20)
            return await rows(store, "SELECT key, host FROM alerts")

    found = [(key.split("/")[:3], host) for key, host in run(main)]
    assert found == [(["farm-19", "c", "down"], "farm-19")]
    assert len(sink.matching("farm-19/c down")) == 1 and len(sink.received()) == 1


def test_hub_alerts_a_host_whose_clock_is_behind_is_alerted(
    fresh_database: str, sink: AlertSink
) -> None:
    """A host 700 s behind the hub (beyond the replay horizon) fails: alerted, under its name,
    as the host with the right clock beside it."""

    async def main() -> list[Any]:
        async with opened_store(fresh_database) as store:
            hub = FleetAlerter(hub_config("hub-1", sink.url), store.pool, wall_clock=fixed_clock)
            hub.start()
            for host, skew in (("skew0", 0.0), ("skew700", -700.0)):
                boot = new_boot()
                batch = [
                    report(host, boot, NOW + skew),
                    entry(host, boot, 1, "svc", "running", NOW + skew),
                    entry(host, boot, 2, "svc", "failed", NOW + skew + 1, failure=True),
                ]
                hub.receive_batch(await store.write_batch(storable(batch)))
            await hub.close(timeout=20)
            return await rows(store, "SELECT key, host, kind, sent FROM alerts ORDER BY key")

    alerts = run(main)
    assert [(key.split("/")[:3], host, kind, sent) for key, host, kind, sent in alerts] == [
        (["skew0", "svc", "gave_up"], "skew0", "gave_up", True),
        (["skew700", "svc", "gave_up"], "skew700", "gave_up", True),
    ]
    assert len(sink.matching("skew700/svc failed, restarts given up")) == 1


def test_hub_alerts_a_host_ahead_releases_no_other_hosts_recovery(
    fresh_database: str, sink: AlertSink
) -> None:
    """Two hosts down for 1 s and running again, one with its clock an hour ahead: neither
    recovery is confirmed by the other's entries (the hub's timer confirms each after
    recovered_after), and each is under its own host, service and running entry."""
    decided: list[tuple[str, str, tuple[str, str, int]]] = []

    async def main() -> tuple[list[Any], list[Any], dict[str, str]]:
        async with opened_store(fresh_database) as store:
            hub = FleetAlerter(hub_config("hub-1", sink.url, recovered_after="2s"), store.pool)
            dispatch = hub._dispatch

            def spy(alert: Alert, opening: tuple[str, str, int]) -> None:
                decided.append((alert.service, alert.kind, opening))
                dispatch(alert, opening)

            hub._dispatch = spy  # type: ignore[method-assign]
            hub.start()
            now = time.time()
            boots = {"ahead0": new_boot(), "ahead3600": new_boot()}
            results = []
            for host, skew in (("ahead0", 0.0), ("ahead3600", 3600.0)):
                boot, at = boots[host], now + skew
                batch = [
                    report(host, boot, at - 2),
                    entry(host, boot, 1, "svc", "running", at - 2),
                    entry(host, boot, 2, "svc", "unresponsive", at - 1.5, failure=True),
                    entry(host, boot, 3, "svc", "running", at - 0.5),
                ]
                results.append(await store.write_batch(storable(batch)))
            for result in results:  # one right after the other: no timer can run between
                hub.receive_batch(result)
            early = list(decided)
            found = await wait_for_rows(store, "SELECT key FROM alerts WHERE kind = 'recovered'", 2)
            await hub.close(timeout=20)
            alerts = await rows(
                store, "SELECT key, host, service, kind, message FROM alerts ORDER BY key"
            )
            return early, alerts if len(found) == 2 else [], boots

    early, alerts, boots = run(main)
    assert [(service, kind) for service, kind, _ in early] == [
        ("ahead0/svc", "down"),
        ("ahead3600/svc", "down"),
    ]
    b0, b1 = boots["ahead0"], boots["ahead3600"]
    assert alerts == [
        (
            f"ahead0/svc/down/{b0}/2",
            "ahead0",
            "svc",
            "down",
            "ahead0/svc down: unresponsive at seq 2",
        ),
        (
            f"ahead0/svc/recovered/{b0}/3",
            "ahead0",
            "svc",
            "recovered",
            "ahead0/svc is running again after 1.0 s down",
        ),
        (
            f"ahead3600/svc/down/{b1}/2",
            "ahead3600",
            "svc",
            "down",
            "ahead3600/svc down: unresponsive at seq 2",
        ),
        (
            f"ahead3600/svc/recovered/{b1}/3",
            "ahead3600",
            "svc",
            "recovered",
            "ahead3600/svc is running again after 1.0 s down",
        ),
    ]


def test_hub_alerts_a_hosts_timeline_follows_its_own_clock() -> None:
    """Pure: the host's "now" is its anchor plus the hub's elapsed time; a replayed entry does
    not move it, a later one or a clock set back does."""
    timeline = HostTimeline.starting("b", 1, 5000.0, hub_now=100.0)
    assert timeline.agent_now(160.0) == 5060.0
    timeline.receive(2, 5010.0, 160.0)  # made 50 s ago, arriving now: replayed
    assert timeline.agent_now(160.0) == 5060.0
    timeline.receive(3, 5070.0, 170.0)  # stamped now: the new anchor
    assert timeline.agent_now(180.0) == 5080.0
    timeline.receive(4, 3000.0, 180.0)  # made after seq 3, stamped before it: set back
    assert timeline.agent_now(190.0) == 3010.0
    timeline.receive(4, 9000.0, 190.0)  # seen already
    assert timeline.agent_now(190.0) == 3010.0
    # A quiet host: an hour later its clock is set back 15 min. Its entry alone would look
    # 15 min old; its heartbeat says what its clock says now.
    timeline.receive(5, 3020.0, 200.0)
    timeline.report(3020.0 + 3600 - 900, 3800.0)
    assert timeline.agent_now(3800.0) == 5720.0
    timeline.receive(6, 5721.0, 3801.0)  # a failure just after: not old
    assert timeline.agent_now(3801.0) - 5721.0 == 0.0
    # Known from a report only: any entry is later by seq; a replayed one leaves the anchor.
    fresh = HostTimeline.reported("c", 9000.0, hub_now=50.0)
    fresh.receive(1, 5000.0, 50.0)
    assert fresh.agent_now(60.0) == 9010.0


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


def test_hub_alerts_a_replay_in_one_batch_keeps_its_incidents_apart(
    fresh_database: str, sink: AlertSink
) -> None:
    """An outbox replay within the horizon, in one batch: down, running for 94 s (recovered
    after 10 s), down again. The recovery is confirmed where it fell due on the host's own
    timeline, before the second down: three alerts, in order, the downtime the agent's."""

    async def main() -> list[Any]:
        async with opened_store(fresh_database) as store:
            hub = FleetAlerter(
                hub_config("hub-1", sink.url, recovered_after="10s"),
                store.pool,
                wall_clock=lambda: NOW + 110.0,
            )
            hub.start()
            boot = new_boot()
            replay = [
                entry("farm-20", boot, 1, "svc", "unresponsive", NOW + 1, failure=True),
                entry("farm-20", boot, 2, "svc", "running", NOW + 6),
                entry("farm-20", boot, 3, "svc", "unresponsive", NOW + 100, failure=True),
            ]
            hub.receive_batch(await store.write_batch(storable(replay)))
            await hub.close(timeout=20)
            return await rows(store, "SELECT key, message FROM alerts ORDER BY created_at, key")

    found = [(key.rsplit("/", 1)[1], key.split("/")[2], message) for key, message in run(main)]
    assert found == [
        ("1", "down", "farm-20/svc down: unresponsive at seq 1"),
        ("2", "recovered", "farm-20/svc is running again after 5.0 s down"),
        ("3", "down", "farm-20/svc down: unresponsive at seq 3"),
    ]
