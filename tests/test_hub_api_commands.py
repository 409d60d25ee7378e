"""Commands from the hub's API through the real broker: signed, on the host's queue, expiring."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from heartwatch.core import fleetcommands
from heartwatch.core.fleetwire import Envelope, command_queue, command_queue_arguments
from heartwatch.hub.api import create_hub_app
from heartwatch.hub.commands import (
    NO_ANSWER,
    CommandProblem,
    CommandSender,
    Target,
    expand_targets,
    parse_target,
)
from heartwatch.hub.store import FleetStore, check_storable
from hubweb_support import BOOT, add_host, add_service, hub_config, opened_pool, run

KEY = Ed25519PrivateKey.generate()


@contextlib.asynccontextmanager
async def _hub(dsn: str, broker: str, exchange: str) -> AsyncIterator[tuple[Any, Any, Any]]:
    """The app with a started sender, an HTTP client to it, and a broker channel for the test."""
    async with opened_pool(dsn) as pool:
        await add_host(pool, "farm-01")
        await add_service(pool, "farm-01", "collector@0", instance_of="collector")
        await add_service(pool, "farm-01", "collector@1", instance_of="collector")
        await add_service(pool, "farm-01", "emulator")
        await add_host(pool, "farm-02")
        connection = await aio_pika.connect_robust(broker, timeout=10)
        try:
            config = hub_config(dsn, broker=broker, exchange=exchange)
            sender = CommandSender(config, connection.channel, pool, key=KEY)
            await sender.start()
            app = create_hub_app(config, pool, sender, None, None)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1"
            ) as client:
                channel = await connection.channel()
                try:
                    yield client, channel, sender
                finally:
                    await sender.close()
                    await channel.close()
        finally:
            await connection.close()


async def _host_queue(channel: Any, exchange: str, host: str) -> Any:
    return await channel.declare_queue(
        command_queue(exchange, host), durable=True, arguments=command_queue_arguments(exchange)
    )


async def _get(queue: Any, wait: float = 10.0) -> Any:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        message = await queue.get(fail=False, no_ack=True)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError("no message on the queue")


def test_hub_commands_a_signed_command_lands_on_the_hosts_queue(
    fresh_database: str, rabbitmq: str, unique_exchange: str
) -> None:
    """POST: 202, one command per expanded target, each on the host's queue, persistent,
    expiring with the ttl, its id as message_id, verified by the hub's public key."""

    async def main() -> tuple[httpx.Response, list[Any], list[fleetcommands.Command]]:
        async with _hub(fresh_database, rabbitmq, unique_exchange) as (client, channel, _):
            answer = await client.post(
                "/api/v1/commands",
                json={"targets": ["farm-01/collector@*"], "verb": "restart", "ttl": 30},
            )
            queue = await _host_queue(channel, unique_exchange, "farm-01")
            messages = [await _get(queue), await _get(queue)]
            verified = [
                fleetcommands.judge(
                    m.body,
                    host="farm-01",
                    now=time.time(),
                    trusted=[KEY.public_key()],
                    already_ran=lambda _: False,
                )
                for m in messages
            ]
            return answer, messages, verified

    answer, messages, verified = run(main)
    assert answer.status_code == 202, answer.text
    commands = answer.json()["commands"]
    assert [(c["host"], c["service"], c["status"]) for c in commands] == [
        ("farm-01", "collector@0", "sent"),
        ("farm-01", "collector@1", "sent"),
    ]
    assert commands[0]["expires_at"] - commands[0]["issued_at"] == pytest.approx(30)
    assert commands[0]["issued_by"] == "hub-test"
    assert [m.message_id for m in messages] == [c["id"] for c in commands]
    assert all(m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in messages)
    assert all(m.expiration == 30 for m in messages)
    assert [v.service for v in verified] == ["collector@0", "collector@1"]
    assert all(v.verb == "restart" for v in verified)


def test_hub_commands_an_unknown_target_refuses_the_whole_request(
    fresh_database: str, rabbitmq: str, unique_exchange: str
) -> None:
    """One unknown host or service among the targets: 422 naming it, nothing stored or sent."""

    async def main() -> tuple[list[httpx.Response], Any, Any]:
        async with _hub(fresh_database, rabbitmq, unique_exchange) as (client, channel, _):
            answers = [
                await client.post(
                    "/api/v1/commands",
                    json={"targets": ["farm-01/emulator", "farm-01/colector"], "verb": "stop"},
                ),
                await client.post(
                    "/api/v1/commands", json={"targets": ["farm-77/emulator"], "verb": "stop"}
                ),
                await client.post(
                    "/api/v1/commands", json={"targets": ["farm-01/emulator"], "verb": "reload"}
                ),
            ]
            queue = await _host_queue(channel, unique_exchange, "farm-01")
            await asyncio.sleep(0.3)
            left = await queue.get(fail=False, no_ack=True)
            listed = await client.get("/api/v1/commands")
            return answers, left, listed

    (typo, host, reload), left, listed = run(main)
    assert typo.status_code == 422
    assert typo.json()["code"] == "unknown_target"
    assert "no service 'colector'" in typo.json()["message"]
    assert "did you mean" in typo.json()["message"]
    assert host.json() == {"code": "unknown_target", "message": "no host 'farm-77'"}
    assert reload.status_code == 422 and "takes a host alone" in reload.json()["message"]
    assert left is None
    assert listed.json() == {"commands": []}


def test_hub_commands_expired_in_the_queue_is_reported_never_ran(
    fresh_database: str, rabbitmq: str, unique_exchange: str
) -> None:
    """No agent takes it: the broker dead-letters it at its expiry and the hub says so."""

    async def main() -> tuple[dict[str, Any], int]:
        async with _hub(fresh_database, rabbitmq, unique_exchange) as (client, _, sender):
            answer = await client.post(
                "/api/v1/commands",
                json={"targets": ["farm-02"], "verb": "reload", "ttl": 1},
            )
            command_id = answer.json()["commands"][0]["id"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                found = (await client.get(f"/api/v1/commands/{command_id}")).json()
                if found["status"] != "sent":
                    return found, sender.expired_seen
                await asyncio.sleep(0.2)
            raise AssertionError(f"still {found['status']} after 30 s")

    found, seen = run(main)
    assert found["status"] == "expired"
    assert found["reason"] == "expired, never ran (not delivered within 1 s)"
    assert seen == 1


def test_hub_commands_the_sweep_says_unanswered_not_never_ran(
    fresh_database: str, rabbitmq: str, unique_exchange: str
) -> None:
    """A command still "sent" 30 s past its expiry is unanswered (it may have run: unknown);
    an accepted one is left alone."""

    async def main() -> tuple[list[str], list[tuple[str, str]]]:
        async with _hub(fresh_database, rabbitmq, unique_exchange) as (client, _, sender):
            sent = []
            for target in ("farm-01/emulator", "farm-01/collector@0"):
                answer = await client.post(
                    "/api/v1/commands", json={"targets": [target], "verb": "start", "ttl": 5}
                )
                sent.append(answer.json()["commands"][0]["id"])
            async with sender.pool.connection() as connection:
                await connection.execute(
                    "UPDATE commands SET status = 'accepted' WHERE id = %s", [sent[1]]
                )
            sender._clock = lambda: time.time() + 40  # past expires_at + 30 s
            changed = await sender.sweep()
            rows = []
            for command_id in sent:
                found = (await client.get(f"/api/v1/commands/{command_id}")).json()
                rows.append((found["status"], found["reason"]))
            return [sent.index(c) for c in changed], rows

    changed, rows = run(main)
    assert changed == [0]
    assert rows == [
        ("unanswered", "no answer by its expiry: unknown whether it ran"),
        ("accepted", ""),
    ]


def _reply(seq: int, command: dict[str, Any], status: str, reason: str = "") -> Any:
    body = fleetcommands.reply_body(command, status, reason)  # type: ignore[arg-type]
    return check_storable(Envelope("reply", "farm-01", BOOT, seq, time.time(), body))


def test_hub_commands_a_late_reply_moves_what_only_the_sweep_settled(
    fresh_database: str, rabbitmq: str, unique_exchange: str
) -> None:
    """The review's case: the agent ran the command in time, its replies waited (its outbox,
    the hub's ingest) past expiry + 30 s. The sweep said unanswered; the replies, when they
    come, say what happened: accepted, then done. What the broker decided stays: a command
    dead-lettered (never delivered) is expired, and a later reply does not move it."""

    async def main() -> tuple[list[tuple[str, str]], tuple[str, str]]:
        async with _hub(fresh_database, rabbitmq, unique_exchange) as (client, _, sender):
            answer = await client.post(
                "/api/v1/commands",
                json={"targets": ["farm-01/emulator", "farm-01/collector@0"], "verb": "restart"},
            )
            ran, lost = answer.json()["commands"]
            sender._clock = lambda: time.time() + 120  # past the 60 s ttl + 30 s
            assert sorted(await sender.sweep()) == sorted([ran["id"], lost["id"]])
            seen = []

            async def status(command_id: str) -> tuple[str, str]:
                found = (await client.get(f"/api/v1/commands/{command_id}")).json()
                return found["status"], found["reason"]

            seen.append(await status(ran["id"]))
            store = FleetStore(sender.pool)
            await store.write_batch([_reply(1, ran, "accepted")])
            seen.append(await status(ran["id"]))
            await store.write_batch([_reply(2, ran, "done", "restarted emulator")])
            seen.append(await status(ran["id"]))
            # The broker's word over the sweep's: never delivered; then nothing moves it.
            signed = fleetcommands.sign(
                fleetcommands.Command(
                    id=lost["id"],
                    host="farm-01",
                    service="collector@0",
                    verb="restart",
                    issued_at=lost["issued_at"],
                    expires_at=lost["expires_at"],
                    issued_by="hub-test",
                ),
                KEY,
            )
            assert await sender.receive_expired(lost["id"], signed) == lost["id"]
            await store.write_batch([_reply(3, lost, "done", "restarted collector@0")])
            return seen, await status(lost["id"])

    seen, lost = run(main)
    assert seen == [
        ("unanswered", NO_ANSWER),
        ("accepted", ""),
        ("done", "restarted emulator"),
    ]
    assert lost == ("expired", "expired, never ran (not delivered within 60 s)")


def test_hub_commands_a_publish_not_confirmed_is_not_said_never_ran(
    fresh_database: str,
) -> None:
    """The broker fails while the second of three commands is being published: the first was
    confirmed (sent), the second may have been delivered (sent, saying it is unknown), only
    the third, never handed to the broker, is failed "not sent, never ran"."""

    class Exchange:
        def __init__(self) -> None:
            self.published = 0

        async def publish(self, message: Any, routing_key: str) -> None:
            self.published += 1
            if self.published == 2:
                raise ConnectionResetError("the broker went away")

    class Channel:
        default_exchange = Exchange()
        is_closed = False

    async def main() -> list[tuple[str, str]]:
        async with opened_pool(fresh_database) as pool:
            await add_host(pool, "farm-01")
            for name in ("a", "b", "c"):
                await add_service(pool, "farm-01", name)
            config = hub_config(fresh_database)
            sender = CommandSender(config, lambda: None, pool, key=KEY)  # type: ignore[arg-type,return-value]
            commands = [
                fleetcommands.Command(
                    id=f"{n:032x}",
                    host="farm-01",
                    service=name,
                    verb="stop",
                    issued_at=time.time(),
                    expires_at=time.time() + 60,
                    issued_by="hub-test",
                )
                for n, name in enumerate("abc")
            ]
            await sender._insert(commands)
            with pytest.raises(CommandProblem, match="1 of 3 command"):
                await sender._publish(Channel(), commands, 60, KEY)  # type: ignore[arg-type]
            async with pool.connection() as connection:
                cursor = await connection.execute("SELECT status, reason FROM commands ORDER BY id")
                return [(row[0], row[1]) for row in await cursor.fetchall()]

    assert run(main) == [
        ("sent", ""),
        (
            "sent",
            "the broker is unreachable: the broker went away: unknown whether it was delivered",
        ),
        ("failed", "not sent, never ran: the broker is unreachable: the broker went away"),
    ]


def test_hub_commands_an_unreachable_broker_is_a_503_saying_so(fresh_database: str) -> None:
    """The broker does not answer: the POST ends within its bound, 503, saying why."""

    async def main() -> tuple[httpx.Response, float]:
        async with opened_pool(fresh_database) as pool:
            await add_host(pool, "farm-01")
            await add_service(pool, "farm-01", "emulator")
            config = hub_config(fresh_database, broker="amqp://guest:guest@127.0.0.1:1/%2F")

            async def no_broker() -> Any:
                return await aio_pika.connect("amqp://guest:guest@127.0.0.1:1/%2F", timeout=2)

            sender = CommandSender(config, no_broker, pool, key=KEY)
            app = create_hub_app(config, pool, sender, None, None)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1"
            ) as client:
                started = time.monotonic()
                answer = await client.post(
                    "/api/v1/commands", json={"targets": ["farm-01/emulator"], "verb": "stop"}
                )
                return answer, time.monotonic() - started

    answer, took = run(main)
    assert answer.status_code == 503
    assert answer.json()["code"] == "broker_unreachable"
    assert "the broker is unreachable" in answer.json()["message"]
    assert took < 30  # bounded (BROKER_TIMEOUT), generously


def test_hub_commands_targets_parse_and_expand_into_one_command_each() -> None:
    """Pure: selections become concrete services, each once; bad forms say why."""
    known = {"farm-01": [("collector@0", "collector"), ("collector@1", "collector"), ("db", None)]}
    targets = [parse_target(t, "restart") for t in ("farm-01/collector", "farm-01/collector@1")]
    assert expand_targets(targets, known) == [
        Target("farm-01", "collector@0"),
        Target("farm-01", "collector@1"),
    ]
    assert expand_targets([parse_target("farm-01", "reload")], known) == [Target("farm-01", None)]
    with pytest.raises(CommandProblem, match="restart needs host/service"):
        parse_target("farm-01", "restart")
    with pytest.raises(CommandProblem, match="not host/service"):
        parse_target("farm 01/db", "restart")
    with pytest.raises(CommandProblem, match="no host 'farm-02'"):
        expand_targets([Target("farm-02", "db")], known)
