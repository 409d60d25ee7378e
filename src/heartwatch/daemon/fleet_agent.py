"""The fleet agent: what this daemon tells the hub, through the broker (``[fleet]``).

What is published (``core/fleetwire.py`` has the shapes):

- every journal entry as an ``entry`` event, the per-minute counts (``counts``, the same
  differences the history stores: ``recorder.count_differences``) and the replies to the
  hub's commands (``reply``). Events are numbered 1, 2, 3… in this boot and first written to
  the outbox (``fleet_outbox.py``); they leave it when the broker confirmed them. Several
  waiting at once (a replay, a burst) go in order as batch messages (``<host>.-.batch``, up to
  ``fleetwire.MAX_BATCH`` events or ``BATCH_BYTES``), a lone one as itself.
- after every (re)connect, once the outbox is replayed in order: a ``snapshot`` of every
  service (as ``GET /api/v1/services`` answers), then one every ``snapshot_interval``.
- a ``heartbeat`` every ``heartbeat_interval``, only while connected (non-persistent, expiring
  after three intervals: an old one says nothing true).

Supervision never waits for the broker: the journal listener only appends to the outbox's
in-memory batch, and all broker I/O runs in the agent's own task. A broker away, refusing or
slow only makes the outbox grow (bounded: ``outbox_max``). Connecting is one loop of our own
(``aio_pika.connect``, retried with a growing pause, at most ``MAX_RETRY_DELAY``) rather than
``connect_robust``: its first connection is not retried, and what must follow every connect
(declare, replay, then the snapshot) is plainer as the first lines of a session than as
reconnect callbacks. A broker problem is logged once per outage and reason, without the URL's
password (as ``queue_watch.py`` does), and once when connected again.

Events are published with ``mandatory``: while no queue is bound to the exchange (no hub has
ever started), the broker returns them instead of dropping them, and they wait in the outbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection, AbstractExchange, DeliveryMode
from loguru import logger

import heartwatch
from heartwatch.config import FleetConfig
from heartwatch.core import fleetwire
from heartwatch.core.fleetcommands import Command, ReplyStatus, reply_body
from heartwatch.core.journal import JournalEntry
from heartwatch.core.redact import redact
from heartwatch.daemon.fleet_commands import FleetCommands, LocalApi
from heartwatch.daemon.fleet_outbox import Outbox, OutboxEvent
from heartwatch.daemon.queue_watch import describe_broker_error
from heartwatch.daemon.recorder import Totals, count_differences

if TYPE_CHECKING:
    from heartwatch.daemon.logfollow import LogHub
    from heartwatch.daemon.reload import Reloader
    from heartwatch.daemon.supervisor import Supervisor

OUTBOX_FILE = "fleet.sqlite3"
PUBLISH_BATCH = 2000  # events read from the outbox at once (their confirms awaited together)
PUBLISH_TIMEOUT = 30.0  # a confirm not in by then: the connection is taken for lost
CONNECT_TIMEOUT = 10.0
FIRST_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 10.0  # a broker back from an outage is used within this (100 hosts: 10 tries/s)
UNROUTED_RETRY_DELAY = 5.0  # no queue bound to the exchange yet: try again this much later
FLUSH_GRACE = 2.0  # at shut-down, seconds to wait for the broker's last confirms
PRUNE_RAN_EVERY = 6 * 3600.0


class SessionEnded(Exception):
    """The connection closed under a session (the broker went away, or closed it)."""


class FleetAgent:
    """One per daemon with ``[fleet]``; ``start`` after the journal and supervisor exist."""

    def __init__(
        self,
        config: FleetConfig,
        supervisor: Supervisor,
        outbox: Outbox,
        commands: FleetCommands,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.supervisor = supervisor
        self.outbox = outbox
        self.commands = commands
        self.boot = uuid.uuid4().hex
        self.batch_max = fleetwire.MAX_BATCH  # events in one message (1: each alone)
        self.started_at = clock()
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._seq = 0
        self._stored = asyncio.Event()  # the outbox wrote a batch: there may be more to send
        self._drained = asyncio.Event()  # the outbox was empty at the last look (connected)
        self._totals = _copy(supervisor.totals())
        self._minute_timer: asyncio.TimerHandle | None = None
        self._prune_timer: asyncio.TimerHandle | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._problem: str | None = None  # the broker problem last logged
        self._problems_said: set[str] = set()  # in this outage (once per outage and reason)
        self._unrouted = False
        self._commands_problem: str | None = None
        self._snapshot_too_large = False
        self._config_hash: tuple[int, str] = (0, "")
        self._where = redact(config.broker)
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def last_seq(self) -> int:
        return self._seq

    def start(self) -> None:
        """Listen to the journal, count minutes, and connect (in the background)."""
        self._unsubscribe = self.supervisor.journal.subscribe(self.receive)
        self.outbox.on_stored = self._stored.set  # a batch on disk: there may be more to send
        self.commands.reply = self.reply
        self._arm_minute()
        self._prune_timer = self._loop.call_later(PRUNE_RAN_EVERY, self._prune_ran)
        self._task = self._loop.create_task(self._run(), name="fleet agent")

    # -- events ----------------------------------------------------------------------------

    def receive(self, entry: JournalEntry) -> None:
        """A journal listener: the entry becomes this boot's next event."""
        self._event("entry", entry.to_json())

    def reply(self, command: Command | Mapping[str, Any], status: ReplyStatus, reason: str) -> None:
        """What became of a command of the hub's, as an event."""
        self._event("reply", reply_body(command, status, reason))

    def _event(self, kind: fleetwire.MessageType, body: Mapping[str, Any]) -> None:
        if self._closed:
            return
        self._seq += 1
        envelope = fleetwire.Envelope(
            kind, self.config.host, self.boot, self._seq, self._clock(), body
        )
        self.outbox.add(
            OutboxEvent(
                self.boot,
                self._seq,
                fleetwire.event_routing_key(envelope),
                fleetwire.encode(envelope),
            )
        )

    def _arm_minute(self) -> None:
        now = self._clock()
        boundary = (int(now) // 60 + 1) * 60
        self._minute_timer = self._loop.call_at(
            self._loop.time() + boundary - now, self._on_minute, boundary - 60
        )

    def _on_minute(self, minute: int) -> None:
        self._count(minute)
        self._arm_minute()

    def _count(self, minute: int) -> None:
        totals = _copy(self.supervisor.totals())
        counts = count_differences(self._totals, totals, minute)
        self._totals = totals
        if counts:
            rows = [[c.service, c.kind, c.count] for c in counts]
            self._event("counts", {"minute": minute, "counts": rows})

    def _prune_ran(self) -> None:
        self.outbox.prune_ran()
        self._prune_timer = self._loop.call_later(PRUNE_RAN_EVERY, self._prune_ran)

    # -- reports ---------------------------------------------------------------------------

    def snapshot_body(self) -> dict[str, Any]:
        return {**self._identity(), "services": self.commands.local.services()}

    def heartbeat_body(self) -> dict[str, Any]:
        return {**self._identity(), "services": len(self.supervisor.watchdog.records())}

    def _identity(self) -> dict[str, Any]:
        return {
            "labels": dict(self.config.labels),
            "config_hash": self.config_hash(),
            "started_at": self.started_at,
            "version": heartwatch.__version__,
            "heartbeat_interval": self.config.heartbeat_interval,
        }

    def config_hash(self) -> str:
        """A digest of the configuration in force (its document as read: a reload changes it)."""
        document = self.supervisor.config.document
        if self._config_hash[0] != id(document):
            text = json.dumps(document, sort_keys=True, default=str, separators=(",", ":"))
            self._config_hash = (id(document), hashlib.sha256(text.encode()).hexdigest()[:16])
        return self._config_hash[1]

    def _report(self, kind: fleetwire.MessageType, body: Mapping[str, Any]) -> bytes:
        return fleetwire.encode(
            fleetwire.Envelope(kind, self.config.host, self.boot, self._seq, self._clock(), body)
        )

    # -- the connection --------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, run a session until the connection is lost, again; until cancelled."""
        delay = FIRST_RETRY_DELAY
        while True:
            try:
                connection = await aio_pika.connect(
                    self.config.broker,
                    timeout=CONNECT_TIMEOUT,
                    client_properties={"connection_name": f"heartwatch agent {self.config.host}"},
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:  # aio-pika raises many kinds: all mean "not now"
                self._report_problem(error)
                await asyncio.sleep(delay)
                delay = min(MAX_RETRY_DELAY, delay * 2)
                continue
            delay = FIRST_RETRY_DELAY
            try:
                await self._session(connection)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._report_problem(error)
            finally:
                self._connected = False
                self._drained.clear()
                await _close_quietly(connection)
            await asyncio.sleep(FIRST_RETRY_DELAY)

    async def _session(self, connection: AbstractConnection) -> None:
        """One connection: declare, start taking commands, replay, snapshot, then follow."""
        lost: asyncio.Future[None] = self._loop.create_future()

        def on_close(_sender: object, error: BaseException | None = None) -> None:
            if not lost.done():
                lost.set_exception(
                    error if isinstance(error, Exception) else SessionEnded("connection closed")
                )

        connection.close_callbacks.add(on_close)
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            self.config.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._connected = True
        self._said_connected()
        await self._take_commands(connection, lost)
        tasks = [
            asyncio.ensure_future(lost),
            self._loop.create_task(self._publish_events(exchange), name="fleet events"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended the session
        finally:
            self.commands.detach()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _take_commands(
        self, connection: AbstractConnection, lost: asyncio.Future[None]
    ) -> None:
        """The hub's commands, on a channel of their own: a command queue the broker refuses
        (no permission, or declared otherwise) must not keep the events from going out. That
        channel closed later by the broker ends the session (the next one takes them again)."""
        try:
            channel = await self.commands.attach(connection)
        except aiormq.exceptions.AMQPChannelError as error:
            problem = redact(str(error))[:200]
            if problem != self._commands_problem:
                self._commands_problem = problem
                logger.warning(
                    "fleet: cannot take the hub's commands (queue {!r}): {}; events are still "
                    "sent, commands tried again at the next connect",
                    fleetwire.command_queue(self.config.exchange, self.config.host),
                    problem,
                )
            return
        self._commands_problem = None

        def on_close(_sender: object, error: BaseException | None = None) -> None:
            if not lost.done() and isinstance(error, aiormq.exceptions.ChannelClosed):
                lost.set_exception(error)

        channel.close_callbacks.add(on_close)

    async def _publish_events(self, exchange: AbstractExchange) -> None:
        """Replay the outbox, snapshot, then publish events as they are stored; a snapshot
        every ``snapshot_interval`` and heartbeats meanwhile."""
        await self._send_pending(exchange)
        await self._report_dropped()
        await self._send_snapshot(exchange)
        heartbeats = self._loop.create_task(self._send_heartbeats(exchange), name="fleet beats")
        try:
            next_snapshot = self._loop.time() + self.config.snapshot_interval
            while True:
                timeout = max(0.0, next_snapshot - self._loop.time())
                try:
                    async with asyncio.timeout(timeout):
                        await self._stored.wait()
                except TimeoutError:
                    await self._send_snapshot(exchange)
                    next_snapshot = self._loop.time() + self.config.snapshot_interval
                    continue
                await self._send_pending(exchange)
                if heartbeats.done():
                    heartbeats.result()  # a failed heartbeat ends the session
        finally:
            heartbeats.cancel()
            await asyncio.gather(heartbeats, return_exceptions=True)

    async def _send_pending(self, exchange: AbstractExchange) -> None:
        """Publish what the outbox holds, in order, until it is empty; delete what the
        broker confirmed. Events no queue takes wait (and are tried again later).

        Several events waiting go as batch messages (``batches``), one confirm each: a hub
        reads one message far slower than it decodes one more envelope. A lone event goes as
        itself, under its own key (a consumer bound to one service's keys gets it)."""
        after = 0
        while True:
            self._stored.clear()  # before reading: a batch stored after it sets it again
            rows = await self.outbox.read(after, PUBLISH_BATCH)
            if not rows:
                self._drained.set()
                return
            self._drained.clear()
            messages = batches(rows, self.batch_max)
            results = await asyncio.gather(
                *(self._publish_message(exchange, message) for message in messages),
                return_exceptions=True,
            )
            confirmed = [
                row.rowid
                for message, ok in zip(messages, results, strict=True)
                if ok is True
                for row in message
            ]
            if confirmed:
                await self.outbox.delete(confirmed)
            failed = [
                (message, result)
                for message, result in zip(messages, results, strict=True)
                if result is not True
            ]
            if not failed:
                after = rows[-1].rowid
                if self._unrouted:
                    self._unrouted = False
                    logger.info("fleet: a queue takes the events again: sending the outbox")
                continue
            first_message, first = failed[0]
            after = first_message[0].rowid - 1  # from the first one not confirmed, in order
            if isinstance(first, BaseException) and not _is_unrouted(first):
                raise first  # the connection or channel is gone: a new session replays
            if not self._unrouted:
                self._unrouted = True
                logger.warning(
                    "fleet: no queue is bound to exchange {!r} (no hub has started?): events "
                    "wait in the outbox, tried again every {:g} s",
                    self.config.exchange,
                    UNROUTED_RETRY_DELAY,
                )
            await asyncio.sleep(UNROUTED_RETRY_DELAY)

    async def _publish_message(
        self, exchange: AbstractExchange, rows: Sequence[OutboxEvent]
    ) -> bool:
        """True when the broker confirmed the message of ``rows`` (one event, or a batch);
        an exception (returned: unrouted) else."""
        first = rows[0]
        if len(rows) == 1:
            body, key, message_id = first.body, first.routing_key, f"{first.boot}.{first.seq}"
        else:
            body = fleetwire.encode_batch([row.body for row in rows])
            key = fleetwire.batch_routing_key(self.config.host)
            message_id = f"{first.boot}.{first.seq}+{len(rows)}"
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=message_id,
        )
        result = await exchange.publish(message, key, mandatory=True, timeout=PUBLISH_TIMEOUT)
        if isinstance(result, aiormq.abc.DeliveredMessage):
            raise Unrouted(key)
        return True

    async def _send_snapshot(self, exchange: AbstractExchange) -> None:
        body = self._report("snapshot", self.snapshot_body())
        if len(body) > fleetwire.MAX_MESSAGE_BYTES:
            # The hub would refuse it (fleetwire.decode): say so once, rather than send it.
            if not self._snapshot_too_large:
                self._snapshot_too_large = True
                logger.warning(
                    "fleet: a snapshot of {} services is {} bytes, more than the {} a hub "
                    "takes: not sent (the hub follows the services by their entries only)",
                    len(self.supervisor.watchdog.records()),
                    len(body),
                    fleetwire.MAX_MESSAGE_BYTES,
                )
            return
        message = aio_pika.Message(
            body, content_type="application/json", delivery_mode=DeliveryMode.NOT_PERSISTENT
        )
        key = fleetwire.routing_key(self.config.host, None, "snapshot")
        await exchange.publish(message, key, mandatory=False, timeout=PUBLISH_TIMEOUT)

    async def _send_heartbeats(self, exchange: AbstractExchange) -> None:
        interval = self.config.heartbeat_interval
        key = fleetwire.routing_key(self.config.host, None, "heartbeat")
        while True:
            message = aio_pika.Message(
                self._report("heartbeat", self.heartbeat_body()),
                content_type="application/json",
                delivery_mode=DeliveryMode.NOT_PERSISTENT,
                expiration=3 * interval,
            )
            await exchange.publish(message, key, mandatory=False, timeout=PUBLISH_TIMEOUT)
            await asyncio.sleep(interval)

    async def _report_dropped(self) -> None:
        """Events the bound dropped (this run or one before): said once, to the hub too."""
        dropped = await self.outbox.dropped()
        if not dropped:
            return
        text = (
            f"fleet: {dropped} events were dropped from the outbox while the broker was "
            f"away (outbox_max = {self.config.outbox_max}); the hub never gets them"
        )
        logger.warning("{}", text)
        # A note about the daemon (service None), not a "daemon" entry: those are its starts
        # and stops, which the history reads runs of the daemon from (core/uptime.py).
        self.supervisor.journal.append(
            "note", None, text, self._clock(), detail={"fleet_dropped": dropped}
        )
        await self.outbox.clear_dropped(dropped)
        self.outbox.dropped_now = 0

    # -- saying what happens ---------------------------------------------------------------

    def _report_problem(self, error: BaseException) -> None:
        problem, expected = _describe(error)
        # Once per outage and reason: a broker that stays away is not said every retry.
        if problem in self._problems_said:
            return
        self._problems_said.add(problem)
        self._problem = problem
        logger.opt(exception=None if expected else error).warning(
            "fleet: cannot publish to the broker at {}: {}; events wait in the outbox "
            "(at most {}), retrying",
            self._where,
            problem,
            self.config.outbox_max,
        )

    def _said_connected(self) -> None:
        self._problems_said.clear()
        if self._problem is not None:
            logger.info("fleet: connected to the broker at {} again", self._where)
            self._problem = None
        else:
            logger.info(
                "fleet: host {} publishing to exchange {!r} at {}",
                self.config.host,
                self.config.exchange,
                self._where,
            )

    # -- shut-down -------------------------------------------------------------------------

    async def close(self) -> None:
        """Store the minute so far, give the broker ``FLUSH_GRACE`` seconds to confirm what
        waits, then stop; what is unconfirmed stays in the outbox for the next start."""
        if self._closed:
            return
        for timer in (self._minute_timer, self._prune_timer):
            if timer is not None:
                timer.cancel()
        self._count(int(self._clock()) // 60 * 60)
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._closed = True
        if self._connected:
            self._drained.clear()
            self._stored.set()  # the last events: look at the outbox once more
            try:
                async with asyncio.timeout(FLUSH_GRACE):
                    await self._drained.wait()
            except TimeoutError:
                logger.info("fleet: stopping with events unconfirmed: they are sent next time")
        await self.commands.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.outbox.close()


def batches(
    rows: Sequence[OutboxEvent],
    most: int = fleetwire.MAX_BATCH,
    size: int = fleetwire.BATCH_BYTES,
) -> list[list[OutboxEvent]]:
    """``rows`` cut, in order, into messages of at most ``most`` events and ``size`` bytes
    (an event larger than that goes alone)."""
    messages: list[list[OutboxEvent]] = []
    current: list[OutboxEvent] = []
    length = 2  # the brackets
    for row in rows:
        if current and (len(current) >= most or length + len(row.body) + 1 > size):
            messages.append(current)
            current, length = [], 2
        current.append(row)
        length += len(row.body) + 1
    if current:
        messages.append(current)
    return messages


class Unrouted(Exception):
    """The broker returned an event: no queue is bound for its routing key."""


def _describe(error: BaseException) -> tuple[str, bool]:
    """``queue_watch.describe_broker_error``, and aiormq's channel closes (pika names them
    differently): the broker's reply code and text."""
    if isinstance(error, SessionEnded):
        return "connection to the broker lost", True
    if isinstance(error, aiormq.exceptions.ChannelClosed):
        return f"the broker closed the channel ({redact(str(error))[:200]})", True
    if isinstance(error, aiormq.exceptions.ConnectionClosed) and len(error.args) == 2:
        # CONNECTION_FORCED (a broker stopping, an operator's close_connection), and such.
        code, text = error.args
        return f"the broker closed the connection ({code} {redact(str(text))[:200]})", True
    if isinstance(error, aiormq.exceptions.InvalidFrameError) and "Connection.Close" in str(error):
        # The broker answered the login's Connection.Open with a close: the virtual host.
        return "the broker refused the virtual host (it does not exist, or no access)", True
    if isinstance(error, aiormq.exceptions.AMQPConnectionError) and isinstance(
        error.__cause__, OSError
    ):
        return describe_broker_error(error.__cause__)  # reset by peer, and such: the cause says
    if isinstance(error, aiormq.exceptions.AMQPConnectionError) and isinstance(
        error.__cause__, EOFError
    ):
        return (
            "the connection was closed before the broker answered (a broker starting or "
            "stopping, or no broker at that address)",
            True,
        )
    return describe_broker_error(error)


def _is_unrouted(error: BaseException) -> bool:
    return isinstance(error, (Unrouted, aiormq.exceptions.DeliveryError))


async def _close_quietly(connection: AbstractConnection) -> None:
    try:
        async with asyncio.timeout(2.0):
            await connection.close()
    except (Exception, TimeoutError):
        pass  # already gone: nothing to close


def _copy(totals: Totals) -> dict[str, tuple[int, dict[str, int]]]:
    return {service: (messages, dict(kinds)) for service, (messages, kinds) in totals.items()}


async def start_fleet_agent(
    config: FleetConfig,
    supervisor: Supervisor,
    state_dir: Path,
    reloader: Reloader,
    hub: LogHub,
    local: LocalApi,
) -> FleetAgent:
    """Open the outbox, build the agent and its command taker, and start them."""
    outbox = await Outbox.open(state_dir / OUTBOX_FILE, max_events=config.outbox_max)
    commands = FleetCommands(config, supervisor, reloader, hub, outbox, local)
    agent = FleetAgent(config, supervisor, outbox, commands)
    agent.start()
    return agent
