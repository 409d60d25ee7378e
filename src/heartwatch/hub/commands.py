"""Commands from the hub to agents: checked, recorded, signed, published; expiry reported.

``POST /api/v1/commands`` comes here (``CommandSender.send``):

1. Every target is checked against the database before anything is done: an unknown host or
   service refuses the whole request (``CommandProblem``, 422, naming it). A service part may
   be a selection as the agent's own CLI takes it (``collector@*``, a ``[[service]]`` name,
   ``all``: ``core/selection.py``), expanded here into one command per service, so what is
   sent is always explicit.
2. The broker is reached (bounded by ``BROKER_TIMEOUT``: a broker that does not answer is a
   503 saying so, never a hanging request), each host's command queue declared as the agent
   declares it, then the commands are inserted (``sent``) and published: signed
   (``fleetcommands.sign``), persistent, ``expiration`` = the ttl, ``message_id`` = the id,
   with publisher confirms.
3. A command the broker dead-letters because it expired in the queue (the agent was away)
   comes back through ``<exchange>.expired.hub`` and is marked ``expired`` "never ran": it was
   never delivered, so that is true.
   A command still ``sent`` (no answer at all) ``EXPIRY_GRACE`` after it expired is marked
   ``unanswered`` by a timer: "no answer by its expiry: unknown whether it ran". It can no
   longer *start* running (the agent refuses an expired command), but it may have run in
   time with its replies still on their way (waiting in the agent's outbox while its link
   was down, or in a lagging ingest), so the hub cannot say "never ran". ``unanswered`` is the
   one status the hub settles on its own that a later reply still moves (``accepted``,
   ``done``, ``failed``, ``refused``, ``expired`` from the agent; ``expired`` from the broker):
   the statuses the broker or the agent decided are final. Likewise a publish the broker did
   not confirm may still have been delivered: that command stays ``sent`` with a reason
   saying so (the sweep then makes it ``unanswered``); only the commands after it, never
   handed to the broker, are ``failed`` "not sent, never ran".

Replies (accepted, done, failed…) arrive as ``reply`` events through the ingest, which updates
the row; every change here is announced with ``pg_notify`` so that every hub's feed shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from loguru import logger

from heartwatch.core import fleetcommands
from heartwatch.core.fleetcommands import SERVICE_VERBS, Command, Verb
from heartwatch.core.fleetwire import (
    command_queue,
    command_queue_arguments,
    expired_exchange,
    is_host_name,
)
from heartwatch.core.selection import UnknownNames, select_services
from heartwatch.hub.config import KEY_ENVIRONMENT
from heartwatch.hub.queries import DB_TIMEOUT, command_row, known_targets

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

    from heartwatch.hub.config import HubConfig

FEED_CHANNEL: Final = "heartwatch_fleet"
BROKER_TIMEOUT: Final = 5.0  # seconds to reach the broker and have a publish confirmed
EXPIRY_GRACE: Final = 30.0  # a command still "sent" this long after it expired: unanswered
SWEEP_INTERVAL: Final = 5.0
MAX_TARGETS: Final = 1000
# Verbs a person sends as a command (tail is the log relay's, hub/logs.py).
COMMAND_VERBS: Final = frozenset({"restart", "stop", "start", "reload", "signal"})
NO_ANSWER: Final = "no answer by its expiry: unknown whether it ran"
UNANSWERED: Final = "unanswered"  # the sweep's status: not final, a later reply moves it

ChannelFactory = Callable[[], Awaitable["AbstractChannel"]]


class CommandProblem(Exception):
    """A command request that cannot be done: the HTTP status, a stable code, and why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    service: str | None  # a name or a selection; None: the host itself (reload)


def parse_target(text: str, verb: str) -> Target:
    """``host/service`` (``host`` alone for reload); ``CommandProblem`` 422 saying why not."""
    host, slash, service = text.partition("/")
    if not is_host_name(host):
        raise CommandProblem(422, "bad_target", f"{text!r}: not host/service")
    if verb in SERVICE_VERBS:
        if not slash or not service:
            raise CommandProblem(422, "bad_target", f"{text!r}: {verb} needs host/service")
        return Target(host, service)
    if slash:
        raise CommandProblem(422, "bad_target", f"{text!r}: {verb} takes a host alone")
    return Target(host, None)


def expand_targets(
    targets: Sequence[Target], known: Mapping[str, Sequence[tuple[str, str | None]]]
) -> list[Target]:
    """Each target as the concrete services it names, each once, in the order asked;
    ``CommandProblem`` (422) naming every host or service that is not known. Pure."""
    unknown: list[str] = []
    found: dict[Target, None] = {}
    for target in targets:
        if target.host not in known:
            unknown.append(f"no host {target.host!r}")
            continue
        if target.service is None:
            found[target] = None
            continue
        groups = dict(known[target.host])
        try:
            for name in select_services([target.service], groups):
                found[Target(target.host, name)] = None
        except UnknownNames as names:
            unknown.append(f"{target.host}: {names}")
    if unknown:
        raise CommandProblem(422, "unknown_target", "; ".join(unknown))
    return list(found)


def check_args(verb: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The args a verb takes; ``CommandProblem`` (422) for others."""
    if verb == "signal":
        signal = args.get("signal")
        if type(signal) is not str or not signal or len(signal) > 16:
            raise CommandProblem(422, "bad_args", 'signal needs args {"signal": "HUP"}')
        extra = set(args) - {"signal", "group"}
        if extra or type(args.get("group", False)) is not bool:
            raise CommandProblem(422, "bad_args", "signal takes signal and group only")
        return dict(args)
    if args:
        raise CommandProblem(422, "bad_args", f"{verb} takes no args")
    return {}


def describe_seconds(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min"


def expired_reason(ttl: float) -> str:
    return f"expired, never ran (not delivered within {describe_seconds(round(ttl, 1))})"


def load_signing_key(config: HubConfig) -> Ed25519PrivateKey:
    """The hub's private key (``[hub] signing_key`` or ``HEARTWATCH_HUB_KEY``); ``ValueError``
    saying what is wrong (never the key itself)."""
    try:
        text = config.signing_key_text()
    except OSError as error:
        raise ValueError(f"cannot read [hub] signing_key: {error.strerror}") from None
    if text is None:
        raise ValueError(
            f"no signing key: set [hub] signing_key or {KEY_ENVIRONMENT} "
            "(heartwatch hub keygen writes one)"
        )
    try:
        return fleetcommands.parse_private_key(text)
    except ValueError as error:
        raise ValueError(f"the hub's signing key is not a key: {error}") from None


async def notify(connection: AsyncConnection[Any], commands: Iterable[str]) -> None:
    """Tell every hub's feed that these commands changed (inside the writing transaction)."""
    payload = json.dumps({"commands": list(commands)})
    if len(payload) > 7000:
        payload = json.dumps({"all": True})
    await connection.execute("SELECT pg_notify(%s, %s)", [FEED_CHANNEL, payload])


class CommandSender:
    """Sends commands and keeps their status honest when no agent answers."""

    def __init__(
        self,
        config: HubConfig,
        channel_factory: ChannelFactory,
        pool: AsyncConnectionPool[Any],
        *,
        key: Ed25519PrivateKey | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.pool = pool
        self._channel_factory = channel_factory
        self._key = key
        self._clock = clock
        self._channel: AbstractChannel | None = None
        self._declared: set[str] = set()
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._expired_queue: AbstractQueue | None = None
        self._closed = False
        self.expired_seen = 0  # dead-lettered commands received (for tests and logs)

    @property
    def key(self) -> Ed25519PrivateKey:
        """The signing key; ``CommandProblem`` (503) saying why there is none."""
        if self._key is None:
            try:
                self._key = load_signing_key(self.config)
            except ValueError as error:
                raise CommandProblem(503, "no_signing_key", str(error)) from None
        return self._key

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the expiry sweep and the dead-letter consumer (retried while the broker is
        away: neither holds the hub's start)."""
        try:
            self.key  # noqa: B018 - a missing key is said at start, and at each command
        except CommandProblem as problem:
            logger.warning("hub: commands cannot be sent: {}", problem.message)
        self._tasks.append(asyncio.create_task(self._sweep_forever(), name="commands-sweep"))
        self._tasks.append(asyncio.create_task(self._consume_expired(), name="commands-expired"))

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._channel.close(), BROKER_TIMEOUT)
            self._channel = None

    # -- sending -----------------------------------------------------------------------------

    async def send(
        self,
        targets: Sequence[str],
        verb: str,
        args: Mapping[str, Any] | None = None,
        ttl: float | None = None,
    ) -> list[dict[str, Any]]:
        """Send ``verb`` to every target; the commands as stored (``sent``)."""
        if verb not in COMMAND_VERBS:
            known = ", ".join(sorted(COMMAND_VERBS))
            raise CommandProblem(422, "bad_verb", f"unknown verb {verb!r} (verbs: {known})")
        if not targets:
            raise CommandProblem(422, "bad_target", "no targets")
        if len(targets) > MAX_TARGETS:
            raise CommandProblem(422, "bad_target", f"at most {MAX_TARGETS} targets at once")
        lifetime = self.config.hub.command_ttl if ttl is None else ttl
        if not (0 < lifetime <= fleetcommands.MAX_LIFETIME):
            raise CommandProblem(422, "bad_ttl", "ttl must be more than 0 s and at most a day")
        checked_args = check_args(verb, args or {})
        key = self.key  # no key: nothing is checked, stored or sent
        parsed = [parse_target(text, verb) for text in targets]
        found = await known_targets(self.pool, sorted({t.host for t in parsed}))
        chosen = expand_targets(parsed, found)
        if len(chosen) > MAX_TARGETS:
            raise CommandProblem(422, "bad_target", f"the selection names {len(chosen)} services")
        now = self._clock()
        commands = [
            Command(
                id=secrets.token_hex(16),
                host=target.host,
                service=target.service,
                verb=verb,  # type: ignore[arg-type]
                issued_at=now,
                expires_at=now + lifetime,
                args=checked_args,
                issued_by=self.config.name,
            )
            for target in chosen
        ]
        channel = await self._ready_channel({c.host for c in commands})
        rows = await self._insert(commands)
        await self._publish(channel, commands, lifetime, key)
        return rows

    async def _ready_channel(self, hosts: Iterable[str]) -> AbstractChannel:
        """A channel with confirms and every host's queue declared; 503 if the broker is away."""
        try:
            async with self._lock, asyncio.timeout(BROKER_TIMEOUT):
                channel = self._channel
                if channel is None or channel.is_closed:
                    self._declared.clear()
                    channel = self._channel = await self._channel_factory()
                for host in sorted(set(hosts) - self._declared):
                    await channel.declare_queue(
                        command_queue(self.config.hub.exchange, host),
                        durable=True,
                        arguments=command_queue_arguments(self.config.hub.exchange),
                    )
                    self._declared.add(host)
                return channel
        except TimeoutError:
            self._channel = None
            raise CommandProblem(
                503, "broker_unreachable", f"the broker did not answer in {BROKER_TIMEOUT:g} s"
            ) from None
        except Exception as error:  # whatever aio-pika raises: the broker is away
            self._channel = None
            raise CommandProblem(
                503, "broker_unreachable", f"the broker is unreachable: {_describe(error)}"
            ) from None

    async def record(self, command: Command) -> None:
        """Store a command sent by another part of the hub (the log relay's ``tail``), so
        that its replies find it."""
        await self._insert([command], announce=False)

    async def extend(self, command_id: str, expires_at: float) -> None:
        """A lease renewed (the log relay's ``tail``, ``hub/logs.py``): the recorded first
        command's ``expires_at`` moves on, and the renewal gets no row of its own (a viewer
        renews every few seconds for as long as it watches)."""
        async with self.pool.connection(timeout=DB_TIMEOUT) as connection:
            await connection.execute(
                "UPDATE commands SET expires_at = greatest(expires_at, %s) WHERE id = %s",
                [expires_at, command_id],
            )

    async def _insert(
        self, commands: Sequence[Command], *, announce: bool = True
    ) -> list[dict[str, Any]]:
        async with self.pool.connection(timeout=DB_TIMEOUT) as connection, connection.transaction():
            rows = []
            for command in commands:
                cursor = await connection.execute(
                    "INSERT INTO commands (id, host, service, verb, args, issued_by, issued_at, "
                    "expires_at, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'sent') "
                    "RETURNING id, host, service, verb, args::text, status, reason, issued_at, "
                    "expires_at, issued_by",
                    [
                        command.id,
                        command.host,
                        command.service,
                        command.verb,
                        json.dumps(dict(command.args)),
                        command.issued_by,
                        command.issued_at,
                        command.expires_at,
                    ],
                )
                row = await cursor.fetchone()
                assert row is not None  # RETURNING of an insert
                rows.append(command_row(row))
            if announce:
                await notify(connection, [c.id for c in commands])
        return rows

    async def _publish(
        self,
        channel: AbstractChannel,
        commands: Sequence[Command],
        lifetime: float,
        key: Ed25519PrivateKey,
    ) -> None:
        from aio_pika import DeliveryMode, Message

        sent = 0  # confirmed by the broker
        try:
            async with asyncio.timeout(BROKER_TIMEOUT):
                for command in commands:
                    message = Message(
                        fleetcommands.sign(command, key),
                        content_type="application/json",
                        delivery_mode=DeliveryMode.PERSISTENT,
                        expiration=lifetime,
                        message_id=command.id,
                    )
                    await channel.default_exchange.publish(
                        message, routing_key=command_queue(self.config.hub.exchange, command.host)
                    )
                    sent += 1
        except Exception as error:  # a timeout or the broker's refusal
            self._channel = None
            why = (
                f"did not confirm in {BROKER_TIMEOUT:g} s"
                if isinstance(error, TimeoutError)
                else f"is unreachable: {_describe(error)}"
            )
            # The one being published when it failed may have reached the queue (a confirm
            # lost or late is no refusal): it stays "sent", saying so; those after it were
            # never handed to the broker.
            if sent < len(commands):
                await self._mark(
                    [commands[sent].id],
                    "sent",
                    f"the broker {why}: unknown whether it was delivered",
                )
            unsent = [c.id for c in commands[sent + 1 :]]
            await self._mark(unsent, "failed", f"not sent, never ran: the broker {why}")
            raise CommandProblem(
                503,
                "broker_unreachable",
                f"the broker {why}; {sent} of {len(commands)} command(s) sent",
            ) from None
        for command in commands:
            logger.info(
                "hub: sent command {} {} to {}{}",
                command.id,
                command.verb,
                command.host,
                "" if command.service is None else f"/{command.service}",
            )

    async def _mark(
        self,
        ids: Sequence[str],
        status: str,
        reason: str,
        *,
        moving: Sequence[str] = ("sent",),
    ) -> list[str]:
        """Set ``status`` on those of ``ids`` still in one of ``moving``; the ids changed."""
        if not ids:
            return []
        async with self.pool.connection(timeout=DB_TIMEOUT) as connection, connection.transaction():
            cursor = await connection.execute(
                "UPDATE commands SET status = %s, reason = %s, updated_at = now() "
                "WHERE id = ANY(%s) AND status = ANY(%s) RETURNING id",
                [status, reason, list(ids), list(moving)],
            )
            changed = [row[0] for row in await cursor.fetchall()]
            if changed:
                await notify(connection, changed)
        return changed

    # -- expiry ------------------------------------------------------------------------------

    async def sweep(self) -> list[str]:
        """Mark ``unanswered`` the commands with no answer at all ``EXPIRY_GRACE`` after their
        expiry (not ``expired``: they may have run, their replies late; module docstring)."""
        async with self.pool.connection(timeout=DB_TIMEOUT) as connection, connection.transaction():
            cursor = await connection.execute(
                "UPDATE commands SET status = %s, reason = %s, updated_at = now() "
                "WHERE status = 'sent' AND expires_at + %s < %s RETURNING id",
                [UNANSWERED, NO_ANSWER, EXPIRY_GRACE, self._clock()],
            )
            changed = [row[0] for row in await cursor.fetchall()]
            if changed:
                await notify(connection, changed)
        for command_id in changed:
            logger.info("hub: command {} {}", command_id, NO_ANSWER)
        return changed

    async def _sweep_forever(self) -> None:
        while not self._closed:
            try:
                await self.sweep()
            except Exception as error:  # the database away: next time
                logger.warning("hub: the command expiry sweep failed: {}", _describe(error))
            await asyncio.sleep(SWEEP_INTERVAL)

    async def receive_expired(self, message_id: str | None, body: bytes) -> str | None:
        """A command the broker dead-lettered (it expired in its queue, so it was never
        delivered): marked ``expired`` if no answer came (``sent``, or ``unanswered`` when the
        sweep was first); the id marked, or ``None``."""
        command_id = message_id
        ttl: float | None = None
        try:
            command, _ = fleetcommands.parse(body)
            command_id = command.id
            ttl = command.expires_at - command.issued_at
        except fleetcommands.CommandRefused as refused:
            if not command_id:
                logger.warning("hub: an expired message that is no command: {}", refused.reason)
                return None
        self.expired_seen += 1
        reason = expired_reason(ttl if ttl is not None else self.config.hub.command_ttl)
        changed = await self._mark(
            [str(command_id)], "expired", reason, moving=("sent", UNANSWERED)
        )
        if changed:
            logger.info("hub: command {} {}", command_id, reason)
        return changed[0] if changed else None

    async def _consume_expired(self) -> None:
        """Consume ``<exchange>.expired.hub`` (one hub at a time), reconnecting forever."""
        delay = 0.5
        while not self._closed:
            try:
                channel = await asyncio.wait_for(self._channel_factory(), BROKER_TIMEOUT)
                try:
                    queue = await self._declare_expired(channel)
                    delay = 0.5
                    async with queue.iterator() as messages:
                        async for message in messages:
                            await self._on_expired(message)
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(channel.close(), BROKER_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the broker away: try again
                logger.info("hub: the expired-commands consumer waits: {}", _describe(error))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _declare_expired(self, channel: AbstractChannel) -> AbstractQueue:
        from aio_pika import ExchangeType

        exchange = await channel.declare_exchange(
            expired_exchange(self.config.hub.exchange), ExchangeType.FANOUT, durable=True
        )
        queue = await channel.declare_queue(
            expired_queue(self.config.hub.exchange),
            durable=True,
            arguments={"x-single-active-consumer": True},
        )
        await queue.bind(exchange)
        self._expired_queue = queue
        return queue

    async def _on_expired(self, message: AbstractIncomingMessage) -> None:
        try:
            await self.receive_expired(message.message_id, message.body)
        except Exception as error:  # the database away: the broker keeps it
            logger.warning("hub: cannot record an expired command yet: {}", _describe(error))
            await message.nack(requeue=True)
            await asyncio.sleep(1.0)
            return
        await message.ack()


def expired_queue(exchange: str) -> str:
    """The hubs' queue on the dead-letter exchange (single active consumer)."""
    return f"{expired_exchange(exchange)}.hub"


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = [
    "CommandProblem",
    "CommandSender",
    "Target",
    "Verb",
    "check_args",
    "expand_targets",
    "expired_queue",
    "expired_reason",
    "load_signing_key",
    "parse_target",
]
