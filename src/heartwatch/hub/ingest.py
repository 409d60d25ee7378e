"""The broker's side of the hub: the agents' messages, in batches, into the store.

One shared durable queue, ``events_queue(exchange)``, bound to every three-word key
(``*.*.*``: events, batches of them and reports, not log streams) on the fleet's durable topic
exchange, with a *single active consumer*: one hub ingests at a time and another takes over
when it goes (its unacknowledged messages are delivered again; the store's ``ON CONFLICT``
makes that harmless). Messages are decoded as they arrive and written in batches of up to
``BATCH_MAX`` events (or what came within ``BATCH_WAIT`` of the first), each in one
transaction, acknowledged (``multiple=True``) only after it committed. At most ``PREFETCH``
messages are unacknowledged at once, and about ``PREFETCH_BYTES`` of them (the channel's
window follows how big the messages are: ``_open_window``), which bounds this process's
memory whether the agents send single events or batches.

A message is one envelope or a batch of a host's events (``fleetwire.decode_batch``): a
batch becomes its events in the batch being written, its bad elements refused one by one.
Bad input never blocks the queue: a message (or a batch's element) that ``fleetwire`` or the
store's checks refuse is counted by code, logged once per code per minute, and acknowledged
(dropped: sent again it would be refused again). That includes an envelope naming another host
than its routing key (``host_mismatch``): the broker's topic permissions vouch for the key's
host word (a user per host), not for what the message says inside.

A database that fails is another matter: nothing is acknowledged, the batch is tried again
with a growing delay, and the messages wait in the queue meanwhile (up to the prefetch here,
the rest at the broker): nothing is lost. A batch that the database refuses for its data
(``store.database_failed`` tells a refusal from a failure by its SQLSTATE class; an error
that is not the database's, e.g. a text Python cannot encode, is the data's too: retried it
would fail forever) is written again one message at a time, so only the culprit is dropped
(and counted). A message that fails to decode in any way, not only as ``fleetwire`` refuses
(JSON nested too deep: ``RecursionError``), is refused alone, never given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import psycopg
from loguru import logger

from heartwatch.core.fleetwire import (
    BATCH_BYTES,
    EVENTS_BINDING,
    EVENTS_QUEUE_ARGUMENTS,
    FleetWireError,
    events_queue,
)
from heartwatch.core.redact import redact
from heartwatch.core.throttle import LogThrottle
from heartwatch.hub.store import (
    BatchResult,
    FleetStore,
    Storable,
    database_failed,
    storable_messages,
)

if TYPE_CHECKING:
    from aio_pika.abc import AbstractQueue, AbstractRobustChannel, AbstractRobustConnection
    from aiormq.abc import DeliveredMessage

    from heartwatch.hub.metrics import HubCounters

PREFETCH: Final = 5000  # messages unacknowledged at once (per consumer)
PREFETCH_BYTES: Final = 8 * 1024 * 1024  # message bytes unacknowledged at once (the window)
PREFETCH_MIN: Final = 8  # messages: the window never closes below this
BATCH_MAX: Final = 2000  # events in one transaction (a message's events are never split)
BATCH_WAIT: Final = 0.02  # seconds after a batch's first message: more may come with it
REJECT_LOG_INTERVAL: Final = 60.0
RETRY_FIRST: Final = 0.5
RETRY_MAX: Final = 5.0  # a database back is used within seconds (meanwhile hosts only go stale)


class Ingest:
    """Consume the fleet's messages and write them; ``on_batch`` gets each committed result."""

    def __init__(
        self,
        broker: str,
        exchange: str,
        store: FleetStore,
        counters: HubCounters,
        on_batch: Callable[[BatchResult], None] = lambda result: None,
        *,
        batch_max: int = BATCH_MAX,
        batch_wait: float = BATCH_WAIT,
        prefetch: int = PREFETCH,
    ) -> None:
        self.broker = broker
        self.exchange = exchange
        self.store = store
        self.counters = counters
        self.on_batch = on_batch
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.prefetch = prefetch
        self.connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._pending: list[tuple[DeliveredMessage, list[Storable]]] = []
        self._pending_events = 0
        self._window: int | None = None  # the channel-wide prefetch in force, in messages
        self._arrived = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._throttle = LogThrottle(REJECT_LOG_INTERVAL)

    async def start(self) -> None:
        """Connect (raises if the broker cannot be reached now; later outages are reconnected
        by aio-pika), declare the exchange and the queue, and consume."""
        import aio_pika

        self.connection = await aio_pika.connect_robust(self.broker, timeout=10)
        try:
            self._channel = await self.connection.channel()
            await self._channel.set_qos(prefetch_count=self.prefetch)
            await self._open_window(None)
            exchange = await self._channel.declare_exchange(
                self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            self._queue = await self._channel.declare_queue(
                events_queue(self.exchange), durable=True, arguments=dict(EVENTS_QUEUE_ARGUMENTS)
            )
            # Three words: events and reports (<host>.<service>.<kind>, batches included),
            # never the four-word keys of log streams (<host>.<service>.log.<stream>), which
            # go to the hub that asked for them (hub/logs.py). A queue declared by an older hub
            # was bound to everything: that binding is taken away (a no-op when absent).
            await self._queue.bind(exchange, routing_key=EVENTS_BINDING)
            await self._queue.unbind(exchange, routing_key="#")
        except BaseException:
            await self.connection.close()  # a next attempt opens its own
            self.connection = None
            raise
        self._writer = asyncio.create_task(self._write_loop(), name="hub ingest")
        await self._consume()
        # The consumer is aiormq's own (below aio-pika's, which wraps every message in an
        # object of ~25 attributes: a quarter of the hub's CPU per event), so aio-pika does
        # not restore it after a reconnect: this does, once the channel is open again.
        self._channel.reopen_callbacks.add(self._on_reopen)
        logger.info(
            "hub ingest: consuming {} from {}", events_queue(self.exchange), redact(self.broker)
        )

    async def close(self) -> None:
        """Stop consuming; the batch being written is finished (or left unacknowledged)."""
        self._closing = True
        self._arrived.set()
        if self._writer is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._writer, 10.0)
        if self.connection is not None:
            await self.connection.close()

    async def _consume(self) -> None:
        assert self._channel is not None
        channel = await self._channel.get_underlay_channel()
        await channel.basic_consume(events_queue(self.exchange), self._receive, no_ack=False)

    async def _on_reopen(self, channel: object) -> None:
        if not self._closing:
            self._window = None  # a new channel: aio-pika restores only the per-consumer limit
            await self._open_window(None)
            await self._consume()
            logger.info("hub ingest: consuming again after the broker connection came back")

    async def _open_window(self, biggest: int | None) -> None:
        """The channel's prefetch (RabbitMQ: ``global`` = the channel's, changeable while
        consuming) sized so that a full window holds about ``PREFETCH_BYTES`` of messages as
        big as the biggest of the last batch: AMQP counts messages, and a batch message is a
        few hundred times a single event, so what this process holds (and decodes) stays
        bounded whatever the agents send. Before any batch (``None``): as if every message
        were a full batch (``BATCH_BYTES``). It shrinks at once, and grows by doubling at
        most, one batch at a time: small messages at the queue's head (snapshots, singles)
        must not open it to a backlog of batches behind them."""
        size = BATCH_BYTES if biggest is None else max(1, biggest)
        wanted = max(PREFETCH_MIN, min(self.prefetch, PREFETCH_BYTES // size))
        if self._window is not None:
            wanted = min(wanted, self._window * 2)
            if self._window / 2 < wanted < self._window * 2:
                return
        if self._channel is None:
            return
        try:
            channel = await self._channel.get_underlay_channel()
            await channel.basic_qos(prefetch_count=wanted, global_=True)
        except Exception:  # the channel is gone: its reopening sets the window again
            return
        self._window = wanted

    async def _receive(self, message: DeliveredMessage) -> None:
        storable = self._decoded(message)
        self._pending.append((message, storable))
        self._pending_events += max(1, len(storable))
        self._arrived.set()

    def _take(self) -> list[tuple[DeliveredMessage, list[Storable]]]:
        """Messages from the front until they hold ``batch_max`` events (a message's events
        are never split: a batch may pass the bound by one message's)."""
        events = 0
        count = 0
        for _message, storable in self._pending:
            weight = max(1, len(storable))  # a message refused whole still counts as one
            if count and events + weight > self.batch_max:
                break
            events += weight
            count += 1
        batch, self._pending = self._pending[:count], self._pending[count:]
        self._pending_events -= events
        return batch

    async def _write_loop(self) -> None:
        while not self._closing:
            await self._arrived.wait()
            if self._closing:
                return
            if self._pending_events < self.batch_max:
                await asyncio.sleep(self.batch_wait)  # let the rest of a burst join
            batch = self._take()
            if not self._pending:
                self._arrived.clear()
            if batch:
                try:
                    await self._write(batch)
                except Exception:
                    # A bug, not bad input (that is refused by code) nor the database (retried):
                    # said with its traceback; the batch goes back to the queue (sent again,
                    # stored once), and the ingest itself goes on.
                    logger.exception("hub ingest: a batch of {} messages failed", len(batch))
                    await asyncio.sleep(RETRY_FIRST)
                    await self._settle([message for message, _ in batch], requeue=True)

    async def _write(self, batch: list[tuple[DeliveredMessage, list[Storable]]]) -> None:
        messages = [message for message, _ in batch]
        storable = [item for _, items in batch for item in items]
        await self._open_window(max(len(message.body) for message in messages))
        delay = RETRY_FIRST
        while True:
            started = time.perf_counter()
            try:
                result = await self.store.write_batch(storable)
            except Exception as error:
                if not database_failed(error):
                    # Refused for its data, or an error no retry mends (a text Python cannot
                    # encode...): one by one, so that only the culprit is dropped.
                    logger.warning(
                        "hub ingest: a batch refused for its data ({}: {}): one by one",
                        type(error).__name__,
                        redact(str(error).strip())[:300],
                    )
                    alone = await self._write_one_by_one(storable)
                    if alone is None:
                        return  # closing: left unacknowledged (delivered again)
                    result = alone
                    break
                if self._closing:
                    return  # left unacknowledged: the queue delivers them again
                logger.warning(
                    "hub ingest: the database failed ({}: {}); {} messages wait, again in {} s",
                    type(error).__name__,
                    redact(str(error).strip())[:300],
                    len(messages),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
                continue
            break
        self.counters.receive_batch(result.events, time.perf_counter() - started, result.gaps)
        await self._settle(messages)
        try:
            self.on_batch(result)
        except Exception:  # a listener's bug must not stop the ingest
            logger.exception("hub ingest: the batch listener failed")

    async def _write_one_by_one(self, storable: list[Storable]) -> BatchResult | None:
        """Each message in a transaction of its own; one refused for its data is dropped
        (counted: ``database`` when PostgreSQL refused it, ``store`` for another error); a
        database that fails meanwhile is waited for. None: closing before the end."""
        total = BatchResult()
        for item in storable:
            delay = RETRY_FIRST
            while True:
                try:
                    result: BatchResult | None = await self.store.write_batch([item])
                except Exception as error:
                    if database_failed(error):
                        if self._closing:
                            return None
                        logger.warning(
                            "hub ingest: the database failed ({}) writing one by one; again in"
                            " {} s",
                            type(error).__name__,
                            delay,
                        )
                        await asyncio.sleep(delay)
                        delay = min(RETRY_MAX, delay * 2)
                        continue
                    code = "database" if isinstance(error, psycopg.Error) else "store"
                    detail = f"{type(error).__name__}: {str(error).strip()}"
                    self._reject(FleetWireError(code, redact(detail)[:200]))
                    result = None
                break
            if result is None:
                continue
            total.events += result.events
            total.reported.update(result.reported)
            total.gaps += result.gaps
            total.entries.extend(result.entries)
            total.back.extend(result.back)
            total.hosts |= result.hosts
            total.services |= result.services
            total.commands |= result.commands
        return total

    def _decoded(self, message: DeliveredMessage) -> list[Storable]:
        """The message's events (one, or a batch's), each bad one refused alone."""
        try:
            storable, refused = storable_messages(message.body, message.routing_key or "")
        except FleetWireError as error:
            self._reject(error)
            return []
        except Exception as error:
            # Still this message's fault alone, never a reason to give the batch back (it
            # would come first again, forever): JSON nested deeper than the decoder's stack
            # (RecursionError), a message too large to decode (MemoryError), a check's bug.
            code = "json" if isinstance(error, RecursionError) else "decode"
            self._reject(FleetWireError(code, f"{type(error).__name__}: {error}"[:200]))
            return []
        for fault in refused:
            self._reject(fault)
        return storable

    def _reject(self, error: FleetWireError) -> None:
        self.counters.receive_rejected(error.code)
        suppressed = self._throttle.admit(error.code, time.monotonic())
        if suppressed is not None:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            logger.warning("hub ingest: a message refused and dropped: {}{}", error, more)

    async def _settle(self, messages: list[DeliveredMessage], *, requeue: bool = False) -> None:
        """One ack (or, ``requeue``, one nack giving them back) per channel, for the batch's
        last message there (``multiple``: and every one before it). A channel that closed
        meanwhile cannot take it: its messages come again on the new one, stored once."""
        last: dict[int, DeliveredMessage] = {}
        for message in messages:
            last[id(message.channel)] = message
        gone = 0
        for message in last.values():
            channel, tag = message.channel, message.delivery_tag
            try:
                if channel.is_closed or tag is None:
                    raise ConnectionError("the channel closed")
                if requeue:
                    await channel.basic_nack(tag, multiple=True, requeue=True)
                else:
                    await channel.basic_ack(tag, multiple=True)
            except Exception:  # the channel's end, in any of its forms
                gone += 1
        if gone:
            logger.info(
                "hub ingest: {} channel(s) closed before their messages could be settled"
                " (those come again, and are stored once)",
                gone,
            )
