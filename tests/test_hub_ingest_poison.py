"""The review's poison messages against the real broker and database: none of them blocks the
queue; each is refused alone (counted) or mended and stored, and the good message after it is
stored. Also a batch that fails to be written for its data, by PostgreSQL or otherwise: written
again one by one, only the culprit dropped."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from heartwatch.core.fleetwire import Envelope, batch_routing_key, encode, encode_batch
from heartwatch.hub.ingest import Ingest
from heartwatch.hub.metrics import HubCounters
from heartwatch.hub.store import BatchResult, FleetStore, Storable
from hubstore_support import (
    envelope,
    heartbeat,
    new_boot,
    opened_store,
    rows,
    run,
    service_item,
    snapshot,
    transition,
)
from test_hub_ingest import message, publish, queue_depth, until


def test_hub_ingest_poison_messages_never_block_what_follows(
    rabbitmq: str, unique_exchange: str, fresh_database: str
) -> None:
    """Finding 2: JSON nested 50,000 deep (RecursionError in the decoder) refused alone and
    counted. Finding 3: a snapshot listing a service twice (the last item kept) and a
    heartbeat with a lone surrogate (mended to U+FFFD) stored. Finding 14: a note with a NUL
    (mended, kept) at seq 40 of a boot the hub saw nothing of: stored, and a gap counted.
    After each, a good message: stored."""
    boot = "c" * 32
    deep = (
        '{"v":1,"type":"heartbeat","host":"deep","boot":"' + boot + '","seq":0,"at":1,'
        '"body":{"x":' + "[" * 50000 + "]" * 50000 + "}}"
    ).encode()
    twice = [service_item("dup"), service_item("dup", "failed", "the last one")]
    surrogate = encode(heartbeat("surr", boot)).replace(
        b'"config_hash":"abc"', b'"config_hash":"\\ud800"'
    )
    assert b"\\ud800" in surrogate
    note_body = {
        "id": 40,
        "at": 1.0,
        "kind": "note",
        "service": "svc",
        "reason": "collector said: bad\u0000frame",
        "state": None,
        "previous": None,
        "detail": None,
    }
    note = envelope("entry", "h1", new_boot(), 40, note_body)

    def good(host: str) -> tuple[str, bytes]:
        return message(transition(host, new_boot(), 1, "svc", "running"))

    async def main() -> tuple[HubCounters, list[Any], list[Any], list[Any], list[Any], int]:
        counters = HubCounters()
        async with opened_store(fresh_database) as store:
            ingest = Ingest(rabbitmq, unique_exchange, store, counters)
            await ingest.start()
            try:
                await publish(
                    rabbitmq,
                    unique_exchange,
                    [
                        ("deep.-.heartbeat", deep),
                        good("good1"),
                        message(snapshot("dupsnap", boot, 0, twice)),
                        good("good2"),
                        ("surr.-.heartbeat", surrogate),
                        good("good3"),
                        message(note),
                        good("good4"),
                    ],
                )

                async def settled() -> bool:
                    found = await rows(store, "SELECT count(*) FROM hosts WHERE host ~ '^good'")
                    return found == [(4,)] and sum(counters.rejected.values()) >= 1

                await until(settled, "the good messages stored")
            finally:
                await ingest.close()
            hosts = await rows(store, "SELECT host, config_hash FROM hosts ORDER BY host")
            services = await rows(
                store, "SELECT service, state, reason FROM services WHERE host = 'dupsnap'"
            )
            notes = await rows(store, "SELECT seq, reason FROM events WHERE host = 'h1'")
            goods = await rows(store, "SELECT host FROM events WHERE host ~ '^good' ORDER BY 1")
            return (
                counters,
                hosts,
                services,
                notes,
                goods,
                await queue_depth(rabbitmq, unique_exchange),
            )

    counters, hosts, services, notes, goods, depth = run(main)
    # The lead may bound the depth in fleetwire.decode (a FleetWireError of its own code):
    # either way the message is counted once, under one code.
    assert sum(counters.rejected.values()) == 1, counters.rejected
    assert "deep" not in {host for host, _ in hosts}
    assert ("surr", "\ufffd") in hosts
    assert services == [("dup", "failed", "the last one")]
    assert notes == [(40, "collector said: bad\ufffdframe")]
    assert goods == [("good1",), ("good2",), ("good3",), ("good4",)]
    assert counters.event_gaps == 1  # h1's seq 40 with nothing before it
    assert depth == 0


class _BrokenForOneHost(FleetStore):
    """The real store, but a batch holding the host ``poison`` fails with an error that is
    not the database's (as a text Python cannot encode did before the store's check mended
    it): what the ingest must take as that message's fault, not the database's."""

    async def write_batch(self, batch: Sequence[Storable]) -> BatchResult:
        if any(item.envelope.host == "poison" for item in batch):
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return await super().write_batch(batch)


def test_hub_ingest_a_batch_failing_for_its_data_is_written_one_by_one(
    rabbitmq: str, unique_exchange: str, fresh_database: str
) -> None:
    """A write that fails for a message's data (an error outside psycopg; PostgreSQL refusing
    an index row too large, SQLSTATE 54000, once taken for a database failure): the batch is
    written again message by message; only the culprits are dropped, counted ``store`` and
    ``database``; everything else is stored and the queue drains."""
    boot = new_boot()
    events = [transition("farm-20", boot, seq, "svc", "running") for seq in range(1, 41)]
    # Random hex is ~2:1 compressible: 40,000 characters stay far over the 2,712 bytes of a
    # btree index row (events_host_service_at), and under the store's TEXT_MAX.
    huge: Envelope = transition("farm-20", boot, 41, os.urandom(20_000).hex(), "running")
    poison = transition("poison", new_boot(), 1, "svc", "running")

    async def main() -> tuple[HubCounters, list[Any], int]:
        counters = HubCounters()
        async with opened_store(fresh_database) as plain:
            store = _BrokenForOneHost(plain.pool)
            ingest = Ingest(rabbitmq, unique_exchange, store, counters)
            await ingest.start()
            try:
                await publish(
                    rabbitmq,
                    unique_exchange,
                    [
                        *map(message, events[:20]),
                        message(poison),
                        (batch_routing_key("farm-20"), encode_batch([encode(huge)])),
                        *map(message, events[20:]),
                    ],
                )

                async def settled() -> bool:
                    count = await rows(store, "SELECT count(*) FROM events")
                    return count == [(40,)] and sum(counters.rejected.values()) >= 2

                await until(settled, "all handled")
            finally:
                await ingest.close()
            stored = await rows(store, "SELECT host, count(*), max(seq) FROM events GROUP BY 1")
            return counters, stored, await queue_depth(rabbitmq, unique_exchange)

    counters, stored, depth = run(main)
    assert counters.rejected == {"store": 1, "database": 1}
    assert stored == [("farm-20", 40, 40)]
    assert counters.events == 40
    assert depth == 0
