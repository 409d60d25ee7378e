"""The hub's commands on this host: judged, recorded, run once, replied to (``[fleet]``).

Each session of the agent (``fleet_agent.py``) attaches this to its channel: the host's command
queue (``fleetwire.command_queue``) is declared as the hub declares it (durable, dead-lettering
to the expired exchange, which is declared too: either side may come first) and consumed with
manual acks. For each message:

1. ``fleetcommands.judge`` decides (form, the signature of one of ``[fleet] hub_keys``, this
   host, expiry, clock, never run before). A refusal is logged (the code and the reason, never
   the payload), replied ``refused`` or ``expired`` when the command names an id, and acked:
   a bad message never blocks the queue.
2. An accepted command's id is recorded in the outbox's ran ids (on disk) *before* anything is
   done, and only then is the message acked: a crash from here on can lose the command but
   never run it twice. Then ``accepted`` is replied.
3. It is carried out as the local HTTP control does (``web/control.py``: the same selections,
   the same supervisor calls; reload through the daemon's ``Reloader``), with a reason naming
   the hub and the command (the transitions it causes say who asked), and ``done`` or
   ``failed`` with the reason is replied.

``tail`` streams a service's output to the hub that asked while its lease lasts, with the
bounded-viewer rules of local viewers (``logfollow.LogHub``): messages ``{"line": ...}``,
``{"skipped": n}`` when the ring moved past it, ``{"end": reason}`` last. They are published on
the fleet exchange under ``<host>.<service>.log.<stream>`` (``fleetwire.log_routing_key``;
``stream``: the hub's token in the command's args), the key the hub binds its temporary queue
to: a host's broker user needs no write on the default exchange (which would let it publish to
any queue by name, the hubs' events queue included, past the topic permissions that keep it
to its own host's keys). A new ``tail`` for the same service and stream renews the lease; a
stream no queue takes any more (the broker returns what is published) ends it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    DeliveryMode,
)
from loguru import logger

from heartwatch.config import FleetConfig, parse_signal
from heartwatch.core import fleetwire
from heartwatch.core.fleetcommands import Command, CommandRefused, ReplyStatus, judge, parse
from heartwatch.core.redact import redact
from heartwatch.core.selection import UnknownNames, select_services
from heartwatch.daemon.fleet_outbox import Outbox, OutboxClosed
from heartwatch.daemon.logfollow import LogTarget, Viewer
from heartwatch.daemon.reload import ReloadRefused
from heartwatch.daemon.supervisor import DaemonStopping, NotRunning
from heartwatch.daemon.tasks import TaskSet
from heartwatch.logview.linering import Entry, Marker
from heartwatch.logview.logpaths import LogPathError
from heartwatch.logview.viewer import SKIPPED_TEXT

if TYPE_CHECKING:
    from heartwatch.daemon.logfollow import LogHub
    from heartwatch.daemon.reload import Reloader
    from heartwatch.daemon.supervisor import Supervisor

Reply = Callable[[Command | Mapping[str, Any], ReplyStatus, str], None]
ControlVerb = Literal["restart", "stop", "start"]  # web/control.py's verbs


@dataclass(frozen=True)
class LocalApi:
    """What the agent answers and selects exactly as the local HTTP API does. The assembly
    passes them in from ``web/`` (the daemon's drivers do not import the HTTP side)."""

    # Every service as ``GET /api/v1/services`` answers it, as JSON (``web/status.py``).
    services: Callable[[], list[dict[str, Any]]]
    # The services a verb may act on, each with its [[service]] (``web/control.py``).
    selectable: Callable[[ControlVerb], Mapping[str, str | None]]


PREFETCH = 16  # commands taken at once (each is small; a slow reload holds only its own)
MAX_LEASE = 600.0  # seconds a tail may be leased for at once (renewals extend it)
DEFAULT_LEASE = 30.0
LEASE_ENDED = "the lease ended without a renewal"
STREAM_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # one routing key word, never escaped
TAIL_TIMEOUT = 10.0  # a line not confirmed by then: the hub's queue is taken for unreachable


class FleetCommands:
    """Takes the hub's commands for one host; ``attach`` once per broker session."""

    def __init__(
        self,
        config: FleetConfig,
        supervisor: Supervisor,
        reloader: Reloader,
        hub: LogHub,
        outbox: Outbox,
        local: LocalApi,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.supervisor = supervisor
        self.local = local
        self.reloader = reloader
        self.hub = hub
        self.outbox = outbox
        self.reply: Reply = lambda command, status, reason: None  # the agent's, once started
        self._clock = clock
        self._keys = config.public_keys()
        # Where service output is (a daemon setting a reload does not change), resolved once.
        self._log_dir = Path(
            os.path.realpath(supervisor.config.resolve(supervisor.config.daemon.log_dir))
        )
        self._queue: AbstractQueue | None = None
        self._connection: AbstractConnection | None = None  # the session's, for tails
        self._tails: dict[tuple[str, str], Tail] = {}
        self._tasks = TaskSet("fleet commands")
        self.refused: dict[str, int] = {}  # by code, since the start (for tests and metrics)

    async def attach(self, connection: AbstractConnection) -> AbstractChannel:
        """Declare the host's command queue on a channel of its own and take its commands;
        returns that channel (the agent watches it)."""
        exchange = self.config.exchange
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_exchange(
            fleetwire.expired_exchange(exchange), aio_pika.ExchangeType.FANOUT, durable=True
        )
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(
            fleetwire.command_queue(exchange, self.config.host),
            durable=True,
            arguments=fleetwire.command_queue_arguments(exchange),
        )
        self._connection = connection
        self._queue = queue
        await queue.consume(self._on_message, no_ack=False)
        return channel

    def detach(self) -> None:
        """The session ended: its tails end with it (the hub renews them on another)."""
        self._connection = self._queue = None
        for tail in list(self._tails.values()):
            tail.stop("the agent's broker connection was lost")

    async def close(self) -> None:
        for tail in list(self._tails.values()):
            tail.stop("the agent is stopping")
        await self._tasks.close(grace=1.0)

    # -- one message -----------------------------------------------------------------------

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            await self._take(message)
        except Exception as error:  # the consumer goes on: one message is not the queue
            logger.opt(exception=error).error("fleet: a command message could not be handled")

    async def _take(self, message: AbstractIncomingMessage) -> None:
        try:
            command = judge(
                message.body,
                host=self.config.host,
                now=self._clock(),
                trusted=self._keys,
                already_ran=self.outbox.has_ran,
            )
        except CommandRefused as refused:
            self._refuse(message.body, refused)
            await message.ack()
            return
        try:
            recorded = await self.outbox.record_ran(command.id)
        except (OutboxClosed, OSError, sqlite3.Error) as error:
            # Not recorded, so not run: back to the queue for the next start (or expiry).
            logger.warning("fleet: command {} not taken now: {}", command.id, error)
            await message.nack(requeue=True)
            return
        if not recorded:  # the same id delivered twice at once: the other one runs it
            self._refuse(
                message.body,
                CommandRefused("replayed", f"command {command.id} already ran here: not again"),
            )
            await message.ack()
            return
        await message.ack()
        self.reply(command, "accepted", "")
        logger.info(
            "fleet: {} {} by hub {} (command {})",
            command.verb,
            command.service or "the configuration",
            command.issued_by or "?",
            command.id,
        )
        try:
            status, reason = await self._carry_out(command)
        except Exception as error:  # a bug must still be replied, and not stop the consumer
            logger.opt(exception=error).error("fleet: command {} failed", command.id)
            status, reason = "failed", f"{type(error).__name__}: {error}"
        if status == "failed":
            logger.warning("fleet: command {} failed: {}", command.id, reason)
        self.reply(command, status, reason)

    def _refuse(self, data: bytes, refused: CommandRefused) -> None:
        self.refused[refused.code] = self.refused.get(refused.code, 0) + 1
        try:
            command: Command | None = parse(data)[0]
        except CommandRefused:
            command = None  # no id to reply to: the log says it
        logger.warning(
            "fleet: refused a command{} ({}): {}",
            f" {command.id} by {command.issued_by or '?'!r}" if command else "",
            refused.code,
            refused.reason,
        )
        if command is not None:
            status: ReplyStatus = "expired" if refused.code == "expired" else "refused"
            self.reply(command, status, refused.reason)

    async def _carry_out(self, command: Command) -> tuple[ReplyStatus, str]:
        why = f"by hub {command.issued_by or '?'} (command {command.id})"
        supervisor = self.supervisor
        verb = command.verb
        try:
            if verb == "reload":
                result = await self.reloader.reload(f"reload {why}")
                return "done", result.describe()
            service = command.service or ""
            if verb == "tail":
                return await self._tail(command, service)
            if verb == "signal":
                return self._signal(command, service)
            names = select_services([service], self.local.selectable(verb))
            if verb == "restart":
                for name in names:
                    supervisor.restart(name, reason=f"restart requested {why}")
                return "done", "restarted " + ", ".join(names)
            if verb == "stop":
                supervisor.stop(names, reason=f"stop requested {why}")
                return "done", "stopping " + ", ".join(names)
            supervisor.start(names, reason=f"start requested {why}")
            return "done", "starting " + ", ".join(names)
        except UnknownNames as unknown:
            return "failed", str(unknown)
        except (DaemonStopping, NotRunning, ReloadRefused) as error:
            return "failed", str(error)

    def _signal(self, command: Command, service: str) -> tuple[ReplyStatus, str]:
        if service not in self.supervisor.watchdog:
            return "failed", f"no service {service!r}"
        try:
            sig = parse_signal(command.args.get("signal"))
        except ValueError as error:
            return "failed", str(error)
        group = command.args.get("group") is True
        self.supervisor.signal(service, sig, group=group)
        return "done", f"sent {sig.name} to {service}" + ("'s process group" if group else "")

    # -- tail ------------------------------------------------------------------------------

    async def _tail(self, command: Command, service: str) -> tuple[ReplyStatus, str]:
        args = command.args
        stream, lease, lines = (
            args.get("stream"),
            args.get("lease", DEFAULT_LEASE),
            args.get("lines", 0),
        )
        if type(stream) is not str or not STREAM_TOKEN.fullmatch(stream):
            return "failed", "tail needs args.stream, the hub's token for it (1-64 of A-Za-z0-9_-)"
        if type(lease) not in (int, float) or not 0 < lease <= MAX_LEASE:
            return "failed", f"args.lease must be seconds, more than 0 and at most {MAX_LEASE:g}"
        if type(lines) is not int or lines < 0:
            return "failed", "args.lines must be a whole number, 0 or more"
        if service not in self.supervisor.services:
            return "failed", f"no service {service!r}"
        connection = self._connection
        if connection is None:
            return "failed", "the agent's broker connection was lost"
        deadline = asyncio.get_running_loop().time() + float(lease)
        key = (service, stream)
        routing = fleetwire.log_routing_key(self.config.host, service, stream)
        current = self._tails.get(key)
        if current is not None and not current.ending:
            current.renew(deadline)
            return "done", f"lease of {service}'s output to {routing} renewed for {lease:g} s"
        logs = self.supervisor.config.logs
        lines = min(lines, logs.max_initial_lines)
        # A channel of its own: the broker refusing it (no write permission on that key, say)
        # closes that channel only, not the commands' or the events'. The exchange is the
        # session's (declared by it): not declared again.
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(self.config.exchange, ensure=False)
        tail = Tail(exchange, routing, deadline)
        self._tails[key] = tail
        target = LogTarget(self._log_dir, (f"{service}.log",))
        try:
            follower = await self.hub.subscribe(target, tail.viewer, lines)
        except (LogPathError, OSError) as error:
            self._tails.pop(key, None)
            await _close_quietly(channel)
            return "failed", f"cannot follow {service}'s output: {error}"

        async def streaming() -> None:
            try:
                await tail.run()
            finally:
                self.hub.unsubscribe(follower, tail.viewer)
                if self._tails.get(key) is tail:
                    del self._tails[key]
                await _close_quietly(channel)

        self._tasks.start(streaming(), name=f"tail {service} to {routing}")
        return "done", f"streaming {service}'s output to {routing} for {lease:g} s"


class TailViewer(Viewer):
    """A local viewer's rules, in plain text; the skip marker becomes its own message."""

    def __init__(self) -> None:
        super().__init__(grep=None, html=False)
        self.skips_said = 0

    def render(self, entry: Entry) -> str | None:
        # The ring moved past this viewer: the count goes as {"skipped": n}, not as a line.
        if isinstance(entry, Marker) and entry.text == SKIPPED_TEXT.format(
            self.skipped_total - self.skips_said
        ):
            return None
        return super().render(entry)


class Tail:
    """One service's output streamed under one routing key (the hub's queue is bound to it),
    until its lease ends."""

    def __init__(self, exchange: AbstractExchange, routing_key: str, deadline: float) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.deadline = deadline
        self.viewer = TailViewer()
        self.stopped = False
        self._why = LEASE_ENDED
        self._wake = asyncio.Event()

    @property
    def ending(self) -> bool:
        """Stopped, or asked to stop (a renewal then starts another stream)."""
        return self.stopped or self._wake.is_set()

    def renew(self, deadline: float) -> None:
        self.deadline = max(self.deadline, deadline)

    def stop(self, why: str) -> None:
        if not self.stopped:
            self._why = why
            self._wake.set()

    async def run(self) -> None:
        """Frames out as messages until the lease ends, it is stopped, or the queue is gone."""
        loop = asyncio.get_running_loop()
        try:
            while not self._wake.is_set():
                left = self.deadline - loop.time()
                if left <= 0:
                    break
                frame = await self._next_frame(left)
                if frame is None:
                    continue
                messages: list[dict[str, Any]] = []
                skipped = self.viewer.skipped_total - self.viewer.skips_said
                if skipped:
                    self.viewer.skips_said = self.viewer.skipped_total
                    messages.append({"skipped": skipped})
                messages.extend({"line": line} for line in frame.split("\n"))
                if not await self._send(messages):
                    if self._why == LEASE_ENDED:
                        self._why = "the hub's queue is gone"
                    return
                self.viewer.receive_sent()
            await self._send([{"end": self._why}])
        finally:
            self.stopped = True
            logger.info("fleet: stopped streaming output to {}: {}", self.routing_key, self._why)

    async def _next_frame(self, timeout: float) -> str | None:
        waiting = asyncio.ensure_future(self.viewer.next_frame())
        stopping = asyncio.ensure_future(self._wake.wait())
        done, _ = await asyncio.wait(
            {waiting, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        stopping.cancel()
        if waiting in done:
            return waiting.result()
        waiting.cancel()
        await asyncio.gather(waiting, stopping, return_exceptions=True)
        return None

    async def _send(self, messages: list[dict[str, Any]]) -> bool:
        """Publish ``messages`` in order; False if the queue is gone (or unreachable)."""
        results = await asyncio.gather(
            *(self._publish(body) for body in messages), return_exceptions=True
        )
        refused = next((r for r in results if isinstance(r, aiormq.exceptions.ChannelClosed)), None)
        if refused is not None:
            self._why = f"the broker refused the stream ({redact(str(refused))[:200]})"
        return all(result is True for result in results)

    async def _publish(self, body: Mapping[str, Any]) -> bool:
        message = aio_pika.Message(
            json.dumps(body, ensure_ascii=False).encode(),
            content_type="application/json",
            delivery_mode=DeliveryMode.NOT_PERSISTENT,
        )
        result = await self.exchange.publish(
            message, self.routing_key, mandatory=True, timeout=TAIL_TIMEOUT
        )
        return not isinstance(result, aiormq.abc.DeliveredMessage)


async def _close_quietly(channel: AbstractChannel) -> None:
    try:
        async with asyncio.timeout(2.0):
            await channel.close()
    except (Exception, TimeoutError):
        pass  # closed already (by the broker, or with its connection)
