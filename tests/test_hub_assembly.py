"""The assembled hub (run_hub) on the real broker and database, and the hub's commands."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import psycopg
from typer.testing import CliRunner

from heartwatch.cli.app import app
from heartwatch.core.fleetcommands import parse_private_key, parse_public_key, public_key_text
from heartwatch.core.fleetwire import Envelope, encode, event_routing_key
from heartwatch.hub.assembly import run_hub
from heartwatch.hub.config import parse_hub_config
from heartwatch.hub.schema import migrate
from hub_outage import database_outage
from hubstore_support import heartbeat, new_boot, run, transition

WAIT = 30.0


def write_key(tmp_path: Path) -> Path:
    result = CliRunner().invoke(app, ["hub", "keygen", str(tmp_path / "hub.key")])
    assert result.exit_code == 0, result.output
    return tmp_path / "hub.key"


def test_hub_keygen_writes_a_private_key_0600_and_prints_the_public_line(tmp_path: Path) -> None:
    """A key only its owner reads; the line for the agents' [fleet]; never overwritten."""
    out = tmp_path / "hub.key"
    result = CliRunner().invoke(app, ["hub", "keygen", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = parse_private_key(out.read_text().strip())
    line = next(text for text in result.stdout.splitlines() if text.startswith("hub_keys"))
    public = json.loads(line.partition("=")[2])[0]
    assert public == public_key_text(key.public_key())
    parse_public_key(public)
    before = out.read_bytes()
    again = CliRunner().invoke(app, ["hub", "keygen", str(out)])
    assert again.exit_code == 1
    assert "not overwritten" in again.output
    assert out.read_bytes() == before


def test_hub_check_says_what_is_wrong_by_key_path(tmp_path: Path) -> None:
    """--check: a broken file exits 2 naming the key; a missing signing key is said."""
    path = tmp_path / "hub.toml"
    path.write_text('[hub]\nbroker = "amqp://guest:guest@127.0.0.1/"\nstale_after = "x"\n')
    result = CliRunner().invoke(app, ["hub", "-c", str(path), "--check"])
    assert result.exit_code == 2
    assert "hub.database: required, and missing" in result.output
    assert "hub.stale_after" in result.output
    path.write_text(
        '[hub]\nbroker = "amqp://guest:guest@127.0.0.1/"\n'
        'database = "postgresql://postgres@127.0.0.1/x"\n'
    )
    result = CliRunner().invoke(app, ["hub", "-c", str(path), "--check"], env={})
    assert result.exit_code == 2
    assert "no signing key" in result.output
    write_key(tmp_path)
    path.write_text(path.read_text() + 'signing_key = "hub.key"\n')
    result = CliRunner().invoke(app, ["hub", "-c", str(path), "--check"])
    assert result.exit_code == 0, result.output


def test_hub_runs_ingests_and_answers(
    tmp_path: Path, rabbitmq: str, unique_exchange: str, fresh_database: str
) -> None:
    """run_hub: migrates, writes hub.json (its address and pid), stores what agents publish
    and shows it in /api/v1/fleet; at stop, hub.json is gone."""
    write_key(tmp_path)
    config = parse_hub_config(
        {
            "hub": {
                "name": "hub-test",
                "broker": rabbitmq,
                "database": fresh_database,
                "exchange": unique_exchange,
                "http": "127.0.0.1:0",
                "state_dir": "state",
                "signing_key": "hub.key",
            }
        },
        base_dir=tmp_path,
        environ={},
    )
    info = tmp_path / "state" / "hub.json"
    boot = new_boot()

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        stop = asyncio.Event()
        hub = asyncio.create_task(run_hub(config, stop))
        try:
            written = await _until(lambda: info.exists() and info.read_text().endswith("\n"))
            assert written
            address = json.loads(info.read_text())
            await _publish(
                rabbitmq,
                unique_exchange,
                [
                    heartbeat("farm-31", boot),
                    transition("farm-31", boot, 1, "collector@2", "running", "ready"),
                ],
            )
            async with httpx.AsyncClient(base_url=f"http://{address['http']}") as client:

                async def has_service() -> bool:
                    fleet = (await client.get("/api/v1/fleet")).json()
                    return bool(fleet["services"])

                assert await _until_async(has_service)
                fleet = (await client.get("/api/v1/fleet")).json()
        finally:
            stop.set()
            await asyncio.wait_for(hub, WAIT)
        return address, fleet

    address, fleet = run(main, timeout=90)
    assert address["pid"] == os.getpid()
    assert address["http"].startswith("127.0.0.1:")
    assert [host["host"] for host in fleet["hosts"]] == ["farm-31"]
    assert [(s["host"], s["name"], s["state"]) for s in fleet["services"]] == [
        ("farm-31", "collector@2", "running")
    ]
    assert not info.exists()


async def _publish(url: str, exchange_name: str, envelopes: list[Envelope]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for envelope in envelopes:
            await exchange.publish(
                aio_pika.Message(encode(envelope), content_type="application/json"),
                routing_key=event_routing_key(envelope),
            )


async def _until(condition: Any) -> bool:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _until_async(condition: Any) -> bool:
    deadline = time.monotonic() + WAIT
    while not await condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


def test_hub_without_its_broker_serves_the_fleet_and_alerts_no_host(
    tmp_path: Path, fresh_database: str
) -> None:
    """A hub whose broker is not there (a closed port): it keeps trying, yet serves the fleet
    from the database and writes hub.json; commands answer 503 broker_unreachable; a host
    silent far beyond unreachable_after is not made unreachable (this hub hears nobody)."""
    write_key(tmp_path)
    config = parse_hub_config(
        {
            "hub": {
                "broker": "amqp://guest:guest@127.0.0.1:1/%2F",  # nothing listens there
                "database": fresh_database,
                "http": "127.0.0.1:0",
                "state_dir": "state",
                "signing_key": "hub.key",
                "stale_after": "1s",
                "unreachable_after": "2s",
                "start_grace": "0s",
            }
        },
        base_dir=tmp_path,
        environ={},
    )
    info = tmp_path / "state" / "hub.json"

    async def main() -> tuple[bool, int, list[str], int, dict[str, Any], list[Any]]:
        await migrate(fresh_database)
        async with await psycopg.AsyncConnection.connect(fresh_database) as connection:
            await connection.execute(
                "INSERT INTO hosts (host, boot, last_seen)"
                " VALUES ('farm-41', 'b', now() - '1h'::interval)"
            )
            await connection.commit()
        stop = asyncio.Event()
        hub = asyncio.create_task(run_hub(config, stop))
        try:
            assert await _until(lambda: info.exists() and info.read_text().endswith("\n"))
            address = json.loads(info.read_text())
            assert address["broker"] is False
            async with httpx.AsyncClient(base_url=f"http://{address['http']}") as client:
                fleet = await client.get("/api/v1/fleet")
                sent = await client.post(
                    "/api/v1/commands", json={"targets": ["farm-41"], "verb": "reload"}
                )
                await asyncio.sleep(3.5)  # past stale_after + unreachable_after, grace 0
                host = (await client.get("/api/v1/hosts/farm-41")).json()
            running = not hub.done()
        finally:
            stop.set()
            await asyncio.wait_for(hub, WAIT)
        async with await psycopg.AsyncConnection.connect(fresh_database) as connection:
            cursor = await connection.execute("SELECT key FROM alerts")
            alerts = await cursor.fetchall()
        hosts = [item["host"] for item in fleet.json()["hosts"]]
        return running, fleet.status_code, hosts, sent.status_code, {**sent.json(), **host}, alerts

    running, status, hosts, sent_status, answers, alerts = run(main, timeout=90)
    assert running
    assert (status, hosts) == (200, ["farm-41"])
    assert (sent_status, answers["code"]) == (503, "broker_unreachable")
    assert answers["state"] == "stale"  # silent an hour: stale, never unreachable here
    assert alerts == []
    assert not info.exists()  # removed at stop


def test_hub_database_outage_longer_than_unreachable_after_alerts_no_heartbeating_host(
    tmp_path: Path, rabbitmq: str, unique_exchange: str, fresh_database: str
) -> None:
    """Hosts heartbeat throughout; the hub's database is away for twice unreachable_after
    (ALTER DATABASE ... ALLOW_CONNECTIONS false + pg_terminate_backend), then back: the hub
    could not hear them meanwhile, so no host is made unreachable and nothing is alerted;
    afterwards they are live again."""
    write_key(tmp_path)
    config = parse_hub_config(
        {
            "hub": {
                "broker": rabbitmq,
                "database": fresh_database,
                "exchange": unique_exchange,
                "http": "127.0.0.1:0",
                "state_dir": "state",
                "signing_key": "hub.key",
                "stale_after": "1s",
                "unreachable_after": "2s",
                "start_grace": "2s",
            }
        },
        base_dir=tmp_path,
        environ={},
    )
    hosts = [f"steady{index}" for index in range(3)]
    boots = {host: new_boot() for host in hosts}

    async def beat(until: asyncio.Event) -> None:
        connection = await aio_pika.connect(rabbitmq)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                unique_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            for _ in range(400):  # bounded: 400 x 0.25 s at most
                if until.is_set():
                    return
                for host in hosts:
                    envelope = heartbeat(host, boots[host])
                    await exchange.publish(
                        aio_pika.Message(encode(envelope), content_type="application/json"),
                        routing_key=event_routing_key(envelope),
                    )
                await asyncio.sleep(0.25)

    async def states() -> list[Any]:
        async with await psycopg.AsyncConnection.connect(fresh_database) as connection:
            cursor = await connection.execute("SELECT host, state FROM hosts ORDER BY host")
            return await cursor.fetchall()

    async def main() -> tuple[list[Any], list[Any], list[str]]:
        stop, done = asyncio.Event(), asyncio.Event()
        hub = asyncio.create_task(run_hub(config, stop))
        beating = asyncio.create_task(beat(done))
        seen: list[str] = []
        try:
            info = tmp_path / "state" / "hub.json"
            assert await _until(lambda: info.exists())
            deadline = time.monotonic() + WAIT
            while len(await states()) < len(hosts) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.5)  # past the start grace: the sweep judges for real
            with database_outage(fresh_database):
                await asyncio.sleep(4.5)  # more than twice unreachable_after
            for _ in range(30):  # 6 s after: past the grace, caught up
                await asyncio.sleep(0.2)
                with contextlib.suppress(psycopg.Error):
                    seen.extend(state for _, state in await states())
            after = await states()
        finally:
            done.set()
            await asyncio.wait_for(beating, WAIT)
            stop.set()
            await asyncio.wait_for(hub, WAIT)
        async with await psycopg.AsyncConnection.connect(fresh_database) as connection:
            cursor = await connection.execute("SELECT key, kind FROM alerts")
            alerts = await cursor.fetchall()
        return after, alerts, seen

    after, alerts, seen = run(main, timeout=120)
    assert after == [(host, "live") for host in hosts]
    assert "unreachable" not in seen
    assert alerts == []
