"""The hub's ingest against the real broker and database: stored once, bad messages counted and
skipped (the queue never blocks), batches as their events, envelopes of another host than their
routing key refused, a database outage waits (nothing lost), one active consumer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import aio_pika
import psycopg

from heartwatch.core.fleetwire import (
    Envelope,
    batch_routing_key,
    encode,
    encode_batch,
    event_routing_key,
    events_queue,
    log_routing_key,
)
from heartwatch.hub.ingest import Ingest
from heartwatch.hub.metrics import HubCounters
from heartwatch.hub.store import FleetStore
from hubstore_support import heartbeat, new_boot, opened_store, rows, run, transition

WAIT = 30.0  # seconds: a generous bound for what takes milliseconds


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT} s: {what}")
        await asyncio.sleep(0.05)


async def publish(url: str, exchange_name: str, bodies: list[tuple[str, bytes]]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for key, body in bodies:
            await exchange.publish(
                aio_pika.Message(body, content_type="application/json"), routing_key=key
            )


def message(envelope: Envelope) -> tuple[str, bytes]:
    return event_routing_key(envelope), encode(envelope)


async def queue_depth(url: str, exchange: str) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(events_queue(exchange), passive=True)
        return int(queue.declaration_result.message_count or 0)


async def stored(store: FleetStore) -> int:
    return int((await rows(store, "SELECT count(*) FROM events"))[0][0])


def test_hub_ingest_stores_each_event_once_and_skips_broken_messages(
    rabbitmq: str, unique_exchange: str, fresh_database: str
) -> None:
    """Good events stored (a duplicate once); a non-JSON message counted by code and
    acknowledged; a NUL and a lone surrogate mended (U+FFFD) and stored: nothing left in the
    queue, nothing blocked behind them."""
    boot = new_boot()
    good = [transition("farm-01", boot, seq, "svc", "running") for seq in range(1, 51)]
    nul = transition("farm-01", boot, 51, "svc", "running", "bad\u0000reason")
    # A lone surrogate: JSON to Python, not text to PostgreSQL (mended by the store's check).
    surrogate = (
        "farm-01.svc.transition",
        encode(transition("farm-01", boot, 52, "svc", "running")).replace(
            b'"reason":""', b'"reason":"\\ud800"'
        ),
    )

    async def main() -> tuple[HubCounters, int, int]:
        counters = HubCounters()
        async with opened_store(fresh_database) as store:
            ingest = Ingest(rabbitmq, unique_exchange, store, counters)
            await ingest.start()
            try:
                await publish(
                    rabbitmq,
                    unique_exchange,
                    [
                        message(heartbeat("farm-01", boot)),
                        ("farm-01.-.entry", b"{not json"),
                        *map(message, good[:30]),
                        message(nul),
                        surrogate,
                        *map(message, good[20:]),  # 20..29 again: a redelivery's duplicates
                    ],
                )
                await until(lambda: _settled(counters, store, 52, 1), "all handled")
            finally:
                await ingest.close()
            return counters, await stored(store), await queue_depth(rabbitmq, unique_exchange)

    counters, count, depth = run(main)
    assert count == 52
    assert counters.events == 52
    assert counters.rejected == {"json": 1}
    assert depth == 0


def test_hub_ingest_a_batch_message_becomes_its_events_each_bad_one_refused_alone(
    rabbitmq: str, unique_exchange: str, fresh_database: str
) -> None:
    """Batches (``<host>.-.batch``) stored as their events, with singles beside them; a
    batch's bad elements (a broken one, another host's) dropped alone and counted, one with a
    lone surrogate mended and stored; envelopes naming another host than their routing key
    refused (a single and a batch's); a log stream's four-word key never reaches the events
    queue; the queue drains."""
    boot, other = new_boot(), new_boot()
    events = [transition("farm-05", boot, seq, "svc", "running") for seq in range(1, 301)]
    encoded = [encode(e) for e in events]
    broken = encode(transition("farm-05", boot, 1, "svc", "running")).replace(
        b'"seq":1', b'"seq":0'
    )
    elsewhere = encode(transition("farm-06", other, 1, "svc", "running"))
    surrogate = encode(transition("farm-05", boot, 301, "svc", "running")).replace(
        b'"reason":""', b'"reason":"\\ud800"'
    )
    impostor = [encode(transition("farm-07", other, seq, "svc", "failed")) for seq in (1, 2)]
    first = encode_batch([*encoded[:150], broken, elsewhere, surrogate])
    second = encode_batch(encoded[140:])  # 140..149 again: stored once
    genuine = transition("farm-08", new_boot(), 1, "svc", "running")

    async def main() -> tuple[HubCounters, list[tuple[object, ...]], int]:
        counters = HubCounters()
        async with opened_store(fresh_database) as store:
            ingest = Ingest(rabbitmq, unique_exchange, store, counters)
            await ingest.start()
            try:
                await publish(
                    rabbitmq,
                    unique_exchange,
                    [
                        (batch_routing_key("farm-05"), first),
                        ("farm-08.svc.transition", impostor[0]),  # says farm-07
                        (batch_routing_key("farm-08"), encode_batch(impostor)),
                        (log_routing_key("farm-05", "svc", "s1"), b'{"line": "x"}'),
                        (batch_routing_key("farm-05"), second),
                        message(genuine),
                    ],
                )
                await until(lambda: _settled(counters, store, 302, 5), "all handled")
            finally:
                await ingest.close()
            by_host = await rows(
                store, "SELECT host, count(*), max(seq) FROM events GROUP BY host ORDER BY host"
            )
            return counters, by_host, await queue_depth(rabbitmq, unique_exchange)

    counters, by_host, depth = run(main)
    assert by_host == [("farm-05", 301, 301), ("farm-08", 1, 1)]
    assert counters.events == 302
    assert counters.rejected == {"seq": 1, "host_mismatch": 4}
    assert depth == 0


async def _settled(counters: HubCounters, store: FleetStore, events: int, rejected: int) -> bool:
    return sum(counters.rejected.values()) >= rejected and await stored(store) >= events


def test_hub_ingest_a_database_outage_loses_nothing(
    rabbitmq: str, unique_exchange: str, fresh_database: str
) -> None:
    """The database refuses connections for a while: the batch is retried, the messages wait
    unacknowledged, and every event is stored once when it is back."""
    boot = new_boot()
    events = [transition("farm-02", boot, seq, "svc", "running") for seq in range(1, 101)]
    name = fresh_database.rpartition("/")[2]
    admin = fresh_database.rpartition("/")[0] + "/postgres"

    async def block(allow: bool) -> None:
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as connection:
            await connection.execute(
                f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allow).lower()}'
            )
            if not allow:
                await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    [name],
                )

    async def main() -> tuple[int, int, int]:
        counters = HubCounters()
        async with opened_store(fresh_database) as store:
            ingest = Ingest(rabbitmq, unique_exchange, store, counters)
            await ingest.start()
            try:
                await publish(rabbitmq, unique_exchange, list(map(message, events[:50])))
                await until(lambda: _settled(counters, store, 50, 0), "the first half stored")
                await block(allow=False)
                try:
                    await publish(rabbitmq, unique_exchange, list(map(message, events[50:])))
                    await asyncio.sleep(1.5)  # the ingest fails and retries meanwhile
                    during = counters.events
                finally:
                    await block(allow=True)
                await until(lambda: _settled(counters, store, 100, 0), "the rest stored")
            finally:
                await ingest.close()
            count = await stored(store)
            return during, count, await queue_depth(rabbitmq, unique_exchange)

    during, count, depth = run(main, timeout=120)
    assert during == 50  # nothing written (nor acknowledged) while the database was away
    assert count == 100
    assert depth == 0


def test_hub_ingest_one_hub_consumes_at_a_time_and_another_takes_over(
    rabbitmq: str, unique_exchange: str, fresh_database: str
) -> None:
    """Two hubs' ingests on one queue: the first consumes everything; when it stops, the
    second takes over; every event stored once."""
    boot = new_boot()
    events = [transition("farm-03", boot, seq, "svc", "running") for seq in range(1, 41)]

    async def main() -> tuple[int, int, int]:
        first_counters, second_counters = HubCounters(), HubCounters()
        async with opened_store(fresh_database) as store:
            first = Ingest(rabbitmq, unique_exchange, store, first_counters)
            second = Ingest(rabbitmq, unique_exchange, store, second_counters)
            await first.start()
            await second.start()
            try:
                await publish(rabbitmq, unique_exchange, list(map(message, events[:20])))
                await until(lambda: _settled(first_counters, store, 20, 0), "the first hub")
                await first.close()
                await publish(rabbitmq, unique_exchange, list(map(message, events[20:])))
                await until(lambda: _settled(second_counters, store, 40, 0), "the second hub")
            finally:
                await second.close()
            return first_counters.events, second_counters.events, await stored(store)

    first_events, second_events, count = run(main)
    assert (first_events, second_events, count) == (20, 20, 40)


def test_hub_ingest_consumes_again_after_a_broker_outage(
    rabbitmq: str,
    unique_exchange: str,
    fresh_database: str,
    broker_outage: Callable[[], contextlib.AbstractContextManager[None]],
) -> None:
    """The broker stopped and started: the ingest's connection comes back and it consumes
    again (its consumer restored); every event stored once."""
    boot = new_boot()
    events = [transition("farm-04", boot, seq, "svc", "running") for seq in range(1, 201)]

    async def main() -> tuple[int, int]:
        counters = HubCounters()
        async with opened_store(fresh_database) as store:
            ingest = Ingest(rabbitmq, unique_exchange, store, counters)
            await ingest.start()
            try:
                await publish(rabbitmq, unique_exchange, list(map(message, events[:100])))
                await until(lambda: _settled(counters, store, 100, 0), "before the outage")
                outage = broker_outage()
                await asyncio.to_thread(outage.__enter__)
                await asyncio.to_thread(outage.__exit__, None, None, None)
                await publish_when_up(rabbitmq, unique_exchange, list(map(message, events)))
                await until(lambda: _settled(counters, store, 200, 0), "after the outage")
            finally:
                await ingest.close()
            return await stored(store), await queue_depth(rabbitmq, unique_exchange)

    count, depth = run(main, timeout=240)
    assert count == 200
    assert depth == 0


async def publish_when_up(url: str, exchange: str, bodies: list[tuple[str, bytes]]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            await publish(url, exchange, bodies)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_hub_ingest_writes_whole_messages_up_to_batch_max_events() -> None:
    """A transaction holds about ``batch_max`` events, whatever the messages carry: a batch
    message's events are never split (a larger one goes alone), a refused one counts as one."""
    ingest = Ingest("amqp://127.0.0.1:1/", "x", None, HubCounters(), batch_max=1000)  # type: ignore[arg-type]
    sizes = [400, 400, 400, 0, 1, 1500, 3]
    ingest._pending = [(object(), [object()] * size) for size in sizes]  # type: ignore[misc]
    ingest._pending_events = sum(max(1, size) for size in sizes)
    taken = []
    while ingest._pending:
        taken.append([len(items) for _, items in ingest._take()])
    assert taken == [[400, 400], [400, 0, 1], [1500], [3]]
    assert ingest._pending_events == 0


def test_hub_ingest_window_follows_the_messages_size_growing_by_doubling() -> None:
    """The channel's prefetch holds about PREFETCH_BYTES of messages: before any batch as if
    all were full batches; small messages open it by doubling, one batch at a time (the
    snapshots at a backlog's head must not let all its batches in); big ones close it at once."""
    from heartwatch.hub import ingest as module

    class Channel:
        def __init__(self) -> None:
            self.windows: list[int] = []

        async def get_underlay_channel(self) -> Channel:
            return self

        async def basic_qos(self, *, prefetch_count: int, global_: bool) -> None:
            assert global_
            self.windows.append(prefetch_count)

    async def main() -> list[int]:
        ingest = Ingest("amqp://127.0.0.1:1/", "x", None, HubCounters())  # type: ignore[arg-type]
        channel = Channel()
        ingest._channel = channel  # type: ignore[assignment]
        await ingest._open_window(None)
        for _ in range(12):
            await ingest._open_window(400)  # single events
        await ingest._open_window(200_000)  # a batch message
        await ingest._open_window(210_000)  # about the same: left as it is
        return channel.windows

    windows = run(main)
    first = module.PREFETCH_BYTES // module.BATCH_BYTES
    assert windows[0] == first
    growing = windows[1:-1]
    assert growing == [first * 2**n for n in range(1, len(growing) + 1) if first * 2**n < 5000]
    assert max(windows) <= module.PREFETCH
    assert windows[-1] == module.PREFETCH_BYTES // 200_000
