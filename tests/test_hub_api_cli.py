"""``heartwatch --hub URL …`` against a real hub app (PostgreSQL, and the broker for commands)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from heartwatch.cli.app import app as cli
from heartwatch.cli.fast import parse_fast
from heartwatch.cli.fleet_remote import (
    MARGIN,
    clock_time,
    describe,
    host_notices,
    split_signal,
    status_rows,
    unfinished,
    waiting_time,
)
from heartwatch.core.fleetwire import command_queue, command_queue_arguments
from heartwatch.hub.api import create_hub_app
from heartwatch.hub.commands import CommandSender
from hubweb_support import add_host, add_service, hub_config, opened_pool, run, served

KEY = Ed25519PrivateKey.generate()


@contextlib.asynccontextmanager
async def _hub(
    dsn: str, broker: str | None = None, exchange: str = "heartwatch.fleet"
) -> AsyncIterator[tuple[str, Any, Any]]:
    async with opened_pool(dsn) as pool:
        await add_host(pool, "farm-01")
        await add_service(pool, "farm-01", "collector@0", instance_of="collector")
        await add_service(pool, "farm-01", "emulator", "backoff", reason="exited 1")
        await add_host(pool, "farm-02")
        await add_service(pool, "farm-02", "db")
        await add_host(pool, "farm-03", state="unreachable", silent_for=70)
        await add_service(pool, "farm-03", "db")
        connection = await aio_pika.connect_robust(broker, timeout=10) if broker else None
        sender = None
        config = hub_config(dsn, exchange=exchange, command_ttl="1s")
        if connection is not None:
            sender = CommandSender(config, connection.channel, pool, key=KEY)
            await sender.start()
        try:
            async with served(create_hub_app(config, pool, sender, None, None)) as url:
                yield url, pool, connection
        finally:
            if sender is not None:
                await sender.close()
            if connection is not None:
                await connection.close()


async def _cli(*arguments: str) -> Any:
    """The typer app in a thread (it blocks on HTTP while this loop serves the hub)."""
    return await asyncio.to_thread(
        lambda: CliRunner().invoke(cli, list(arguments), catch_exceptions=False)
    )


def test_hub_cli_status_groups_by_host_problems_first(fresh_database: str) -> None:
    """A table of host, service, state, reason; troubled hosts first; exit 3, or 4 unknown."""

    async def main() -> tuple[Any, Any, Any]:
        async with _hub(fresh_database) as (url, _, _):
            return (
                await _cli("--hub", url, "status"),
                await _cli("--hub", url, "status", "farm-02"),
                await _cli("--hub", url, "status", "farm-01/colector"),
            )

    every, one, unknown = run(main)
    lines = every.stdout.splitlines()
    assert lines[0].split() == ["HOST", "SERVICE", "STATE", "REASON"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["farm-01", "emulator", "backoff"],
        ["farm-01", "collector@0", "running"],
        ["farm-03", "db", "unknown"],
        ["farm-02", "db", "running"],
    ]
    assert re.search(r"host unreachable \(silent 7\d s\); last: running$", lines[3]), lines[3]
    assert every.exit_code == 3
    assert one.exit_code == 0 and "farm-02" in one.stdout and "farm-01" not in one.stdout
    assert unknown.exit_code == 4
    assert "no service 'colector'" in unknown.output


def test_hub_cli_a_command_waits_for_its_reply(
    fresh_database: str, rabbitmq: str, unique_exchange: str
) -> None:
    """restart host/service: the reply is printed ("done (restarted)", exit 0); one nobody
    takes expires and says it never ran (exit 1); for an unreachable host that is said first
    (with the command's expiry), and the final answer waited for."""

    async def main() -> tuple[Any, ...]:
        async with _hub(fresh_database, rabbitmq, unique_exchange) as (url, pool, connection):
            channel = await connection.channel()
            queue = await channel.declare_queue(
                command_queue(unique_exchange, "farm-01"),
                durable=True,
                arguments=command_queue_arguments(unique_exchange),
            )

            async def replies(message: Any) -> None:
                # What the ingest does with the agent's reply events.
                async with pool.connection() as db:
                    await db.execute(
                        "UPDATE commands SET status = 'done', reason = 'restarted' WHERE id = %s",
                        [message.message_id],
                    )

            await queue.consume(replies, no_ack=True)
            done = await _cli("--hub", url, "restart", "farm-01/emulator")
            signalled = await _cli("--hub", url, "signal", "HUP", "farm-01/collector@*")
            quick = await _cli("--hub", url, "--no-wait", "start", "farm-01/emulator")
            expired = await _cli("--hub", url, "stop", "farm-02/db")
            unreachable = await _cli("--hub", url, "stop", "farm-03/db")
            unknown = await _cli("--hub", url, "start", "farm-09/db")
            async with pool.connection() as db:
                cursor = await db.execute(
                    "SELECT verb, service, args::text FROM commands WHERE verb = 'signal'"
                )
                signals = await cursor.fetchall()
            await channel.close()
            return done, (signalled, signals), quick, expired, unreachable, unknown

    done, (signalled, signals), quick, expired, unreachable, unknown = run(main)
    assert signalled.stdout.strip() == "farm-01/collector@0: done (restarted)"
    assert signals == [("signal", "collector@0", '{"group": false, "signal": "HUP"}')]
    assert quick.exit_code == 0
    assert quick.stdout.startswith("farm-01/emulator: sent: id ")
    assert done.stdout.strip() == "farm-01/emulator: done (restarted)"
    assert done.exit_code == 0
    assert expired.stdout.strip() == ("farm-02/db: expired, never ran (not delivered within 1 s)")
    assert expired.exit_code == 1
    assert "farm-02" not in expired.stderr  # live: nothing to say of it
    assert unreachable.stdout.strip() == "farm-03/db: expired, never ran (not delivered within 1 s)"
    assert re.fullmatch(
        r"farm-03 is unreachable \(silent 7\d s\): the command waits in its queue until it "
        r"expires at \d\d:\d\d:\d\d\n",
        unreachable.stderr,
    ), unreachable.stderr
    assert unreachable.exit_code == 1
    assert unknown.exit_code == 2  # the whole request refused (422)
    assert "no host 'farm-09'" in unknown.output


def test_hub_cli_leaves_the_fast_path_alone() -> None:
    """--hub goes to typer; a local status still takes the fast path; a command the hub
    does not serve is refused, not run locally."""
    assert parse_fast(["--hub", "http://127.0.0.1:9", "status"]) is None
    assert parse_fast(["status"]) is not None
    refused = CliRunner().invoke(cli, ["--hub", "http://127.0.0.1:9", "top"])
    assert refused.exit_code == 2
    assert "--hub works with status, restart" in refused.output


def test_hub_cli_pure_parts() -> None:
    """The reply's words, the signal's place, the rows' order."""
    assert describe({"host": "h", "service": "s", "status": "done", "reason": "restarted"}) == (
        "h/s: done (restarted)"
    )
    assert describe({"host": "h", "service": None, "status": "accepted", "reason": ""}) == (
        "h: accepted"
    )
    assert split_signal(["HUP", "h/a", "h/b"]) == ("HUP", ["h/a", "h/b"])
    assert split_signal(["h/a", "USR1"]) == ("USR1", ["h/a"])
    assert split_signal(["h/a"]) is None
    fleet = {
        "hosts": [{"host": "a", "state": "live"}, {"host": "b", "state": "live"}],
        "services": [],
    }
    services = [
        {"host": "a", "name": "x", "state": "running", "reason": "", "last_state": "running"},
        {"host": "b", "name": "y", "state": "failed", "reason": "gave up", "last_state": "failed"},
    ]
    assert [row[0] for row in status_rows(fleet, services)] == ["b", "a"]


def test_hub_cli_waits_until_the_commands_expire_and_says_which_hosts_are_silent() -> None:
    """Pure: the wait is the longest ttl and a margin (the default 60 s ttl is seen through);
    a host not live is said with its commands' expiry; what is still open says so."""
    sent = {"id": "c1", "host": "h1", "service": "s", "status": "sent", "reason": ""}
    commands = [
        {**sent, "issued_at": 1000.0, "expires_at": 1060.0},
        {**sent, "id": "c2", "host": "h2", "issued_at": 1000.0, "expires_at": 1030.0},
        {**sent, "id": "c3", "host": "h2", "issued_at": 1000.0, "expires_at": 1045.0},
    ]
    assert waiting_time(commands) == 60.0 + MARGIN
    hosts = [
        {"host": "h1", "state": "live", "last_seen_age": 1.0},
        {"host": "h2", "state": "stale", "last_seen_age": 20.4},
    ]
    assert host_notices(hosts, commands) == [
        f"h2 is stale (silent 20 s): its 2 commands wait in its queue until they expire at "
        f"{clock_time(1045.0)}"
    ]
    assert host_notices([{**hosts[1], "state": "unreachable"}], commands[1:2]) == [
        f"h2 is unreachable (silent 20 s): the command waits in its queue until it expires at "
        f"{clock_time(1030.0)}"
    ]
    assert unfinished(commands[0]) == (
        f"; no answer by {clock_time(1070.0)}: unknown whether it ran (command c1)"
    )
    assert unfinished({**commands[0], "status": "accepted"}).startswith("; not finished by ")
    unanswered = {
        **commands[0],
        "status": "unanswered",
        "reason": "no answer by its expiry: unknown whether it ran",
    }
    assert describe(unanswered) == (
        "h1/s: unanswered (no answer by its expiry: unknown whether it ran)"
    )
