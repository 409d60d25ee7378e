"""The agent's publishing, in process with a fake exchange: journal entries become numbered
events in the outbox, published in order; what the broker confirmed leaves the outbox, what it
did not stays and goes first next time; an event the broker does not take waits."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiormq
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from heartwatch.config import parse_config
from heartwatch.core import fleetwire
from heartwatch.core.fleetcommands import Command, public_key_text, sign
from heartwatch.core.journal import Journal
from heartwatch.daemon import fleet_agent
from heartwatch.daemon.fleet_agent import FleetAgent
from heartwatch.daemon.fleet_commands import FleetCommands, LocalApi
from heartwatch.daemon.fleet_outbox import Outbox, OutboxEvent


class FakeExchange:
    """Records what is published, a batch as its envelopes (each with the batch's key and
    message); ``fail`` maps a seq to the exception the publish of the message holding it
    raises (once)."""

    def __init__(self, fail: dict[int, BaseException] | None = None) -> None:
        self.fail = dict(fail or {})
        self.published: list[tuple[str, dict[str, Any], Any]] = []
        self.messages: list[tuple[str, list[int]]] = []  # (key, event seqs) per message

    async def publish(self, message: Any, routing_key: str, **options: Any) -> Any:
        decoded = json.loads(message.body)
        envelopes = decoded if isinstance(decoded, list) else [decoded]
        for envelope in envelopes:
            if envelope["seq"] in self.fail and envelope["type"] in fleetwire.EVENT_TYPES:
                raise self.fail.pop(envelope["seq"])
        self.published.extend((routing_key, envelope, message) for envelope in envelopes)
        seqs = [e["seq"] for e in envelopes if e["type"] in fleetwire.EVENT_TYPES]
        if seqs:
            self.messages.append((routing_key, seqs))
        return object()  # an Ack

    def seqs(self) -> list[int]:
        return [e["seq"] for _, e, _ in self.published if e["type"] in fleetwire.EVENT_TYPES]


async def make_agent(tmp_path: Path) -> tuple[FleetAgent, Journal, Outbox]:
    config = parse_config(
        {"fleet": {"broker": "amqp://guest:guest@127.0.0.1:1/", "host": "farm-01"}},
        base_dir=tmp_path,
    )
    assert config.fleet is not None
    journal = Journal(on_error=lambda error: None)
    supervisor: Any = SimpleNamespace(
        config=config,
        journal=journal,
        totals=lambda: {},
        watchdog=SimpleNamespace(records=lambda: []),
    )
    outbox = await Outbox.open(tmp_path / "fleet.sqlite3", max_events=100)
    local = LocalApi(services=lambda: [{"name": "a"}], selectable=lambda verb: {})
    commands = FleetCommands(config.fleet, supervisor, None, None, outbox, local)  # type: ignore[arg-type]
    agent = FleetAgent(config.fleet, supervisor, outbox, commands)
    agent._unsubscribe = journal.subscribe(agent.receive)
    return agent, journal, outbox


def test_entries_are_published_in_order_and_leave_the_outbox_once_confirmed(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        agent, journal, outbox = await make_agent(tmp_path)
        for i in range(5):
            journal.append("note", "a", f"note {i}", 1000.0 + i)
        exchange = FakeExchange()
        await agent._send_pending(exchange)  # type: ignore[arg-type]
        assert exchange.seqs() == [1, 2, 3, 4, 5]
        assert exchange.messages == [("farm-01.-.batch", [1, 2, 3, 4, 5])]  # all waited: one
        key, envelope, message = exchange.published[0]
        assert envelope["body"] == journal_entry_json(1, "note 0", 1000.0)
        assert envelope["boot"] == agent.boot and envelope["host"] == "farm-01"
        assert message.delivery_mode == 2 and message.content_type == "application/json"
        assert message.message_id == f"{agent.boot}.1+5"
        assert await outbox.count() == 0
        journal.append("note", "a", "alone", 1010.0)
        await agent._send_pending(exchange)  # type: ignore[arg-type]
        key, envelope, message = exchange.published[-1]
        assert key == "farm-01.a.note" and envelope["seq"] == 6  # a lone event: as itself
        assert message.message_id == f"{agent.boot}.6"
        await outbox.close()

    asyncio.run(scenario())


def journal_entry_json(entry_id: int, reason: str, at: float) -> dict[str, Any]:
    return {
        "id": entry_id,
        "at": at,
        "kind": "note",
        "service": "a",
        "reason": reason,
        "state": None,
        "previous": None,
        "detail": None,
    }


def test_a_lost_connection_keeps_the_unconfirmed_for_the_next_session(tmp_path: Path) -> None:
    """The session ends at a failed publish; the next one sends what is left, first."""

    async def scenario() -> None:
        agent, journal, outbox = await make_agent(tmp_path)
        agent.batch_max = 2  # messages [1, 2], [3, 4], [5]
        for i in range(5):
            journal.append("note", "a", f"note {i}", 1000.0 + i)
        broken = FakeExchange(fail={3: ConnectionResetError(104, "reset")})
        with pytest.raises(ConnectionResetError):
            await agent._send_pending(broken)  # type: ignore[arg-type]
        assert broken.seqs() == [1, 2, 5]  # confirmed, and deleted
        assert [row.seq for row in await outbox.read(0, 10)] == [3, 4]
        journal.append("note", "a", "later", 2000.0)
        again = FakeExchange()
        await agent._send_pending(again)  # type: ignore[arg-type]
        assert again.seqs() == [3, 4, 6]
        assert await outbox.count() == 0
        await outbox.close()

    asyncio.run(scenario())


def test_an_event_the_broker_does_not_take_waits_then_goes_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nack (or a return: no queue bound) is not a loss: tried again, from that event."""
    monkeypatch.setattr(fleet_agent, "UNROUTED_RETRY_DELAY", 0.01)

    async def scenario() -> None:
        agent, journal, outbox = await make_agent(tmp_path)
        agent.batch_max = 1  # each event its own message
        for i in range(4):
            journal.append("note", "a", f"note {i}", 1000.0 + i)
        nacked = aiormq.exceptions.DeliveryError(None, None)  # type: ignore[arg-type]
        exchange = FakeExchange(fail={2: nacked})
        await agent._send_pending(exchange)  # type: ignore[arg-type]
        assert exchange.seqs() == [1, 3, 4, 2]
        assert [key for key, _ in exchange.messages] == ["farm-01.a.note"] * 4
        assert await outbox.count() == 0
        await outbox.close()

    asyncio.run(scenario())


def test_a_replay_goes_in_batches_in_order_none_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,234 events waiting: messages of at most MAX_BATCH, in seq order, each event once; a
    message nacked midway goes again (from it), the others are not sent twice."""
    monkeypatch.setattr(fleet_agent, "UNROUTED_RETRY_DELAY", 0.01)

    async def scenario() -> None:
        agent, journal, outbox = await make_agent(tmp_path)
        outbox._store.max_events = 10_000
        for i in range(1234):
            journal.append("note", "a", f"note {i}", 1000.0 + i)
        nacked = aiormq.exceptions.DeliveryError(None, None)  # type: ignore[arg-type]
        exchange = FakeExchange(fail={700: nacked})
        await agent._send_pending(exchange)  # type: ignore[arg-type]
        sizes = [len(seqs) for _, seqs in exchange.messages]
        assert sizes == [500, 234, 500]  # 501..1000 nacked (not recorded), then again
        assert all(key == "farm-01.-.batch" for key, _ in exchange.messages)
        assert sorted(exchange.seqs()) == list(range(1, 1235))  # each once
        for _, seqs in exchange.messages:
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order inside
        assert await outbox.count() == 0
        await outbox.close()

    asyncio.run(scenario())


def test_batches_are_cut_by_count_and_by_size() -> None:
    def row(seq: int, size: int) -> OutboxEvent:
        return OutboxEvent("b" * 32, seq, "k", b"x" * size, seq)

    rows = [row(seq, 100) for seq in range(1, 8)]
    assert [[r.seq for r in m] for m in fleet_agent.batches(rows, 3)] == [[1, 2, 3], [4, 5, 6], [7]]
    # 100-byte events, 350 bytes a message: three fit ([ + 3×(100+1) = 305), a fourth not.
    assert [len(m) for m in fleet_agent.batches(rows, 500, 350)] == [3, 3, 1]
    big = [row(1, 10), row(2, 1000), row(3, 10)]
    assert [[r.seq for r in m] for m in fleet_agent.batches(big, 500, 350)] == [[1], [2], [3]]


def test_reports_carry_the_last_event_seq_and_the_identity(tmp_path: Path) -> None:
    async def scenario() -> None:
        agent, journal, outbox = await make_agent(tmp_path)
        journal.append("note", "a", "one", 1000.0)
        journal.append("note", "a", "two", 1001.0)
        exchange = FakeExchange()
        await agent._send_snapshot(exchange)  # type: ignore[arg-type]
        key, snapshot, message = exchange.published[0]
        assert key == "farm-01.-.snapshot"
        assert snapshot["type"] == "snapshot" and snapshot["seq"] == 2
        assert snapshot["body"]["services"] == [{"name": "a"}]
        assert set(snapshot["body"]) == {
            "labels",
            "config_hash",
            "started_at",
            "version",
            "heartbeat_interval",
            "services",
        }
        assert message.delivery_mode in (None, 1)
        heartbeat = agent.heartbeat_body()
        assert heartbeat["services"] == 0 and heartbeat["heartbeat_interval"] == 5.0
        assert heartbeat["config_hash"] == snapshot["body"]["config_hash"]
        await outbox.close()

    asyncio.run(scenario())


def test_minute_counts_are_the_differences_the_history_stores(tmp_path: Path) -> None:
    async def scenario() -> None:
        agent, _journal, outbox = await make_agent(tmp_path)
        totals = {"a": (10, {"item": 4})}
        agent.supervisor.totals = lambda: totals
        agent._totals = {"a": (3, {"item": 1})}
        agent._count(1_764_590_040)
        agent._count(1_764_590_100)  # nothing new: no event
        rows = await outbox.read(0, 10)
        assert len(rows) == 1
        envelope = json.loads(rows[0].body)
        assert envelope["type"] == "counts" and rows[0].routing_key == "farm-01.-.counts"
        assert envelope["body"] == {
            "minute": 1_764_590_040,
            "counts": [["a", "item", 3], ["a", "heartbeat", 4]],
        }
        await outbox.close()

    asyncio.run(scenario())


class FakeMessage:
    """A delivered command: records when it was acked, and whether its id was on disk then."""

    def __init__(self, body: bytes, outbox: Outbox, path: Path) -> None:
        self.body = body
        self.outbox = outbox
        self.path = path
        self.acked_with: list[set[str]] = []
        self.nacked = False

    async def ack(self) -> None:
        with sqlite3.connect(self.path) as db:
            self.acked_with.append({row[0] for row in db.execute("SELECT id FROM ran")})

    async def nack(self, requeue: bool = True) -> None:
        self.nacked = True


def test_a_command_is_acked_only_once_its_id_is_on_disk_and_runs_once(tmp_path: Path) -> None:

    async def scenario() -> None:
        key = Ed25519PrivateKey.generate()
        config = parse_config(
            {
                "fleet": {
                    "broker": "amqp://guest:guest@127.0.0.1:1/",
                    "host": "farm-01",
                    "hub_keys": [public_key_text(key.public_key())],
                }
            },
            base_dir=tmp_path,
        )
        assert config.fleet is not None
        restarted: list[tuple[str, str]] = []
        supervisor: Any = SimpleNamespace(
            config=config, restart=lambda name, reason: restarted.append((name, reason))
        )
        outbox = await Outbox.open(tmp_path / "fleet.sqlite3", max_events=100)
        local = LocalApi(services=lambda: [], selectable=lambda verb: {"a": None})
        commands = FleetCommands(config.fleet, supervisor, None, None, outbox, local)  # type: ignore[arg-type]
        replies: list[tuple[str, str]] = []
        commands.reply = lambda command, status, reason: replies.append((status, reason))
        now = time.time()
        command = Command("ab" * 16, "farm-01", "a", "restart", now, now + 60, {}, "hub-1")
        data = sign(command, key)
        first = FakeMessage(data, outbox, tmp_path / "fleet.sqlite3")
        await commands._on_message(first)  # type: ignore[arg-type]
        assert first.acked_with == [{command.id}]  # on disk before the ack
        assert restarted == [("a", f"restart requested by hub hub-1 (command {command.id})")]
        assert replies == [("accepted", ""), ("done", "restarted a")]
        again = FakeMessage(data, outbox, tmp_path / "fleet.sqlite3")
        await commands._on_message(again)  # type: ignore[arg-type]
        assert len(restarted) == 1 and again.acked_with
        assert replies[-1] == ("refused", f"command {command.id} already ran here: not again")
        assert commands.refused == {"replayed": 1}
        garbage = FakeMessage(b"\x00not json", outbox, tmp_path / "fleet.sqlite3")
        await commands._on_message(garbage)  # type: ignore[arg-type]
        assert garbage.acked_with and len(replies) == 3  # no id: logged, not replied
        await outbox.close()

    asyncio.run(scenario())
