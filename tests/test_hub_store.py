"""The hub's schema and writes, against the real PostgreSQL (fixtures from fleet_services)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import PoolTimeout

from heartwatch.core.fleetwire import FleetWireError
from heartwatch.hub.schema import SchemaTooNew, current_version, migrate, migrations
from heartwatch.hub.store import (
    TEXT_MAX,
    TRUNCATED,
    _mended,
    check_storable,
    database_failed,
)
from hubstore_support import (
    envelope,
    heartbeat,
    new_boot,
    opened_store,
    rows,
    run,
    service_item,
    snapshot,
    storable,
    transition,
)


def test_hub_migrations_apply_once_and_again_do_nothing(fresh_database: str) -> None:
    """A second start finds the schema current: nothing applied, one version row."""

    async def main() -> tuple[list[int], list[int], list[tuple[Any, ...]]]:
        first = await migrate(fresh_database)
        second = await migrate(fresh_database)
        async with await psycopg.AsyncConnection.connect(fresh_database) as connection:
            cursor = await connection.execute("SELECT version, name FROM schema_version")
            return first, second, await cursor.fetchall()

    first, second, versions = run(main)
    assert first == [m.version for m in migrations()]
    assert second == []
    assert versions == [(m.version, m.name) for m in migrations()]
    assert versions[:2] == [(1, "fleet"), (2, "boots")]


def test_hub_migration_2_records_the_current_boot_of_hosts_known_before(
    fresh_database: str,
) -> None:
    """A database of migration 1 with a host: migration 2 records its boot as one it had, so
    a late report of that boot after a new one is still known as older."""
    old, new = new_boot(), new_boot()
    first = migrations()[0]

    async def main() -> list[Any]:
        async with await psycopg.AsyncConnection.connect(fresh_database) as connection:
            await connection.execute(first.sql.encode())
            await connection.execute("INSERT INTO schema_version VALUES (1, 'fleet')")
            await connection.execute("INSERT INTO hosts (host, boot) VALUES ('farm-15', %s)", [old])
            await connection.commit()
        async with opened_store(fresh_database) as store:  # migrates to 2
            seeded = await rows(store, "SELECT host, boot FROM boots")
            await store.write_batch(storable([heartbeat("farm-15", new)]))
            await store.write_batch(storable([heartbeat("farm-15", old)]))
            return [*seeded, *await rows(store, "SELECT host, boot FROM hosts")]

    assert run(main) == [("farm-15", old), ("farm-15", new)]


def test_hub_migrations_two_hubs_starting_at_once_apply_them_once(fresh_database: str) -> None:
    """Two concurrent migrations: the advisory lock makes one apply, the other find it done."""

    async def main() -> list[list[int]]:
        return list(await asyncio.gather(*(migrate(fresh_database) for _ in range(3))))

    results = run(main)
    assert sorted(results) == [[], [], [m.version for m in migrations()]]


def test_hub_migrations_refuse_a_database_newer_than_the_code(fresh_database: str) -> None:
    """A schema version this code does not know: refused, saying so."""

    async def main() -> None:
        await migrate(fresh_database)
        async with await psycopg.AsyncConnection.connect(fresh_database) as connection:
            await connection.execute("INSERT INTO schema_version VALUES (99, 'future')")
            await connection.commit()
            assert await current_version(connection) == 99
        await migrate(fresh_database)

    with pytest.raises(SchemaTooNew, match="version 99, newer than this hub's"):
        run(main)


def test_hub_store_the_same_batch_twice_is_stored_once(fresh_database: str) -> None:
    """Redelivery: the second write stores nothing and moves nothing."""
    boot = new_boot()
    batch = storable(
        [
            heartbeat("farm-01", boot),
            transition("farm-01", boot, 1, "collector", "running"),
            transition(
                "farm-01",
                boot,
                2,
                "collector",
                "unresponsive",
                "heartbeat timeout 30 s",
                failure=True,
            ),
            envelope(
                "counts",
                "farm-01",
                boot,
                3,
                {"minute": 1_764_589_980, "counts": [["collector", "heartbeat", 7]]},
            ),
        ]
    )

    async def main() -> tuple[Any, Any, list[Any], list[Any], list[Any]]:
        async with opened_store(fresh_database) as store:
            first = await store.write_batch(batch)
            second = await store.write_batch(batch)
            events = await rows(store, "SELECT seq FROM events ORDER BY seq")
            services = await rows(store, "SELECT service, state, reason, updated_seq FROM services")
            counts = await rows(store, "SELECT service, kind, count FROM counts")
            return first, second, events, services, counts

    first, second, events, services, counts = run(main)
    assert first.events == 3 and len(first.entries) == 2
    assert second.events == 0 and second.entries == []
    assert events == [(1,), (2,), (3,)]
    assert services == [("collector", "unresponsive", "heartbeat timeout 30 s", 2)]
    assert counts == [("collector", "heartbeat", 7)]  # added once, not twice


def test_hub_store_two_writers_of_overlapping_batches_store_each_event_once(
    fresh_database: str,
) -> None:
    """Two hubs writing at once (overlapping seqs): every event stored once, newly by one."""
    boot = new_boot()
    items = [transition("farm-02", boot, seq, "svc", "running") for seq in range(1, 301)]
    a, b = storable(items[:200]), storable(items[100:])

    async def main() -> tuple[int, int, list[Any]]:
        async with opened_store(fresh_database) as store:
            one, two = await asyncio.gather(store.write_batch(a), store.write_batch(b))
            count = await rows(store, "SELECT count(*), count(DISTINCT seq) FROM events")
            return one.events, two.events, count

    one, two, count = run(main)
    assert one + two == 300
    assert count == [(300, 300)]


def test_hub_store_a_new_boot_is_reconciled_from_its_snapshot(fresh_database: str) -> None:
    """Agent restarted: the new boot's snapshot replaces the services, a gone one is deleted;
    the old boot's late entries move nothing."""
    old, new = new_boot(), new_boot()

    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        async with opened_store(fresh_database) as store:
            await store.write_batch(
                storable(
                    [
                        snapshot(
                            "farm-03",
                            old,
                            0,
                            [service_item("a"), service_item("gone")],
                            started_at=1000.0,
                        ),
                        transition("farm-03", old, 1, "a", "unresponsive", "hung"),
                    ]
                )
            )
            await store.write_batch(
                storable(
                    [
                        heartbeat("farm-03", new, 0, started_at=2000.0),
                        transition("farm-03", new, 1, "a", "starting"),
                    ]
                )
            )
            mid = await rows(store, "SELECT service, state, updated_seq FROM services ORDER BY 1")
            result = await store.write_batch(
                storable(
                    [
                        snapshot(
                            "farm-03",
                            new,
                            2,
                            [service_item("a"), service_item("b")],
                            started_at=2000.0,
                        ),
                        transition("farm-03", old, 2, "a", "failed", "late, old boot"),
                        transition("farm-03", new, 3, "b", "stopped"),
                    ]
                )
            )
            after = await rows(store, "SELECT service, state, updated_seq FROM services ORDER BY 1")
            host = await rows(store, "SELECT boot, last_seq, snapshot_at IS NOT NULL FROM hosts")
            assert ("farm-03", "gone") in result.services
            return mid, after, host

    mid, after, host = run(main)
    assert mid == [("a", "starting", 1), ("gone", "running", 0)]
    assert after == [("a", "running", 2), ("b", "stopped", 3)]
    assert host == [(new, 3, True)]


def test_hub_store_restart_exit_and_note_entries_move_the_service_status(
    fresh_database: str,
) -> None:
    """A restart's entry carries the new pid and counts, an exit clears the pid, a note the
    reason: the hub's status item follows without waiting for the next snapshot."""
    boot = new_boot()

    def entry(seq: int, kind: str, reason: str, state: str | None = None, **detail: Any) -> Any:
        body = {
            "id": seq,
            "at": 1.0 + seq,
            "kind": kind,
            "service": "svc",
            "reason": reason,
            "state": state,
            "previous": None,
            "detail": detail or None,
        }
        return envelope("entry", "farm-10", boot, seq, body)

    async def main() -> tuple[list[Any], list[Any]]:
        async with opened_store(fresh_database) as store:
            await store.write_batch(
                storable(
                    [
                        snapshot("farm-10", boot, 0, [service_item("svc")]),
                        entry(1, "exit", "exited with code 1", pid=1234, returncode=1),
                    ]
                )
            )
            first = await rows(store, "SELECT status->'pid', status->>'last_exit' FROM services")
            await store.write_batch(
                storable(
                    [
                        entry(2, "restart", "crashed", pid=4321, restarts=1, restarts_requested=0),
                        transition("farm-10", boot, 3, "svc", "running", "first heartbeat"),
                        entry(4, "note", "slow heartbeats", "running"),
                    ]
                )
            )
            after = await rows(
                store,
                "SELECT state, reason, status->'pid',"
                " status->'restarts', status->>'reason' FROM services",
            )
            return first, after

    first, after = run(main)
    assert first == [(None, "exited with code 1")]
    assert after == [("running", "slow heartbeats", 4321, 1, "slow heartbeats")]


def test_hub_store_a_late_report_of_an_older_boot_is_ignored(fresh_database: str) -> None:
    """A delayed heartbeat of the boot before (one the hub saw replaced) does not make it
    current again, whatever its clock says; nor does one in the same batch after the new."""
    old, new = new_boot(), new_boot()

    async def main() -> list[Any]:
        async with opened_store(fresh_database) as store:
            await store.write_batch(storable([heartbeat("farm-04", old, started_at=1000.0)]))
            await store.write_batch(
                storable(
                    [
                        heartbeat("farm-04", new, started_at=2000.0),
                        heartbeat("farm-04", old, started_at=3000.0),
                    ]
                )
            )
            await store.write_batch(storable([heartbeat("farm-04", old, started_at=4000.0)]))
            return await rows(store, "SELECT boot, started_at FROM hosts")

    assert run(main) == [(new, 2000.0)]


def test_hub_store_a_new_boot_with_its_clock_behind_is_reconciled(fresh_database: str) -> None:
    """The review's case: an agent restarted with its clock 300 s behind its previous boot.
    Its new boot is current (boots go by arrival, not by the agent's clock): its snapshot and
    its entries move the services."""
    old, new = new_boot(), new_boot()

    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        async with opened_store(fresh_database) as store:
            await store.write_batch(
                storable([snapshot("clk", old, 0, [service_item("svc")], started_at=10_000.0)])
            )
            await store.write_batch(
                storable(
                    [
                        snapshot(
                            "clk", new, 0, [service_item("svc", "failed")], started_at=9_700.0
                        ),
                        transition("clk", new, 1, "svc", "failed", "crashed"),
                    ]
                )
            )
            host = await rows(store, "SELECT boot, started_at, snapshot_at IS NOT NULL FROM hosts")
            services = await rows(store, "SELECT service, state, reason FROM services")
            boots = await rows(store, "SELECT boot FROM boots ORDER BY first_seen, boot")
            return host, services, boots

    host, services, boots = run(main)
    assert host == [(new, 9_700.0, True)]
    assert services == [("svc", "failed", "crashed")]
    assert sorted(boots) == sorted([(old,), (new,)])


def test_hub_store_a_host_first_heard_through_an_old_boots_event_takes_its_live_boot(
    fresh_database: str,
) -> None:
    """A host created by a replayed event of an old boot: the report of the boot running now
    makes that one current, and a late report of the old one then changes nothing."""
    old, new = new_boot(), new_boot()

    async def main() -> list[Any]:
        async with opened_store(fresh_database) as store:
            await store.write_batch(storable([transition("farm-14", old, 7, "svc", "running")]))
            await store.write_batch(storable([heartbeat("farm-14", new, started_at=1.0)]))
            await store.write_batch(storable([heartbeat("farm-14", old, started_at=2.0)]))
            return await rows(store, "SELECT boot, last_seq FROM hosts")

    assert run(main) == [(new, 0)]


def test_hub_store_replies_move_their_command_forward_only(fresh_database: str) -> None:
    """accepted then done; a late accepted never moves done back; another host cannot answer."""
    boot, other = new_boot(), new_boot()
    command = "c" * 32

    def reply(host: str, boot: str, seq: int, status: str) -> Any:
        body = {
            "command": command,
            "service": "svc",
            "verb": "restart",
            "status": status,
            "reason": f"{status} reason",
        }
        return envelope("reply", host, boot, seq, body)

    async def main() -> tuple[list[Any], set[str]]:
        async with opened_store(fresh_database) as store:
            async with store.pool.connection() as connection:
                await connection.execute(
                    "INSERT INTO commands (id, host, service, verb, issued_by, issued_at,"
                    " expires_at) VALUES (%s, 'farm-05', 'svc', 'restart', 'hub-1', 1, 2)",
                    [command],
                )
            first = await store.write_batch(
                storable(
                    [
                        reply("farm-05", boot, 1, "accepted"),
                        reply("farm-05", boot, 2, "done"),
                    ]
                )
            )
            await store.write_batch(
                storable(
                    [
                        reply("farm-05", boot, 3, "accepted"),
                        reply("farm-06", other, 1, "failed"),
                    ]
                )
            )
            status = await rows(store, "SELECT status, reason FROM commands")
            return status, first.commands

    status, changed = run(main)
    assert status == [("done", "done reason")]
    assert changed == {command}


def test_hub_store_any_message_brings_an_unreachable_host_back(fresh_database: str) -> None:
    """A heartbeat of an unreachable host: live again, and reported back (with the outage's
    start, which keys its alert)."""
    boot = new_boot()

    async def main() -> tuple[Any, list[Any]]:
        async with opened_store(fresh_database) as store:
            await store.write_batch(storable([heartbeat("farm-07", boot)]))
            async with store.pool.connection() as connection:
                await connection.execute("UPDATE hosts SET state = 'unreachable'")
            result = await store.write_batch(storable([heartbeat("farm-07", boot)]))
            return result, await rows(store, "SELECT state FROM hosts")

    result, state = run(main)
    assert [host for host, _ in result.back] == ["farm-07"]
    assert state == [("live",)]


def test_hub_store_notifies_what_changed(fresh_database: str) -> None:
    """A commit that changed rows says so on heartwatch_fleet."""
    boot = new_boot()

    async def main() -> str:
        async with opened_store(fresh_database) as store:
            listener = await psycopg.AsyncConnection.connect(fresh_database, autocommit=True)
            async with listener:
                await listener.execute("LISTEN heartwatch_fleet")
                await store.write_batch(storable([transition("farm-08", boot, 1, "s", "running")]))
                async for notice in listener.notifies(timeout=10, stop_after=1):
                    return notice.payload
        raise AssertionError("no notification")

    payload = run(main)
    assert payload == '{"hosts":["farm-08"],"services":[["farm-08","s"]],"events":1,"commands":[]}'


@pytest.mark.parametrize(
    ("kind", "body", "code"),
    [
        ("entry", {"kind": 3}, "body"),
        ("entry", {"kind": "x", "detail": [1]}, "body"),
        ("counts", {"minute": 1.5, "counts": []}, "body"),
        ("counts", {"minute": 60, "counts": [["s", "heartbeat", "7"]]}, "body"),
        ("reply", {"command": 1, "status": "done"}, "body"),
        ("reply", {"command": "c", "status": "unanswered"}, "body"),  # the hub's word, not theirs
        ("reply", {"command": "c", "status": "pwned"}, "body"),
        ("snapshot", {"services": [{"state": "running"}]}, "body"),
        ("heartbeat", {"labels": {"a": 1}}, "body"),
    ],
)
def test_hub_store_refuses_bodies_it_cannot_keep(
    kind: Any, body: dict[str, Any], code: str
) -> None:
    """What the database would refuse (and so block a batch) is refused before it, by code."""
    with pytest.raises(FleetWireError) as caught:
        check_storable(envelope(kind, "farm-09", new_boot(), 1, body))
    assert caught.value.code == code


def test_hub_store_keeps_an_escaped_backslash_u0000_text() -> None:
    """The six characters \\u0000 typed as text are no NUL: kept as they are."""
    item = envelope("entry", "farm-09", new_boot(), 1, {"kind": "x", "reason": "\\u0000"})
    assert check_storable(item).envelope.body["reason"] == "\\u0000"


def test_hub_store_mends_texts_postgresql_cannot_keep_and_keeps_the_event(
    fresh_database: str,
) -> None:
    """A NUL and a lone surrogate (anywhere: a reason, a detail's key and value, a report's
    field) become U+FFFD, a text over TEXT_MAX characters is cut saying so; the event is
    stored, the report applied; what needs no mending is left as it came."""
    boot = new_boot()
    long = "x" * (TEXT_MAX + 10)
    entry = transition(
        "farm-12", boot, 1, "svc", "failed", "bad\x00frame \ud800", **{"k\x00": long}
    )
    beat = heartbeat("farm-12", boot)
    beat = envelope("heartbeat", "farm-12", boot, 0, {**beat.body, "config_hash": "\udfff"})
    checked = storable([beat, entry])
    fine = transition("farm-12", boot, 2, "svc", "running", "d\u00e9j\u00e0 vu \U0001f600")
    assert check_storable(fine).envelope is fine

    async def main() -> tuple[list[Any], list[Any]]:
        async with opened_store(fresh_database) as store:
            await store.write_batch([*checked, check_storable(fine)])
            events = await rows(
                store, "SELECT seq, reason, detail, body->>'reason' FROM events ORDER BY seq"
            )
            return events, await rows(store, "SELECT config_hash FROM hosts")

    events, host = run(main)
    mended = "bad\ufffdframe \ufffd"
    assert events[0][:2] == (1, mended) and events[0][3] == mended
    assert events[0][2] == {"k\ufffd": "x" * TEXT_MAX + TRUNCATED}
    assert events[1][1] == "d\u00e9j\u00e0 vu \U0001f600"
    assert host == [("\ufffd",)]


def test_hub_store_mends_a_deep_body_without_exhausting_the_stack() -> None:
    """Mending walks a body deeper than Python's recursion limit (iteratively), keeping
    the order of keys; of two keys that mend alike, the last one's value stays."""
    deep: Any = ["a\x00"]
    for _ in range(5000):
        deep = [deep]
    mended = _mended({"b": 1, "a\x00": deep, "a\ud800": 2, "c": [True, None, 1.5]})
    assert list(mended) == ["b", "a\ufffd", "c"]
    assert mended["a\ufffd"] == 2 and mended["c"] == [True, None, 1.5]
    inner = _mended(deep)
    for _ in range(5000):
        inner = inner[0]
    assert inner == ["a\ufffd"]


def test_hub_store_a_snapshot_listing_a_service_twice_keeps_the_last(
    fresh_database: str,
) -> None:
    """The review's poison snapshot (one name twice): stored, the last item of the name."""
    boot = new_boot()
    twice = [service_item("dup"), service_item("other"), service_item("dup", "failed", "last")]

    async def main() -> list[Any]:
        async with opened_store(fresh_database) as store:
            await store.write_batch(storable([snapshot("dupsnap", boot, 0, twice)]))
            return await rows(store, "SELECT service, state, reason FROM services ORDER BY 1")

    assert run(main) == [("dup", "failed", "last"), ("other", "running", "")]


def test_hub_store_counts_events_past_a_gap_in_the_current_boot(fresh_database: str) -> None:
    """seq past last_seq + 1 in the current boot: a gap (one per jump); a late event that
    fills it, and the events of another boot, are none."""
    boot, other = new_boot(), new_boot()

    async def main() -> list[int]:
        async with opened_store(fresh_database) as store:
            gaps = []
            for batch in (
                [
                    heartbeat("farm-13", boot),
                    *(transition("farm-13", boot, s, "a", "running") for s in (1, 2, 5, 6, 9)),
                ],
                [transition("farm-13", boot, 3, "a", "running")],  # late: fills a gap
                [transition("farm-13", boot, 12, "a", "running")],
                [transition("farm-13", other, 5, "a", "running")],  # not the current boot
            ):
                gaps.append((await store.write_batch(storable(batch))).gaps)
            return gaps

    assert run(main) == [2, 0, 1, 0]


@pytest.mark.parametrize(
    ("error", "failed"),
    [
        (errors.AdminShutdown("terminating connection due to administrator command"), True),
        (errors.ConnectionFailure("x"), True),
        (errors.DeadlockDetected("x"), True),
        (errors.SerializationFailure("x"), True),
        (errors.DiskFull("x"), True),
        (errors.SystemError("x"), True),
        (PoolTimeout("couldn't get a connection after 30.00 sec"), True),
        (psycopg.OperationalError("consuming input failed"), True),
        (ConnectionRefusedError(111, "refused"), True),
        (errors.CardinalityViolation("ON CONFLICT DO UPDATE command cannot affect row"), False),
        (errors.ProgramLimitExceeded("index row size exceeds maximum"), False),
        (errors.UntranslatableCharacter("x"), False),
        (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), False),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
        (RecursionError("maximum recursion depth exceeded"), False),
    ],
)
def test_hub_store_tells_a_failed_database_from_refused_data(
    error: BaseException, failed: bool
) -> None:
    """Connection, resources, operator, system and rollback classes (and no answer at all):
    the database failed, try again; anything else: the data's fault, one by one."""
    assert database_failed(error) is failed


def test_hub_store_any_split_order_and_redelivery_gives_the_same_result(postgres: str) -> None:
    """Property: one boot's events cut into batches anyhow, batches delivered again and out
    of order: each event stored once, each service left as its last transition says."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    states = ["running", "unresponsive", "starting", "stopped"]
    examples = iter(range(10_000))

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.lists(
            st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(states)),
            min_size=1,
            max_size=40,
        ),
        st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=6),
        st.randoms(use_true_random=False),
    )
    def check(story: list[tuple[str, str]], cuts: list[int], rng: Any) -> None:
        host, boot = f"prop-{next(examples)}", new_boot()
        events = [
            transition(host, boot, seq, service, state)
            for seq, (service, state) in enumerate(story, start=1)
        ]
        batches, start = [], 0
        for cut in [*cuts, len(events)]:
            if start < len(events):
                batches.append(events[start : start + cut])
                start += cut
        deliveries = [*batches, *rng.sample(batches, k=min(2, len(batches)))]
        rng.shuffle(deliveries)
        expected = {service: state for service, state in story}

        async def main() -> tuple[int, list[Any], dict[str, str]]:
            async with opened_store(postgres) as store:
                new = 0
                for batch in [[heartbeat(host, boot)], *deliveries]:
                    new += (await store.write_batch(storable(batch))).events
                count = await rows(store, "SELECT count(*) FROM events WHERE host = %s", host)
                found = await rows(
                    store, "SELECT service, state FROM services WHERE host = %s", host
                )
                return new, count, dict(found)

        new, count, found = run(main)
        assert new == len(events) and count == [(len(events),)]
        assert found == expected

    check()
