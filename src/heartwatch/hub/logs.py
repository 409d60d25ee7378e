"""``WS /ws/logs/{host}/{service}``: a service's live output on any host, through the broker.

For each viewer the hub:

1. declares a temporary queue of its own (exclusive, auto-delete, bounded: at most
   ``QUEUE_MAX_LINES`` waiting, the oldest dropped first), named ``<exchange>.tail.<hex>``,
   bound to the fleet exchange with exactly ``<host>.<service>.log.<hex>``
   (``fleetwire.log_routing_key``; the hex is the *stream* token): the agent publishes there,
   on the fleet exchange, so the host's broker user needs no write on the default exchange,
   and its topic permissions (its own host's keys only) keep any other host out of the stream;
2. sends the host a signed ``tail`` command (``args``: the stream token, a lease, the initial
   lines, and the queue's name, which agents before the fleet-exchange streams published to
   by name), and renews it every ``lease / 3`` while the socket is open. Only that first
   command is a row in ``commands`` (its replies say whether the stream started); a renewal
   moves the row's ``expires_at`` on instead of adding one (a viewer left open would add a
   row every few seconds, forever). A renewal is still a signed ``tail`` command with an id of
   its own: the agent's at-most-once (an id runs once, recorded before it runs) stays as it
   is, with no exemption to reason about; the agent takes a ``tail`` for a stream it already
   streams as a renewal of that stream (same service and stream token), which runs nothing
   new. Its replies find no row and change nothing;
3. relays what the agent publishes there (``{"line"}``, ``{"skipped": n}``, ``{"end"}``) to
   the browser in the agent's own log websocket protocol (``web/logs.py``): text frames of
   lines joined by newlines, heartwatch's notices as ``[heartwatch] …`` lines, ``format=html``
   escaped with colours as spans, ``grep`` applied here;
4. when the viewer leaves, stops renewing and deletes the queue: the agent's publishes come
   back unroutable and it stops (at the latest when its lease ends).

A viewer that cannot keep up loses lines, told as the agent tells it ("skipped N lines"): the
relay holds at most ``BUFFER_LINES`` for it. A host that is unreachable is said at once
(``api.py`` checks before anything is sent); a broker that does not answer is said too; a
refused ``tail`` (the agent does not trust this hub, say) is read from the command's reply
and said, then the socket is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from loguru import logger
from starlette.websockets import WebSocketDisconnect

from heartwatch.core import fleetcommands
from heartwatch.core.fleetcommands import Command
from heartwatch.core.fleetwire import command_queue, command_queue_arguments, log_routing_key
from heartwatch.hub.commands import CommandProblem
from heartwatch.hub.queries import DB_TIMEOUT
from heartwatch.logview.ansi import AnsiToHtml
from heartwatch.logview.linefilter import FilterTooSlow, LineFilter
from heartwatch.logview.viewer import SKIPPED_TEXT

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
    from fastapi import WebSocket

    from heartwatch.hub.commands import CommandSender
    from heartwatch.hub.config import HubConfig

LEASE: Final = 30.0  # seconds the agent streams without a renewal
QUEUE_MAX_LINES: Final = 10_000  # lines waiting in the broker for one viewer
BUFFER_LINES: Final = 5_000  # lines the hub holds for one viewer before it skips
MAX_FRAME_BYTES: Final = 256 * 1024
DEFAULT_LINES: Final = 100
MAX_LINES: Final = 5_000
BROKER_TIMEOUT: Final = 5.0
SEND_TIMEOUT: Final = 30.0  # a frame not out within this: the viewer stopped reading
FIRST_WORD_WAIT: Final = 10.0  # no reply to the tail command by then: the viewer is told
REPLY_POLL: Final = 0.5

BAD_REQUEST_CLOSE: Final = 4400
NOT_FOUND_CLOSE: Final = 4404
REFUSED_CLOSE: Final = 4403
UNREACHABLE_CLOSE: Final = 4410  # a refusal (not retried at once): the host is silent
BROKER_CLOSE: Final = 1011


def tail_queue(exchange: str) -> str:
    return f"{exchange}.tail.{secrets.token_hex(8)}"


def stream_token(queue_name: str) -> str:
    """The stream token of a ``tail_queue``: its last word (hex, one routing key word)."""
    return queue_name.rpartition(".")[2]


class FrameMaker:
    """What the agent sends, as the frames its own log websocket would send. Pure."""

    def __init__(self, *, html_format: bool, grep: LineFilter | None) -> None:
        self._converter = AnsiToHtml() if html_format else None
        self._grep = grep
        self.pending: deque[str] = deque()  # rendered, not yet sent
        self.skipped = 0  # lines dropped here because the viewer was behind

    def notice(self, text: str) -> str:
        marker = f"[heartwatch] {text}"
        if self._converter is None:
            return marker
        return f'<span class="hw-marker">{html.escape(marker)}</span>'

    def receive(self, message: object) -> str | None:
        """One message from the agent's stream; the ``end`` reason if it ended."""
        if not isinstance(message, dict):
            return None
        if type(message.get("line")) is str:
            line: str = message["line"]
            if self._grep is not None and not self._grep.matches(line):
                return None
            self._add(line if self._converter is None else self._converter.convert(line))
        elif type(message.get("skipped")) is int:
            self._add(self.notice(SKIPPED_TEXT.format(message["skipped"])))
        elif "end" in message:
            self._add(self.notice(f"the agent ended the stream: {str(message['end'])[:200]}"))
            return str(message["end"])
        return None

    def _add(self, rendered: str) -> None:
        if len(self.pending) >= BUFFER_LINES:
            self.pending.popleft()
            self.skipped += 1
        self.pending.append(rendered)

    def take_frame(self) -> str | None:
        if self.skipped:
            lost, self.skipped = self.skipped, 0
            self.pending.appendleft(self.notice(SKIPPED_TEXT.format(lost)))
        if not self.pending:
            return None
        parts: list[str] = []
        size = 0
        while self.pending:
            cost = len(self.pending[0].encode()) + 1
            if parts and size + cost > MAX_FRAME_BYTES:
                break
            parts.append(self.pending.popleft())
            size += cost
        return "\n".join(parts)


class LogRelay:
    """Relays agents' live output to browsers, one temporary queue per viewer."""

    def __init__(
        self,
        config: HubConfig,
        connection: AbstractConnection,
        commands: CommandSender,
        *,
        clock: Callable[[], float] = time.time,
        lease: float = LEASE,
    ) -> None:
        self.config = config
        self.connection = connection
        self.commands = commands
        self._clock = clock
        self.lease = lease
        self.viewers = 0

    async def start(self) -> None:
        """Nothing to start: every viewer brings its own queue."""

    async def close(self) -> None:
        """Viewers end with their sockets (the server closes them)."""

    def tail_command(self, host: str, service: str, queue: str, lines: int) -> Command:
        now = self._clock()
        return Command(
            id=secrets.token_hex(16),
            host=host,
            service=service,
            verb="tail",
            issued_at=now,
            expires_at=now + self.lease,
            args={
                "stream": stream_token(queue),
                "queue": queue,
                "lease": self.lease,
                "lines": lines,
            },
            issued_by=self.config.name,
        )

    async def serve(self, websocket: WebSocket, host: str, service: str) -> None:
        """One viewer, from its accepted socket's start to its end."""
        params = websocket.query_params
        try:
            lines = max(0, min(int(params.get("lines", DEFAULT_LINES)), MAX_LINES))
            grep = LineFilter(params["grep"]) if params.get("grep") else None
        except ValueError as error:
            await refuse(websocket, BAD_REQUEST_CLOSE, f"bad query: {error}")
            return
        maker = FrameMaker(html_format=params.get("format") == "html", grep=grep)
        try:
            self.commands.key  # noqa: B018 - without it no agent would take the tail
        except CommandProblem as problem:
            await refuse(websocket, BROKER_CLOSE, problem.message)
            return
        queue_name = tail_queue(self.config.hub.exchange)
        try:
            channel = await asyncio.wait_for(self.connection.channel(), BROKER_TIMEOUT)
        except Exception as error:  # the broker is away
            await refuse(websocket, BROKER_CLOSE, f"the broker is unreachable: {error}"[:120])
            return
        self.viewers += 1
        try:
            await self._relay(websocket, channel, host, service, queue_name, lines, maker)
        finally:
            self.viewers -= 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.queue_delete(queue_name), BROKER_TIMEOUT)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), BROKER_TIMEOUT)

    async def _relay(
        self,
        websocket: WebSocket,
        channel: AbstractChannel,
        host: str,
        service: str,
        queue_name: str,
        lines: int,
        maker: FrameMaker,
    ) -> None:
        from aio_pika import ExchangeType

        from heartwatch.web.streaming import send_until_disconnect, until_first_ends

        try:
            async with asyncio.timeout(BROKER_TIMEOUT):
                queue = await channel.declare_queue(
                    queue_name,
                    exclusive=True,
                    auto_delete=True,
                    arguments={"x-max-length": QUEUE_MAX_LINES, "x-overflow": "drop-head"},
                )
                exchange = await channel.declare_exchange(
                    self.config.hub.exchange, ExchangeType.TOPIC, durable=True
                )
                await queue.bind(exchange, log_routing_key(host, service, stream_token(queue_name)))
                await channel.declare_queue(
                    command_queue(self.config.hub.exchange, host),
                    durable=True,
                    arguments=command_queue_arguments(self.config.hub.exchange),
                )
                first = await self._send_tail(channel, host, service, queue_name, lines)
        except Exception as error:  # a timeout, the broker's refusal, the database away
            why = str(error) or type(error).__name__
            await refuse(websocket, BROKER_CLOSE, f"cannot start following: {why}"[:120])
            return
        await websocket.accept()
        logger.info("hub: relaying {}/{} to a viewer through {}", host, service, queue_name)
        wake = asyncio.Event()
        ended: list[str] = []

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                decoded = json.loads(message.body)
            except ValueError:
                return  # not the agent's: nothing to show
            try:
                end = maker.receive(decoded)
            except FilterTooSlow as slow:
                end = str(slow)
            if end is not None:
                ended.append(end)
            wake.set()

        await queue.consume(on_message, no_ack=True)

        async def send_frames() -> None:
            while True:
                await wake.wait()
                wake.clear()
                while (frame := maker.take_frame()) is not None:
                    async with asyncio.timeout(SEND_TIMEOUT):
                        await websocket.send_text(frame)
                if ended:
                    with contextlib.suppress(Exception):
                        await websocket.close(1000, ended[0][:120])
                    return

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease / 3)
                try:
                    async with asyncio.timeout(BROKER_TIMEOUT):
                        await self._send_tail(
                            channel, host, service, queue_name, 0, renews=first.id
                        )
                except Exception as error:  # the broker or the database away: say so, end
                    why = f"the stream cannot be renewed: {str(error) or type(error).__name__}"
                    maker.pending.append(maker.notice(why[:200]))
                    ended.append("the stream cannot be renewed")
                    wake.set()
                    await asyncio.Event().wait()  # send_frames ends the relay once it is said

        async def watch_reply() -> None:
            """Tell the viewer what became of the first tail command, if it did not run."""
            started = time.monotonic()
            told = False
            while True:
                await asyncio.sleep(REPLY_POLL)
                row = await _command_status(self.commands, first.id)
                status, reason = row if row is not None else ("sent", "")
                if status in ("refused", "expired", "failed"):
                    maker.pending.append(maker.notice(f"{host}: tail {status}: {reason}"))
                    ended.append(f"tail {status}")
                    wake.set()
                    return
                if status in ("accepted", "done"):
                    return
                if not told and time.monotonic() - started > FIRST_WORD_WAIT:
                    told = True
                    maker.pending.append(
                        maker.notice(f"no answer from {host} yet: its agent may be away")
                    )
                    wake.set()

        await send_until_disconnect(
            websocket, until_first_ends(send_frames(), renew(), watch_reply_forever(watch_reply))
        )

    async def _send_tail(
        self,
        channel: AbstractChannel,
        host: str,
        service: str,
        queue_name: str,
        lines: int,
        *,
        renews: str | None = None,
    ) -> Command:
        """Sign and send a ``tail``; the first is recorded, a renewal (``renews``: the first's
        id) extends that record instead (module docstring, step 2)."""
        from aio_pika import DeliveryMode, Message

        command = self.tail_command(host, service, queue_name, lines)
        if renews is None:
            await self.commands.record(command)
        else:
            await self.commands.extend(renews, command.expires_at)
        message = Message(
            fleetcommands.sign(command, self.commands.key),
            content_type="application/json",
            delivery_mode=DeliveryMode.NOT_PERSISTENT,
            expiration=self.lease,
            message_id=command.id,
        )
        await channel.default_exchange.publish(
            message, routing_key=command_queue(self.config.hub.exchange, host)
        )
        return command


async def watch_reply_forever(watch: Callable[[], Any]) -> None:
    """The reply's watch, then nothing more to do: it must not end the relay by ending."""
    with contextlib.suppress(Exception):
        await watch()
    await asyncio.Event().wait()


async def _command_status(commands: CommandSender, command_id: str) -> tuple[str, str] | None:
    async with commands.pool.connection(timeout=DB_TIMEOUT) as connection:
        cursor = await connection.execute(
            "SELECT status, reason FROM commands WHERE id = %s", [command_id]
        )
        row = await cursor.fetchone()
    return None if row is None else (row[0], row[1])


async def refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Accept (if not yet), then close with the code and reason, so the client learns why."""
    from starlette.websockets import WebSocketState

    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        if websocket.client_state == WebSocketState.CONNECTING:
            await websocket.accept()
        await websocket.close(code, _clip(reason))


def _clip(reason: str) -> str:
    data = reason.encode()
    return reason if len(data) <= 123 else data[:120].decode("utf-8", "ignore") + "…"


__all__ = ["FrameMaker", "LogRelay", "refuse", "stream_token", "tail_queue"]
