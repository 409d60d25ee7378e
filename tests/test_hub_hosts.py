"""The host sweep against the real PostgreSQL: atomic across hubs, grace, messages win."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from heartwatch.core.hoststates import Ears, HostRules, HostState
from heartwatch.hub.hosts import HearingStore, HostChange, HostSweeper
from heartwatch.hub.store import FleetStore
from hubstore_support import heartbeat, new_boot, opened_store, rows, run, storable

RULES = HostRules(stale_after=15.0, unreachable_after=45.0, start_grace=60.0)
HOSTS = [f"farm-{index:02d}" for index in range(20)]


async def silent_hosts(store: FleetStore, seconds: float) -> None:
    await store.write_batch(storable([heartbeat(host, new_boot()) for host in HOSTS]))
    async with store.pool.connection() as connection:
        await connection.execute(
            "UPDATE hosts SET last_seen = now() - make_interval(secs => %s)", [seconds]
        )


def test_hub_hosts_two_sweepers_at_once_make_each_change_once(fresh_database: str) -> None:
    """Two hubs sweeping together: every host goes unreachable once, one alert per host."""
    alerts: list[tuple[str, str, float, float]] = []

    def on_alert(host: str, kind: str, since: float, silent: float) -> None:
        alerts.append((host, kind, since, silent))

    async def main() -> tuple[list[HostChange], list[HostChange], list[Any]]:
        async with opened_store(fresh_database) as store:
            await silent_hosts(store, 50.0)
            long_ago = time.monotonic() - 1000.0  # both hubs are past their start grace
            one = HostSweeper(store.pool, RULES, on_alert, started=long_ago)
            two = HostSweeper(store.pool, RULES, on_alert, started=long_ago)
            first, second = await asyncio.gather(one.sweep(), two.sweep())
            again = await one.sweep()
            assert again == []
            return first, second, await rows(store, "SELECT DISTINCT state FROM hosts")

    first, second, states = run(main)
    changed = sorted(change.host for change in [*first, *second])
    assert changed == HOSTS  # each once, by one of the two
    assert states == [("unreachable",)]
    assert sorted(host for host, *_ in alerts) == HOSTS
    assert {kind for _, kind, _, _ in alerts} == {"unreachable"}
    assert all(silent >= 50.0 for *_, silent in alerts)


def test_hub_hosts_a_hub_within_its_start_grace_makes_no_host_unreachable(
    fresh_database: str,
) -> None:
    """A hub just started: silent hosts go stale only, and nothing is alerted."""
    alerts: list[Any] = []

    async def main() -> list[HostChange]:
        async with opened_store(fresh_database) as store:
            await silent_hosts(store, 500.0)
            sweeper = HostSweeper(store.pool, RULES, lambda *a: alerts.append(a))
            return await sweeper.sweep()

    changes = run(main)
    assert {change.state for change in changes} == {HostState.STALE}
    assert alerts == []


def test_hub_hosts_a_message_after_the_read_wins_over_the_sweep(fresh_database: str) -> None:
    """The sweep writes only rows still as it read them: a heartbeat between its read and its
    write (last_seen moved) keeps the host live."""

    async def main() -> tuple[list[HostChange], list[Any]]:
        async with opened_store(fresh_database) as store:
            await silent_hosts(store, 20.0)
            sweeper = HostSweeper(store.pool, RULES, started=time.monotonic() - 1000.0)
            real_connection = store.pool.connection

            class HeartbeatBetween:
                """The pool, with one host's heartbeat stored right after the sweep's read."""

                def connection(self) -> Any:
                    return _AfterFirstFetch(real_connection(), store)

            sweeper.pool = HeartbeatBetween()  # type: ignore[assignment]
            changes = await sweeper.sweep()
            return changes, await rows(
                store, "SELECT host, state FROM hosts WHERE host = %s", HOSTS[0]
            )

    changes, row = run(main)
    assert HOSTS[0] not in [change.host for change in changes]
    assert len(changes) == len(HOSTS) - 1
    assert row == [(HOSTS[0], "live")]


class _AfterFirstFetch:
    """A pooled connection whose first query's answer is followed by a heartbeat of HOSTS[0]
    (written through another connection, as the ingest would)."""

    def __init__(self, context: Any, store: FleetStore) -> None:
        self._context = context
        self._store = store

    async def __aenter__(self) -> Any:
        connection = await self._context.__aenter__()
        store = self._store
        execute = connection.execute

        async def execute_then_heartbeat(query: Any, params: Any = None) -> Any:
            cursor = await execute(query, params)
            if str(query).startswith("SELECT host, state, last_seen"):
                await store.write_batch(storable([heartbeat(HOSTS[0], new_boot())]))
            return cursor

        connection.execute = execute_then_heartbeat
        self._connection, self._execute = connection, execute
        return connection

    async def __aexit__(self, *exc: Any) -> Any:
        self._connection.execute = self._execute
        return await self._context.__aexit__(*exc)


def test_hub_hosts_a_deaf_hub_makes_no_host_unreachable_and_its_grace_restarts(
    fresh_database: str,
) -> None:
    """The sweep asks its ears: while the database fails the ingest's writes (HearingStore
    says so), or a write has waited stale_after, silent hosts go stale only; hearing again,
    the start grace counts anew; past it, the truth."""
    clock = [1000.0]
    alerts: list[Any] = []

    async def main() -> list[list[HostState]]:
        async with opened_store(fresh_database) as store:
            await silent_hosts(store, 500.0)
            heard = HearingStore(store.pool, monotonic=lambda: clock[0])
            ears = [Ears(database=False)]
            sweeper = HostSweeper(
                store.pool,
                RULES,
                lambda *a: alerts.append(a),
                started=0.0,  # long past its start grace
                monotonic=lambda: clock[0],
                ears=lambda: ears[0],
            )
            seen = []

            async def sweep() -> None:
                await sweeper.sweep()
                found = await rows(store, "SELECT DISTINCT state FROM hosts")
                seen.append(sorted(HostState(state) for (state,) in found))

            await sweep()  # the database fails: deaf
            heard.waiting_since = clock[0] - RULES.stale_after  # a write waiting that long
            ears[0] = Ears(backlog=clock[0] - heard.waiting_since)
            await sweep()  # behind: deaf
            ears[0] = Ears()
            await sweep()  # hears again: the grace begins
            clock[0] += RULES.start_grace - 1
            await sweep()  # within it
            clock[0] += 1
            await sweep()  # past it: unreachable
            await heard.write_batch(storable([heartbeat(HOSTS[0], new_boot())]))
            assert (heard.failing, heard.waiting_since) == (False, None)
            return seen

    seen = run(main)
    stale, unreachable = [HostState.STALE], [HostState.UNREACHABLE]
    assert seen == [stale, stale, stale, stale, unreachable]
    assert len(alerts) == len(HOSTS)
