"""Live logs across hosts through the real broker, and the change feed through PostgreSQL.

The agent is faked here: a consumer of the host's command queue that checks the signed
``tail`` command and publishes lines on the fleet exchange under the stream's routing key
(``<host>.<service>.log.<stream>``), as ``daemon/fleet_commands.py`` does. End to end with
real agents is tests/e2e's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiormq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from heartwatch.core import fleetcommands
from heartwatch.core.fleetwire import command_queue, command_queue_arguments, log_routing_key
from heartwatch.hub.api import create_hub_app
from heartwatch.hub.commands import CommandSender
from heartwatch.hub.feed import FleetFeed
from heartwatch.hub.logs import FrameMaker, LogRelay
from hubweb_support import add_host, add_service, hub_config, opened_pool, run, served

KEY = Ed25519PrivateKey.generate()


@contextlib.asynccontextmanager
async def _hub(
    dsn: str, broker: str | None, exchange: str, *, lease: float = 30.0
) -> AsyncIterator[tuple[str, Any, Any]]:
    """The hub's app served on 127.0.0.1:0 with a relay and a feed; its URL, pool, broker."""
    async with opened_pool(dsn) as pool:
        await add_host(pool, "farm-01")
        await add_service(pool, "farm-01", "collector")
        await add_host(pool, "farm-02", state="unreachable", silent_for=90)
        await add_service(pool, "farm-02", "collector")
        connection = await aio_pika.connect_robust(broker, timeout=10) if broker else None
        config = hub_config(dsn, exchange=exchange)
        feed = FleetFeed(pool)
        await feed.start()
        sender = relay = None
        if connection is not None:
            sender = CommandSender(config, connection.channel, pool, key=KEY)
            relay = LogRelay(config, connection, sender, lease=lease)
        try:
            await asyncio.wait_for(feed.listening.wait(), 10)
            app = create_hub_app(config, pool, sender, feed, relay)
            async with served(app) as url:
                yield url.replace("http://", "ws://"), pool, connection
        finally:
            await feed.close()
            if connection is not None:
                await connection.close()


async def _fake_agent(
    connection: Any, exchange: str, host: str, seen: list[fleetcommands.Command]
) -> Any:
    """Takes the host's commands; answers each new tail stream with three messages."""
    channel = await connection.channel()
    fleet = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(
        command_queue(exchange, host), durable=True, arguments=command_queue_arguments(exchange)
    )
    answered: set[str] = set()

    async def on_command(message: Any) -> None:
        command = fleetcommands.judge(
            message.body,
            host=host,
            now=time.time(),
            trusted=[KEY.public_key()],
            already_ran=lambda _: False,
        )
        seen.append(command)
        assert command.service is not None
        target = log_routing_key(host, command.service, command.args["stream"])
        if target in answered:
            return  # a renewal
        answered.add(target)
        # Another service's stream of the same token: not bound, never shown.
        await fleet.publish(
            aio_pika.Message(b'{"line": "not this"}'),
            routing_key=log_routing_key(host, "other", command.args["stream"]),
        )
        for body in ({"line": "hello"}, {"line": "\x1b[31mred\x1b[0m <b>"}, {"skipped": 3}):
            await fleet.publish(
                aio_pika.Message(json.dumps(body).encode()), routing_key=target, mandatory=True
            )

    await queue.consume(on_command, no_ack=True)
    return channel


def test_hub_logs_a_tail_is_relayed_in_the_agents_protocol_renewed_and_cleaned_up(
    fresh_database: str, rabbitmq: str, unique_exchange: str
) -> None:
    """The viewer gets the agent's lines as the agent's websocket sends them (html escaped,
    the skip said as a notice); the lease is renewed while it watches, each renewal a
    signed command of its own that adds no row (the first's expiry moves on); its queue is
    gone after it leaves."""

    async def main() -> tuple[list[str], list[fleetcommands.Command], bool, int, list[Any]]:
        seen: list[fleetcommands.Command] = []
        async with _hub(fresh_database, rabbitmq, unique_exchange, lease=1.5) as (
            url,
            pool,
            connection,
        ):
            agent = await _fake_agent(connection, unique_exchange, "farm-01", seen)
            frames: list[str] = []
            async with connect(f"{url}/ws/logs/farm-01/collector?lines=7&format=html") as ws:
                while sum(f.count("\n") + 1 for f in frames) < 3:
                    frames.append(str(await asyncio.wait_for(ws.recv(), 10)))
                deadline = time.monotonic() + 10
                while len(seen) < 3 and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
            queue_name = seen[0].args["queue"]
            gone = False
            deadline = time.monotonic() + 10
            while not gone and time.monotonic() < deadline:
                probe = await connection.channel()
                try:
                    await probe.declare_queue(queue_name, passive=True)
                    await asyncio.sleep(0.2)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    gone = True
                finally:
                    with contextlib.suppress(Exception):
                        await probe.close()
            renewals = len(seen)
            await asyncio.sleep(1.5)  # no renewal once the viewer left
            stopped = len(seen) - renewals
            await agent.close()
            async with pool.connection() as db:
                cursor = await db.execute("SELECT id, verb, expires_at FROM commands")
                recorded = await cursor.fetchall()
            return frames, seen, gone, stopped, recorded

    frames, seen, gone, stopped, recorded = run(main)
    lines = "\n".join(frames).split("\n")
    assert lines[0] == "hello"
    assert lines[1] == '<span class="ansi-fg-1">red</span> &lt;b&gt;'
    assert lines[2] == (
        '<span class="hw-marker">[heartwatch] skipped 3 lines (this viewer could not keep up)'
        "</span>"
    )
    first = seen[0]
    assert (first.verb, first.service, first.args["lines"], first.args["lease"]) == (
        "tail",
        "collector",
        7,
        1.5,
    )
    assert first.args["queue"].startswith(f"{unique_exchange}.tail.")
    assert first.args["queue"] == f"{unique_exchange}.tail.{first.args['stream']}"
    assert {c.args["stream"] for c in seen} == {first.args["stream"]}
    assert len(seen) >= 3 and {c.args["queue"] for c in seen} == {first.args["queue"]}
    assert len({c.id for c in seen}) == len(seen)  # each renewal is a command of its own
    # ... and only the first is a row, its expiry that of the last renewal.
    assert [(row[0], row[1]) for row in recorded] == [(first.id, "tail")]
    assert recorded[0][2] == max(c.expires_at for c in seen)
    assert gone
    assert stopped == 0


def test_hub_logs_an_unreachable_host_or_unknown_service_is_said_at_once(
    fresh_database: str,
) -> None:
    """No waiting on a silent agent: a refusal close with the reason, at once."""

    async def main() -> list[tuple[int, str, float]]:
        found = []
        async with _hub(fresh_database, None, "heartwatch.fleet") as (url, _, _):
            for path in ("farm-02/collector", "farm-01/nothing", "farm-99/collector"):
                started = time.monotonic()
                async with connect(f"{url}/ws/logs/{path}") as ws:
                    try:
                        await asyncio.wait_for(ws.recv(), 10)
                    except ConnectionClosed as closed:
                        assert closed.rcvd is not None
                        found.append(
                            (closed.rcvd.code, closed.rcvd.reason, time.monotonic() - started)
                        )
        return found

    unreachable, service, host = run(main)
    assert unreachable[0] == 4410
    assert unreachable[1].startswith("farm-02 is unreachable (silent for 9")
    assert service[:2] == (4404, "no service 'nothing' on farm-01")
    assert host[:2] == (4404, "no host 'farm-99'")
    assert all(took < 5 for _, _, took in (unreachable, service, host))


def test_hub_logs_frames_bound_what_a_slow_viewer_holds() -> None:
    """Pure: past the buffer, the oldest lines go and the viewer is told how many."""
    maker = FrameMaker(html_format=False, grep=None)
    for index in range(6000):
        maker.receive({"line": f"line {index}"})
    frames = []
    while (frame := maker.take_frame()) is not None:
        frames.append(frame)
    lines = "\n".join(frames).split("\n")
    assert lines[0] == "[heartwatch] skipped 1000 lines (this viewer could not keep up)"
    assert lines[1] == "line 1000" and lines[-1] == "line 5999"
    assert maker.receive({"end": "the lease ended"}) == "the lease ended"


def test_hub_feed_pushes_a_changed_row_to_a_websocket_client(fresh_database: str) -> None:
    """hello first; a service's change and its notice: a "service" message; a host gone
    unreachable: its services pushed as unknown."""

    async def main() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with (
            _hub(fresh_database, None, "heartwatch.fleet") as (url, pool, _),
            connect(f"{url}/ws/events") as ws,
        ):
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
            async with pool.connection() as connection:
                await connection.execute(
                    "UPDATE services SET state = 'backoff', reason = 'exited 1' "
                    "WHERE host = 'farm-01'"
                )
                await connection.execute(
                    "SELECT pg_notify('heartwatch_fleet', %s)",
                    [json.dumps({"services": [["farm-01", "collector"]], "events": 0})],
                )
                await connection.commit()
            pushed = [json.loads(await asyncio.wait_for(ws.recv(), 10))]
            async with pool.connection() as connection:
                await connection.execute(
                    "UPDATE hosts SET state = 'unreachable' WHERE host = 'farm-01'"
                )
                await connection.execute(
                    "SELECT pg_notify('heartwatch_fleet', %s)",
                    [json.dumps({"hosts": ["farm-01"]})],
                )
                await connection.commit()
            pushed.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            pushed.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        return hello, pushed

    hello, (service, host, unknown) = run(main)
    assert hello["type"] == "hello"
    assert {h["host"] for h in hello["fleet"]["hosts"]} == {"farm-01", "farm-02"}
    assert service["type"] == "service"
    assert (service["service"]["name"], service["service"]["state"]) == ("collector", "backoff")
    assert service["service"]["reason"] == "exited 1"
    assert host["type"] == "host" and host["host"]["state"] == "unreachable"
    assert unknown["type"] == "service"
    assert (unknown["service"]["state"], unknown["service"]["last_state"]) == (
        "unknown",
        "backoff",
    )


def test_hub_feed_pushes_events_and_commands_and_coalesces_a_burst(fresh_database: str) -> None:
    """A new event and a command are pushed; 30 changes of one service in a burst arrive as
    a few messages, the last with the last change."""

    async def notify(pool: Any, sql: str, params: list[Any], notice: dict[str, Any]) -> None:
        async with pool.connection() as connection:
            await connection.execute(sql, params)
            await connection.execute(
                "SELECT pg_notify('heartwatch_fleet', %s)", [json.dumps(notice)]
            )
            await connection.commit()

    async def until(ws: Any, kind: str) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] == kind:
                return message

    async def main() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        async with (
            _hub(fresh_database, None, "heartwatch.fleet") as (url, pool, _),
            connect(f"{url}/ws/events") as ws,
        ):
            await asyncio.wait_for(ws.recv(), 10)  # hello
            await notify(
                pool,
                "INSERT INTO events (host, boot, seq, type, at, kind, service, reason, body) "
                "VALUES ('farm-01', %s, 1, 'entry', %s, 'transition', 'collector', 'hung', '{}')",
                ["0123456789abcdef0123456789abcdef", time.time()],
                {"hosts": ["farm-01"], "events": 1},
            )
            event = await until(ws, "event")
            await notify(
                pool,
                "INSERT INTO commands (id, host, service, verb, issued_by, issued_at, expires_at) "
                "VALUES ('c1', 'farm-01', 'collector', 'restart', 'hub', 1, 61)",
                [],
                {"commands": ["c1"]},
            )
            command = await until(ws, "command")
            # 30 changes and their notices, delivered together at the commit: a burst.
            async with pool.connection() as connection:
                for index in range(30):
                    await connection.execute(
                        "UPDATE services SET reason = %s WHERE host = 'farm-01'",
                        [f"change {index}"],
                    )
                    notice = {"services": [["farm-01", "collector"]], "burst": index}
                    await connection.execute(
                        "SELECT pg_notify('heartwatch_fleet', %s)", [json.dumps(notice)]
                    )
                await connection.commit()
            reasons: list[str] = []
            while not reasons or reasons[-1] != "change 29":
                reasons.append((await until(ws, "service"))["service"]["reason"])
        return event, command, reasons

    event, command, reasons = run(main)
    assert event["event"]["host"] == "farm-01" and event["event"]["reason"] == "hung"
    assert (command["command"]["id"], command["command"]["status"]) == ("c1", "sent")
    assert len(reasons) < 30  # coalesced: one read for what piled up
    assert reasons[-1] == "change 29"


def test_hub_feed_a_client_that_falls_behind_is_dropped_not_waited_for() -> None:
    """Its queue full: it is forgotten and told (the others go on); counted."""
    from heartwatch.hub.feed import CLIENT_QUEUE
    from heartwatch.hub.metrics import HubCounters

    async def main() -> tuple[bool, bool, int, int]:
        counters = HubCounters()
        feed = FleetFeed(None, dsn="postgresql://unused", counters=counters)  # type: ignore[arg-type]
        slow, quick = feed.subscribe(), feed.subscribe()
        for index in range(CLIENT_QUEUE + 1):
            feed.broadcast(b"{}")
            if index % 100 == 0:
                while not quick.queue.empty():
                    quick.queue.get_nowait()
        return slow.dropped, slow in feed.clients, quick.dropped, counters.feed_dropped

    dropped, kept, quick_dropped, counted = run(main)
    assert dropped and not kept
    assert not quick_dropped
    assert counted == 1


def test_hub_websockets_need_the_token_and_say_so(fresh_database: str) -> None:
    """With tokens configured, /ws/events and /ws/logs without one: closed 4401, why said."""

    async def main() -> list[tuple[int, str]]:
        found = []
        async with opened_pool(fresh_database) as pool:
            config = hub_config(fresh_database, tokens=True)
            async with served(create_hub_app(config, pool, None, FleetFeed(pool), None)) as url:
                for path in ("/ws/events", "/ws/logs/farm-01/collector"):
                    async with connect(url.replace("http://", "ws://") + path) as ws:
                        try:
                            await asyncio.wait_for(ws.recv(), 10)
                        except ConnectionClosed as closed:
                            assert closed.rcvd is not None
                            found.append((closed.rcvd.code, closed.rcvd.reason))
        return found

    assert run(main) == [(4401, "a valid token is required")] * 2


def test_hub_feed_reconnects_when_its_database_connection_drops(fresh_database: str) -> None:
    """The LISTEN connection killed: the feed connects again and, since notices may have been
    missed, sends its clients a fresh hello; later changes are pushed again."""

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with (
            _hub(fresh_database, None, "heartwatch.fleet") as (url, pool, _),
            connect(f"{url}/ws/events") as ws,
        ):
            await asyncio.wait_for(ws.recv(), 10)  # hello
            async with pool.connection() as connection:
                await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
                )
            again = json.loads(await asyncio.wait_for(ws.recv(), 20))
            async with pool.connection() as connection:
                await connection.execute(
                    "UPDATE services SET reason = 'later' WHERE host = 'farm-01'"
                )
                await connection.execute(
                    "SELECT pg_notify('heartwatch_fleet', %s)",
                    [json.dumps({"services": [["farm-01", "collector"]]})],
                )
            later = json.loads(await asyncio.wait_for(ws.recv(), 10))
        return again, later

    again, later = run(main)
    assert again["type"] == "hello"
    assert later["type"] == "service" and later["service"]["reason"] == "later"


def test_hub_logs_a_refused_tail_is_said_and_ends_the_stream(
    fresh_database: str, rabbitmq: str, unique_exchange: str
) -> None:
    """The agent refuses the tail (its reply, stored by the ingest): the viewer reads why."""

    async def main() -> tuple[list[str], int | None]:
        async with _hub(fresh_database, rabbitmq, unique_exchange) as (url, pool, connection):
            channel = await connection.channel()
            queue = await channel.declare_queue(
                command_queue(unique_exchange, "farm-01"),
                durable=True,
                arguments=command_queue_arguments(unique_exchange),
            )

            async def refuse_it(message: Any) -> None:  # what the ingest does with the reply
                async with pool.connection() as db:
                    await db.execute(
                        "UPDATE commands SET status = 'refused', reason = %s WHERE id = %s",
                        ["the signature is not one of a trusted hub's keys", message.message_id],
                    )

            await queue.consume(refuse_it, no_ack=True)
            frames: list[str] = []
            async with connect(f"{url}/ws/logs/farm-01/collector") as ws:
                try:
                    while True:
                        frames.append(str(await asyncio.wait_for(ws.recv(), 10)))
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else None
            await channel.close()
            return frames, code

    frames, code = run(main)
    assert frames == [
        "[heartwatch] farm-01: tail refused: the signature is not one of a trusted hub's keys"
    ]
    assert code == 1000
