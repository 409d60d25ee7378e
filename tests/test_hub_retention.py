"""Retention (hub/retention.py) against the real PostgreSQL: old rows go in batches, recent
ones stay, one hub at a time, hosts forgotten after forget_after."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg

from heartwatch.hub.retention import LOCK_KEY, Retention
from hubweb_support import add_entry, add_host, add_service, opened_pool, run

DAY = 86400.0


async def _old_and_new(pool: Any) -> None:
    now = time.time()
    await add_host(pool, "farm-01")
    await add_service(pool, "farm-01", "collector")
    for seq in range(1, 8):  # 7 old events (received 40 days ago), 2 recent
        await add_entry(pool, "farm-01", seq, at=now - 40 * DAY, service="collector")
    for seq in range(8, 10):
        await add_entry(pool, "farm-01", seq, at=now, service="collector")
    async with pool.connection() as connection:
        await connection.execute(
            "UPDATE events SET received_at = now() - '40 days'::interval WHERE seq < 8"
        )
        for minute, count in ((int(now - 40 * DAY) // 60 * 60, 3), (int(now) // 60 * 60, 4)):
            await connection.execute(
                "INSERT INTO counts (host, minute, service, kind, count)"
                " VALUES ('farm-01', %s, 'collector', 'heartbeat', %s)",
                [minute, count],
            )
        commands = [
            # id, verb, status, issued (seconds ago), updated (days ago)
            ("old-done", "restart", "done", 40 * DAY, 40),
            ("old-sent", "restart", "sent", 40 * DAY, 40),  # unfinished: kept
            ("new-done", "restart", "done", 60, 0),
            ("tail-old", "tail", "done", 2 * 3600, 0),  # a finished lease an hour on: gone
            ("tail-new", "tail", "done", 60, 0),
        ]
        for command, verb, status, issued, updated in commands:
            await connection.execute(
                "INSERT INTO commands (id, host, service, verb, args, issued_by, issued_at,"
                " expires_at, status, updated_at) VALUES (%s, 'farm-01', 'collector', %s, %s,"
                " 'hub-test', %s, %s, %s, now() - make_interval(days => %s))",
                [command, verb, json.dumps({}), now - issued, now - issued + 60, status, updated],
            )
        for key, days in (("old-alert", 40), ("new-alert", 0)):
            await connection.execute(
                "INSERT INTO alerts (key, host, kind, message, sent_by, created_at)"
                " VALUES (%s, 'farm-01', 'unreachable', 'x', 'hub-test',"
                " now() - make_interval(days => %s))",
                [key, days],
            )
        await connection.execute(
            "INSERT INTO hosts (host, boot, state, state_since) VALUES"
            " ('gone-01', 'b', 'unreachable', now() - '10 days'::interval),"
            " ('gone-02', 'b', 'unreachable', now() - '1 day'::interval)"
        )


async def _left(pool: Any) -> dict[str, list[Any]]:
    queries = {
        "events": "SELECT seq FROM events ORDER BY seq",
        "counts": "SELECT count FROM counts ORDER BY count",
        "commands": "SELECT id FROM commands ORDER BY id",
        "alerts": "SELECT key FROM alerts ORDER BY key",
        "hosts": "SELECT host FROM hosts ORDER BY host",
    }
    left = {}
    async with pool.connection() as connection:
        for name, sql in queries.items():
            cursor = await connection.execute(sql)
            left[name] = [row[0] for row in await cursor.fetchall()]
    return left


def test_hub_retention_prunes_what_is_older_in_batches_and_keeps_the_rest(
    fresh_database: str,
) -> None:
    """retention 30 days, batches of 3 rows: old events, counts, finished commands, alerts
    and finished tail leases over an hour old go; recent rows and unfinished commands stay;
    forget_after 7 days forgets the host unreachable for 10 days, not the one for 1 day."""

    async def main() -> tuple[Any, dict[str, list[Any]]]:
        async with opened_pool(fresh_database) as pool:
            await _old_and_new(pool)
            retention = Retention(fresh_database, 30 * DAY, 7 * DAY, batch=3, pause=0.0)
            pruned = await retention.prune()
            again = await retention.prune()
            assert again.ran and not any(again.rows.values()) and not again.forgotten
            return pruned, await _left(pool)

    pruned, left = run(main)
    assert pruned.ran
    assert pruned.rows == {
        "events": 7,  # in three statements: 3 + 3 + 1
        "counts": 1,
        "commands": 1,
        "tail leases": 1,
        "alerts": 1,
    }
    assert pruned.forgotten == ["gone-01"]
    assert left == {
        "events": [8, 9],
        "counts": [4],
        "commands": ["new-done", "old-sent", "tail-new"],
        "alerts": ["new-alert"],
        "hosts": ["farm-01", "gone-02"],
    }


def test_hub_retention_runs_in_one_hub_at_a_time(fresh_database: str) -> None:
    """A hub that does not get the advisory lock (another hub prunes) skips its round."""

    async def main() -> tuple[bool, bool, dict[str, list[Any]]]:
        async with opened_pool(fresh_database) as pool:
            await _old_and_new(pool)
            retention = Retention(fresh_database, 30 * DAY)
            other = await psycopg.AsyncConnection.connect(fresh_database, autocommit=True)
            async with other:
                await other.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
                held = await retention.prune()
                await other.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
            free = await retention.prune()
            return held.ran, free.ran, await _left(pool)

    held, free, left = run(main)
    assert (held, free) == (False, True)
    assert left["events"] == [8, 9]
    assert left["hosts"] == ["farm-01", "gone-01", "gone-02"]  # no forget_after: kept
