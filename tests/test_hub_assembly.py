"""The assembled hub (run_hub) on the real broker and database, and the hub's commands."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from typer.testing import CliRunner

from heartwatch.cli.app import app
from heartwatch.core.fleetcommands import parse_private_key, parse_public_key, public_key_text
from heartwatch.core.fleetwire import Envelope, encode, event_routing_key
from heartwatch.hub.assembly import run_hub
from heartwatch.hub.config import parse_hub_config
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


def test_hub_waits_for_a_broker_that_is_not_there_yet(tmp_path: Path, fresh_database: str) -> None:
    """A hub started before its broker keeps trying (no crash), and stops when asked."""
    write_key(tmp_path)
    config = parse_hub_config(
        {
            "hub": {
                "broker": "amqp://guest:guest@127.0.0.1:1/%2F",  # nothing listens there
                "database": fresh_database,
                "http": "127.0.0.1:0",
                "state_dir": "state",
                "signing_key": "hub.key",
            }
        },
        base_dir=tmp_path,
        environ={},
    )

    async def main() -> bool:
        stop = asyncio.Event()
        hub = asyncio.create_task(run_hub(config, stop))
        await asyncio.sleep(3.0)  # a few attempts
        running = not hub.done()
        stop.set()
        await asyncio.wait_for(hub, WAIT)
        return running

    assert run(main)
    assert not (tmp_path / "state" / "hub.json").exists()
