"""Fleet: the hub's ingest of a simulated fleet of 100 hosts x 50 services into PostgreSQL.

Goals (issue 12): the hub stores >= 10,000 events/s sustained; its RSS stays <= 200 MB; its
CPU per event, beside bare baselines on the same database in the same run.

Method. A simulator speaks the agent protocol (``core/fleetwire`` envelopes over AMQP,
publisher confirms, persistent events, expiring heartbeats) for ``--hosts`` x ``--services``:
each host a boot id of its own, a snapshot of its services (each item as the agent's
``GET /api/v1/services`` answers it), heartbeats every 5 s, ``counts`` events, and journal
entries numbered 1, 2, 3... per boot: the transitions of restarts people asked for, cycling
through the services, and ``--hang-share`` of the cycles a hang and its recovery instead (a
down and a recovered alert each, through the hub's exactly-once alert path). It publishes
through aiormq (the layer under aio-pika) to cost the machine less. Optionally ``--agents``
real heartwatch daemons with ``[fleet]`` join the same exchange.

Batches, as agents send them: several events waiting for one host go as batch messages
(``<host>.-.batch``, at most ``--batch`` events, default ``fleetwire.MAX_BATCH``, and
``fleetwire.BATCH_BYTES``), a lone one as itself. The backlog is an outbox replay (each host's
events in full batches); live, each 5 ms tick sends what each host made since the last one
(at 120 events/s a host that is mostly one: singles). ``--batch 1``: one event per message.

- *Backlog drain*: the hub is started once (its migrations, its queue), stopped; the simulator
  publishes ``--backlog`` events into the hubs' queue; the hub is started again and the rows
  in ``events`` are counted every 0.05 s until all are stored. Rate: the slope between 10 %
  and 90 % of the rows (the start and the tail excluded), i.e. what the hub sustains when it
  is never waiting for work.
- *Live*: the simulator publishes at ``--rate`` events/s for ``--seconds``; the hub stores as
  they come. Reported: the rate offered, the rate stored, the queue left behind at the end.
- Hub CPU per event (all its threads, ``/proc/<pid>/task/*/schedstat``) and its RSS (psutil,
  sampled every 0.25 s; max), over each phase.
- Baselines, on the same database, in the same run, with the same rows: a bare ``COPY`` into
  an identical table (``CREATE TABLE ... (LIKE events INCLUDING ALL)``) in batches of 1,000,
  one transaction each; the same through ``executemany`` of ``INSERT ... ON CONFLICT DO
  NOTHING``; and the broker alone: half the backlog consumed and decoded through aiormq, as
  the hub consumes (prefetch 1,000, acked in batches), with no database at all.

Needs RabbitMQ at 127.0.0.1:5672 and PostgreSQL at 127.0.0.1:5432 (trust): a database
``heartwatch_bench_<hex>`` and an exchange ``hwbench.<hex>`` are made for the run and removed.
``--quick`` takes under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from _common import (
    PYTHON,
    Workdir,
    banner,
    cpu_seconds,
    print_table,
    render_config,
    rss_mb,
    toml_value,
    verdict,
)
from heartwatch.core import fleetcommands, fleetwire

AMQP_URL = os.environ.get("HEARTWATCH_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
POSTGRES_URL = os.environ.get(
    "HEARTWATCH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
GOAL_RATE = 10_000.0  # events/s
GOAL_RSS_MB = 200.0
WINDOW = 2000  # publishes awaiting their confirm at once
HEARTBEAT_INTERVAL = 5.0

# A hang and its recovery, as a service's journal has it: (previous, state, reason, failure).
HANG = [
    ("running", "unresponsive", "no heartbeat for 10 s", True),
    ("unresponsive", "restarting", "no heartbeat for 10 s", True),
    ("restarting", "starting", "spawned", False),
    ("starting", "running", "first heartbeat", False),
]
# A restart someone asked for: the same number of transitions, none a failure (no alert).
ASKED = [
    ("running", "restarting", "restart requested", False),
    ("restarting", "stopped", "exit code 0", False),
    ("stopped", "starting", "spawned", False),
    ("starting", "running", "first heartbeat", False),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run under a minute")
    parser.add_argument("--keep", action="store_true", help="keep the folder, database, queues")
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--backlog", type=int, default=None, help="events (default 300k)")
    parser.add_argument("--rate", type=float, default=None, help="live events/s (default 12k)")
    parser.add_argument("--seconds", type=float, default=None, help="live phase (default 60)")
    parser.add_argument("--agents", type=int, default=2, help="real agents beside the simulated")
    parser.add_argument(
        "--batch",
        type=int,
        default=fleetwire.MAX_BATCH,
        help="most events in one message, as agents batch what waits (default "
        f"{fleetwire.MAX_BATCH}; 1: one event per message)",
    )
    parser.add_argument(
        "--hang-share",
        type=float,
        default=0.01,
        help="share of the services' transition cycles that are hangs (a down alert and a "
        "recovered one each); the others are restarts people asked for (default 0.01)",
    )
    args = parser.parse_args()
    if not 1 <= args.batch <= fleetwire.MAX_BATCH:
        parser.error(f"--batch must be 1 to {fleetwire.MAX_BATCH}")
    quick = args.quick
    args.backlog = args.backlog or (40_000 if quick else 300_000)
    args.rate = args.rate or (6_000.0 if quick else 12_000.0)
    args.seconds = args.seconds or (12.0 if quick else 60.0)
    return args


# -- what a simulated host says ------------------------------------------------------------


def service_item(name: str, pid: int) -> dict[str, Any]:
    """One service as the agent's GET /api/v1/services answers it (web/status.py)."""
    from heartwatch.web.status import ServiceStatus

    return ServiceStatus(
        name=name,
        instance_of=None,
        instance=None,
        scale_override=None,
        state="running",
        reason="ready",
        since_age=12.5,
        uptime=12.5,
        pid=pid,
        restarts=0,
        restarts_requested=0,
        watch_only=False,
        autostart=True,
        requires=[],
        last_heartbeat_age=0.4,
        heartbeat_timeout=10.0,
        heartbeat_expected=True,
        messages=125,
        data={},
        last_exit=None,
        status=None,
        client_dropped=0,
        output_write_errors=0,
        queue=None,
        ready=True,
        probes={},
        cpu_percent=1.5,
        rss_bytes=25_000_000,
    ).model_dump(mode="json")


class SimHost:
    """One simulated agent: its boot, its numbering, what it says next."""

    def __init__(self, name: str, services: int, hang_share: float) -> None:
        self.name = name
        self.hang_every = max(1, round(1 / hang_share)) if hang_share > 0 else 0
        self.boot = uuid.uuid4().hex
        self.seq = 0
        self.entry_id = 0
        self.services = [f"collector-{i:02d}" for i in range(services)]
        self.step = 0  # which (service, cycle step) comes next
        number = int("".join(c for c in name if c.isdigit()) or 0)
        self.labels = {"site": f"s{number % 4}", "rack": f"r{number % 10}"}

    def _envelope(self, kind: fleetwire.MessageType, body: dict[str, Any]) -> fleetwire.Envelope:
        return fleetwire.Envelope(kind, self.name, self.boot, self.seq, time.time(), body)

    def report_body(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "config_hash": "sim",
            "started_at": time.time() - 60,
            "version": "sim",
            "heartbeat_interval": HEARTBEAT_INTERVAL,
        }

    def snapshot(self) -> fleetwire.Envelope:
        items = [service_item(name, 10_000 + i) for i, name in enumerate(self.services)]
        return self._envelope("snapshot", {**self.report_body(), "services": items})

    def heartbeat(self) -> fleetwire.Envelope:
        return self._envelope("heartbeat", {**self.report_body(), "services": len(self.services)})

    def next_entry(self) -> fleetwire.Envelope:
        self.seq += 1
        self.entry_id += 1
        cycle_number, step = divmod(self.step, len(HANG))
        service = self.services[cycle_number % len(self.services)]
        hang = self.hang_every and cycle_number % self.hang_every == 0
        previous, state, reason, failure = (HANG if hang else ASKED)[step]
        self.step += 1
        now = time.time()
        detail: dict[str, Any] | None = (
            {"failure": True, "down_since": now - 10} if failure else None
        )
        body = {
            "id": self.entry_id,
            "at": now,
            "kind": "transition",
            "service": service,
            "reason": reason,
            "state": state,
            "previous": previous,
            "detail": detail,
        }
        return self._envelope("entry", body)

    def counts(self) -> fleetwire.Envelope:
        self.seq += 1
        minute = int(time.time() // 60 * 60)
        body = {"minute": minute, "counts": [[s, "heartbeat", 120] for s in self.services]}
        return self._envelope("counts", body)


def row_of(envelope: fleetwire.Envelope) -> tuple[Any, ...]:
    """The ``events`` row the hub would store for an event (the baselines write these)."""
    body = envelope.body
    is_entry = envelope.type == "entry"
    return (
        envelope.host,
        envelope.boot,
        envelope.seq,
        envelope.type,
        envelope.at,
        body.get("kind") if is_entry else None,
        body.get("service") if is_entry else None,
        body.get("reason") if is_entry else None,
        body.get("state") if is_entry else None,
        body.get("previous") if is_entry else None,
        json.dumps(body.get("detail")) if is_entry and body.get("detail") is not None else None,
        json.dumps(body),
    )


# -- publishing --------------------------------------------------------------------------------


class Publisher:
    """Envelopes to the exchange as an agent sends them (confirms, persistent events, mandatory),
    through aiormq, the AMQP layer under aio-pika: the simulator must cost the machine less
    than the hub it measures."""

    def __init__(self, url: str, exchange: str, batch: int = 1) -> None:
        self.url = url
        self.exchange = exchange
        self.batch = batch
        self.published = 0  # events confirmed
        self.messages = 0  # messages sent

    async def __aenter__(self) -> Publisher:
        import aiormq

        self._spec = aiormq.spec
        self.connection = await aiormq.connect(self.url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        await self.channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        self._event = aiormq.spec.Basic.Properties(content_type="application/json", delivery_mode=2)
        self._report = aiormq.spec.Basic.Properties(
            content_type="application/json",
            delivery_mode=1,
            expiration=str(int(3 * HEARTBEAT_INTERVAL * 1000)),
        )
        self._window = asyncio.Semaphore(WINDOW)
        self._pending: set[asyncio.Future[Any]] = set()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.flush()
        await self.connection.close()

    def _done(self, future: asyncio.Future[Any], events: int) -> None:
        self._pending.discard(future)
        self._window.release()
        if not future.cancelled() and future.exception() is None:
            self.published += events

    async def send(self, envelope: fleetwire.Envelope) -> None:
        event = envelope.is_event
        await self._publish(
            fleetwire.encode(envelope),
            fleetwire.event_routing_key(envelope),
            event=event,
            events=1,
        )

    async def send_pending(self, host: str, envelopes: Sequence[fleetwire.Envelope]) -> None:
        """One host's waiting events, as the agent sends them (``fleet_agent.batches``):
        batches of at most ``batch`` events and ``BATCH_BYTES``, a lone one as itself."""
        encoded = [fleetwire.encode(envelope) for envelope in envelopes]
        start = 0
        while start < len(encoded):
            end, size = start, 2
            while (
                end < len(encoded)
                and end - start < self.batch
                and (end == start or size + len(encoded[end]) + 1 <= fleetwire.BATCH_BYTES)
            ):
                size += len(encoded[end]) + 1
                end += 1
            if end - start == 1:
                await self.send(envelopes[start])
            else:
                await self._publish(
                    fleetwire.encode_batch(encoded[start:end]),
                    fleetwire.batch_routing_key(host),
                    event=True,
                    events=end - start,
                )
            start = end

    async def _publish(self, body: bytes, key: str, *, event: bool, events: int) -> None:
        await self._window.acquire()
        self.messages += 1
        future = asyncio.ensure_future(
            self.channel.basic_publish(
                body,
                exchange=self.exchange,
                routing_key=key,
                properties=self._event if event else self._report,
                mandatory=event,
            )
        )
        self._pending.add(future)
        future.add_done_callback(lambda done: self._done(done, events if event else 0))

    async def flush(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


async def publish_backlog(
    url: str, exchange: str, hosts: list[SimHost], events: int, batch: int
) -> tuple[float, list[tuple[Any, ...]], int]:
    """Snapshots, then ``events`` events across the hosts (a counts event now and then), each
    host's in batches of ``batch`` (an outbox replay); returns the publish rate, the rows they
    make (for the baselines) and the messages sent."""
    rows: list[tuple[Any, ...]] = []
    waiting: dict[str, list[fleetwire.Envelope]] = {host.name: [] for host in hosts}
    started = time.perf_counter()
    async with Publisher(url, exchange, batch) as publisher:
        for host in hosts:
            await publisher.send(host.snapshot())
        for index in range(events):
            host = hosts[index % len(hosts)]
            envelope = host.counts() if index % 500 == 499 else host.next_entry()
            rows.append(row_of(envelope))
            pending = waiting[host.name]
            pending.append(envelope)
            if len(pending) >= batch:
                await publisher.send_pending(host.name, pending)
                pending.clear()
        for name, pending in waiting.items():
            await publisher.send_pending(name, pending)
        await publisher.flush()
        if publisher.published != events:
            print(f"   {publisher.published:,} events confirmed of {events:,} published")
    return events / (time.perf_counter() - started), rows, publisher.messages


async def publish_live(
    url: str, exchange: str, hosts: list[SimHost], rate: float, seconds: float, batch: int
) -> tuple[int, float, int]:
    """Events at ``rate`` for ``seconds``, heartbeats every 5 s, each tick's events of one
    host together (batched when several): (events sent, seconds taken, event messages)."""
    sent = 0
    async with Publisher(url, exchange, batch) as publisher:
        started = time.perf_counter()
        next_beat = started
        index = 0
        event_messages = 0
        while (elapsed := time.perf_counter() - started) < seconds:
            if time.perf_counter() >= next_beat:
                for host in hosts:
                    await publisher.send(host.heartbeat())
                next_beat += HEARTBEAT_INTERVAL
            due = int(elapsed * rate) - sent
            tick: dict[str, list[fleetwire.Envelope]] = {}
            for _ in range(max(0, min(due, 5000))):
                host = hosts[index % len(hosts)]
                index += 1
                envelope = host.counts() if index % 500 == 0 else host.next_entry()
                tick.setdefault(host.name, []).append(envelope)
                sent += 1
            messages_before = publisher.messages
            for name, pending in tick.items():
                await publisher.send_pending(name, pending)
            event_messages += publisher.messages - messages_before
            await asyncio.sleep(0.005)
        await publisher.flush()
        taken = time.perf_counter() - started
    return sent, taken, event_messages


async def consume_only(url: str, queue_name: str, count: int) -> float:
    """The broker alone: ``count`` messages consumed and decoded (aiormq, prefetch 1000, acked
    in batches of 500), no database: the ceiling of taking them off the queue in Python, in
    events/s (a batch's events all decoded, as the hub does)."""
    import aiormq

    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.basic_qos(prefetch_count=1000)
        done = asyncio.get_running_loop().create_future()
        seen = events = 0
        started = time.perf_counter()

        async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
            nonlocal seen, events
            host = fleetwire.parse_routing_key(message.routing_key or "")[0]
            good, _ = fleetwire.decode_batch(message.body, host)
            events += sum(envelope.is_event for envelope in good)
            seen += 1
            if seen % 500 == 0 or seen >= count:
                await channel.basic_ack(message.delivery.delivery_tag, multiple=True)
            if seen >= count and not done.done():
                done.set_result(None)

        consumer = await channel.basic_consume(queue_name, on_message)
        await asyncio.wait_for(done, 300)
        taken = time.perf_counter() - started
        await channel.basic_cancel(consumer.consumer_tag)
        return events / taken
    finally:
        await connection.close()


# -- the broker's names, and its lock ------------------------------------------------------


@contextlib.contextmanager
def broker_held(path: Path = Path("/tmp/heartwatch-tests-broker.lock")) -> Iterator[None]:
    """Hold the broker as a test does (tests/fleet_services.py: shared, through the gate), so
    that a test stopping the broker waits for this run and this run for it."""
    import fcntl

    with open(path.with_name(path.name + ".gate"), "ab") as gate, open(path, "ab") as lock:
        fcntl.flock(gate.fileno(), fcntl.LOCK_SH)
        fcntl.flock(lock.fileno(), fcntl.LOCK_SH)
        fcntl.flock(gate.fileno(), fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def declare_events_queue(url: str, exchange: str) -> str:
    """The hubs' queue, as the hub declares it (bound to every three-word key)."""
    import pika

    name = fleetwire.events_queue(exchange)
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.exchange_declare(exchange, "topic", durable=True)
        channel.queue_declare(name, durable=True, arguments=dict(fleetwire.EVENTS_QUEUE_ARGUMENTS))
        channel.queue_bind(name, exchange, fleetwire.EVENTS_BINDING)
    finally:
        connection.close()
    return name


def queue_depth(url: str, name: str) -> int:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(name, passive=True).method.message_count)
    finally:
        connection.close()


def delete_names(url: str, prefix: str) -> None:
    """Every queue and exchange whose name starts with ``prefix``."""
    import pika

    names: tuple[list[str], list[str]] = ([], [])
    if shutil.which("rabbitmqctl"):
        for index, what in enumerate(("list_queues", "list_exchanges")):
            out = subprocess.run(
                ["rabbitmqctl", what, "--quiet", "--no-table-headers", "name"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            ).stdout
            names[index].extend(n for n in out.split() if n.startswith(prefix))
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for name in {*names[0], fleetwire.events_queue(prefix)}:
            connection.channel().queue_delete(name)
        for name in {*names[1], prefix}:
            connection.channel().exchange_delete(name)
    finally:
        connection.close()


# -- PostgreSQL --------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database(keep: bool) -> Iterator[str]:
    import psycopg
    from psycopg import sql

    name = f"heartwatch_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = POSTGRES_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        if keep:
            print(f"   (kept database {name})")
        else:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def stored_count(database: str) -> int:
    import psycopg

    with psycopg.connect(database, autocommit=True) as connection:
        row = connection.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0


COLUMNS = "host, boot, seq, type, at, kind, service, reason, state, previous, detail, body"


def baseline_copy(database: str, rows: Sequence[tuple[Any, ...]], batch: int = 1000) -> float:
    """Bare COPY of ``rows`` into a table like ``events``, a transaction per batch."""
    import psycopg

    with psycopg.connect(database) as connection:
        connection.execute("DROP TABLE IF EXISTS baseline_copy")
        connection.execute("CREATE TABLE baseline_copy (LIKE events INCLUDING ALL)")
        connection.commit()
        started = time.perf_counter()
        for low in range(0, len(rows), batch):
            with (
                connection.cursor() as cursor,
                cursor.copy(f"COPY baseline_copy ({COLUMNS}) FROM STDIN") as copy,
            ):
                for row in rows[low : low + batch]:
                    copy.write_row(row)
            connection.commit()
        taken = time.perf_counter() - started
        connection.execute("DROP TABLE baseline_copy")
        connection.commit()
    return len(rows) / taken


def baseline_executemany(
    database: str, rows: Sequence[tuple[Any, ...]], batch: int = 1000
) -> float:
    """``INSERT ... ON CONFLICT DO NOTHING`` through executemany, a transaction per batch."""
    import psycopg

    placeholders = ", ".join(["%s"] * 12)
    with psycopg.connect(database) as connection:
        connection.execute("DROP TABLE IF EXISTS baseline_insert")
        connection.execute("CREATE TABLE baseline_insert (LIKE events INCLUDING ALL)")
        connection.commit()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for low in range(0, len(rows), batch):
                cursor.executemany(
                    f"INSERT INTO baseline_insert ({COLUMNS}) VALUES ({placeholders})"
                    " ON CONFLICT DO NOTHING",
                    rows[low : low + batch],
                )
                connection.commit()
        taken = time.perf_counter() - started
        connection.execute("DROP TABLE baseline_insert")
        connection.commit()
    return len(rows) / taken


# -- the hub -----------------------------------------------------------------------------------


class HubProcess:
    """``heartwatch hub -c hub.toml`` with a config for this run; CPU and RSS sampled."""

    def __init__(self, folder: Path, exchange: str, database: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.folder = folder
        self.key = Ed25519PrivateKey.generate()
        key_path = folder / "hub.key"
        key_path.write_text(fleetcommands.private_key_text(self.key) + "\n")
        key_path.chmod(0o600)
        self.public_key = fleetcommands.public_key_text(self.key.public_key())
        self.state_dir = folder / "hub-state"
        self.token = uuid.uuid4().hex
        self.http = ""
        hub = {
            "name": "bench-hub",
            "broker": AMQP_URL,
            "database": database,
            "exchange": exchange,
            "http": "127.0.0.1:0",
            "state_dir": str(self.state_dir),
            "token": self.token,
            "signing_key": str(key_path),
            "stale_after": "30s",
            "unreachable_after": "90s",
            "start_grace": "60s",
        }
        self.config = folder / "hub.toml"
        self.config.write_text(
            "[hub]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in hub.items())
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.rss_max = 0.0
        self._sampling = False

    def start(self, timeout: float = 60.0) -> None:
        self.runs += 1
        stderr = (self.folder / f"hub-{self.runs}.stderr").open("wb")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "heartwatch", "hub", "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            cwd=self.folder,
        )
        stderr.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                text = (self.folder / f"hub-{self.runs}.stderr").read_text(errors="replace")
                raise SystemExit(f"the hub exited with {self.process.returncode}:\n{text[-3000:]}")
            with contextlib.suppress(OSError, ValueError):
                info = json.loads((self.state_dir / "hub.json").read_text())
                if info.get("pid") == self.process.pid:
                    self.http = str(info["http"])
                    return
            time.sleep(0.1)
        raise SystemExit("the hub did not write hub.json in time")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> float:
        value = rss_mb(self.pid)
        self.rss_max = max(self.rss_max, value)
        return value

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Sampler:
    """Counts stored rows and the hub's RSS every ``interval`` s, in a thread."""

    def __init__(self, database: str, hub: HubProcess, interval: float = 0.25) -> None:
        self.database = database
        self.hub = hub
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (monotonic, rows)
        self.rss: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append((time.monotonic(), stored_count(self.database)))
            with contextlib.suppress(psutil.Error):
                self.rss.append(self.hub.rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def wait_for(self, rows: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.samples and self.samples[-1][1] >= rows:
                return True
            time.sleep(0.1)
        return False

    def sustained_rate(self, low: int, high: int) -> float:
        """Rows/s between the first sample at or past ``low`` and the first at or past ``high``."""
        start = next((i for i, (_, n) in enumerate(self.samples) if n >= low), None)
        end = next(((t, n) for t, n in self.samples if n >= high), None)
        if start is None or end is None:
            return float("nan")
        if end[0] <= self.samples[start][0] and start > 0:
            start -= 1  # drained between two samples: from the one before
        begin = self.samples[start]
        if end[0] <= begin[0]:
            return float("nan")
        return (end[1] - begin[1]) / (end[0] - begin[0])


# -- real agents -------------------------------------------------------------------------------


def start_agents(
    folder: Path, count: int, exchange: str, public_key: str
) -> list[subprocess.Popen[bytes]]:
    agents = []
    for index in range(count):
        home = folder / f"agent-{index}"
        home.mkdir()
        services = [
            {"name": f"sleeper-{i}", "command": [PYTHON, "-c", "import time; time.sleep(3600)"]}
            for i in range(5)
        ]
        fleet = {
            "broker": AMQP_URL,
            "host": f"real-{index}",
            "exchange": exchange,
            "heartbeat_interval": "1s",
            "hub_keys": [public_key],
        }
        (home / "heartwatch.toml").write_text(render_config(services, sections={"fleet": fleet}))
        agents.append(
            subprocess.Popen(
                [PYTHON, "-m", "heartwatch", "run", "-c", str(home / "heartwatch.toml")],
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=(home / "daemon.stderr").open("wb"),
            )
        )
    return agents


def stop_agents(agents: list[subprocess.Popen[bytes]]) -> None:
    for agent in agents:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
    for agent in agents:
        try:
            agent.wait(20)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()


def real_hosts_live(database: str, count: int) -> int:
    import psycopg

    with psycopg.connect(database, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM hosts WHERE host LIKE 'real-%%' AND state = 'live'"
        ).fetchone()
        return int(row[0]) if row else 0


# -- the run -----------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    banner(
        f"fleet ingest: {args.hosts} hosts x {args.services} services, backlog {args.backlog:,}, "
        f"live {args.rate:,.0f}/s for {args.seconds:g} s, {args.agents} real agents, "
        f"hang share {args.hang_share:g}, --batch {args.batch}",
        args.quick,
    )
    exchange = f"hwbench.{uuid.uuid4().hex}"
    hosts = [SimHost(f"sim-{i:03d}", args.services, args.hang_share) for i in range(args.hosts)]
    with (
        broker_held(),
        Workdir("fleet", keep=args.keep) as work,
        bench_database(args.keep) as database,
    ):
        hub = HubProcess(work.path, exchange, database)
        agents: list[subprocess.Popen[bytes]] = []
        try:
            queue_name = declare_events_queue(AMQP_URL, exchange)
            # The broker alone: the ceiling of taking these messages off the queue in Python.
            publish_rate, rows, messages = asyncio.run(
                publish_backlog(AMQP_URL, exchange, hosts, args.backlog // 2, args.batch)
            )
            queued = queue_depth(AMQP_URL, queue_name)
            if queued != messages:
                print(f"   {queued:,} queued of {messages:,} messages published")
            consume_rate = asyncio.run(consume_only(AMQP_URL, queue_name, queued))
            print(f"   simulator published {publish_rate:,.0f} events/s (confirmed)")

            hub.start()  # migrations, its declarations
            hub.stop()
            for host in hosts:  # fresh boots: the broker-only run's numbering is not stored
                host.boot, host.seq, host.entry_id = uuid.uuid4().hex, 0, 0
            _, rows, backlog_messages = asyncio.run(
                publish_backlog(AMQP_URL, exchange, hosts, args.backlog, args.batch)
            )
            total = args.backlog
            hub.start()
            drain_started = time.monotonic()  # hub.json written: it serves, and consumes
            cpu_before = hub.cpu()
            with Sampler(database, hub, interval=0.05) as sampler:
                drained = sampler.wait_for(total, timeout=600)
                drain_cpu = hub.cpu() - cpu_before
                drain_rate = sampler.sustained_rate(int(total * 0.1), int(total * 0.9))
                drain_rss = max(sampler.rss, default=float("nan"))
                # From the start, not only the middle: a hub that reads the whole queue before
                # it writes has a fast middle and a slow start (and holds it all in memory).
                first_row = next((t for t, n in sampler.samples if n > 0), float("nan"))
                last_row = next((t for t, n in sampler.samples if n >= total), float("nan"))
                whole_rate = total / (last_row - drain_started)
            if not drained:
                print(f"   the hub stored {stored_count(database):,} of {total:,} in 600 s")

            agents = start_agents(work.path, args.agents, exchange, hub.public_key)
            before_rows = stored_count(database)
            cpu_before = hub.cpu()
            with Sampler(database, hub) as sampler:
                sent, taken, live_messages = asyncio.run(
                    publish_live(AMQP_URL, exchange, hosts, args.rate, args.seconds, args.batch)
                )
                live_cpu = hub.cpu() - cpu_before
                sampler.wait_for(before_rows + sent, timeout=120)
                live_rss = max(sampler.rss, default=float("nan"))
                first, last = sampler.samples[0], sampler.samples[-1]
                live_stored = last[1] - before_rows
                live_rate = live_stored / max(1e-9, last[0] - first[0])
            left = queue_depth(AMQP_URL, queue_name)
            real_live = real_hosts_live(database, args.agents)
            hub_rss_now = hub.rss()
        finally:
            stop_agents(agents)
            hub.stop()
            if not args.keep:
                delete_names(AMQP_URL, exchange)
        copy_rate = baseline_copy(database, rows)
        insert_rate = baseline_executemany(database, rows)

    print()
    print_table(
        ["", "events", "events/s", "hub CPU us/event", "hub RSS max MB"],
        [
            ["hub: backlog drain (10-90 %)", total, drain_rate, drain_cpu / total * 1e6, drain_rss],
            ["hub: backlog drain, start to last row", total, whole_rate, "", ""],
            [
                f"hub: live, offered {sent / taken:,.0f}/s",
                live_stored,
                live_rate,
                live_cpu / max(1, live_stored) * 1e6,
                live_rss,
            ],
            ["baseline: bare COPY, 1000/txn", len(rows), copy_rate, "", ""],
            ["baseline: executemany, 1000/txn", len(rows), insert_rate, "", ""],
            ["baseline: broker consume only", args.backlog // 2, consume_rate, "", ""],
        ],
    )
    print(
        f"\n   --batch {args.batch}: events per message {total / backlog_messages:.1f} in the "
        f"backlog, {sent / max(1, live_messages):.2f} live ({sent:,} events offered live)"
    )
    print(
        f"   backlog drain: the first row stored {first_row - drain_started:.2f} s after the start"
    )
    print(
        f"   queue left after the live phase: {left:,}; real agents live on the hub: "
        f"{real_live} of {args.agents}; hub RSS at the end {hub_rss_now:.0f} MB"
    )
    print(
        f"   goal >= {GOAL_RATE:,.0f} events/s sustained: {verdict(drain_rate >= GOAL_RATE)} "
        f"({drain_rate:,.0f}/s, {drain_rate / copy_rate:.0%} of the bare COPY)"
    )
    rss = max(drain_rss, live_rss)
    print(f"   goal hub RSS <= {GOAL_RSS_MB:.0f} MB: {verdict(rss <= GOAL_RSS_MB)} ({rss:.0f} MB)")


if __name__ == "__main__":
    sys.exit(main())
