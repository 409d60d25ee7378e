"""The fleet agent end to end: a real daemon with ``[fleet]`` against the real broker.

A *tap* (a queue of the test's, bound to the test's exchange as the hubs' queue is: ``*.*.*``,
events and reports, not log streams) reads what the agent publishes, a batch as its envelopes.
Between the agent and the broker, where a test needs the broker to go away, runs a TCP proxy
the test cuts and restores (``BrokerProxy``): the broker itself keeps serving the other tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from e2e.support import Pipeline, duration, scaled, wait_until, worker_command
from fleet_services import rabbitmqctl
from heartwatch.core import fleetwire
from heartwatch.core.fleetcommands import Command, public_key_text, sign

HOST = "farm-test"
HUB = "hub-test"


@dataclass
class Received:
    routing_key: str
    envelope: dict[str, Any]
    properties: Any
    body: bytes


class Tap:
    """A queue of the test's bound to every three-word key of ``exchange`` (as the hubs'
    events queue is); read with basic_get."""

    def __init__(self, url: str, exchange: str) -> None:
        self.exchange = exchange
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(exchange, "topic", durable=True)
        self.queue = f"{exchange}.tap.{uuid.uuid4().hex[:8]}"
        self.channel.queue_declare(self.queue, durable=False, auto_delete=False)
        self.channel.queue_bind(self.queue, exchange, fleetwire.EVENTS_BINDING)
        self.received: list[Received] = []
        self.messages: list[tuple[str, int]] = []  # (routing key, envelopes) per message

    def drain(self) -> list[Received]:
        """Everything waiting now (bounded), appended to ``received``."""
        for _ in range(10_000):
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                break
            decoded = json.loads(body)
            envelopes = decoded if isinstance(decoded, list) else [decoded]
            self.messages.append((method.routing_key, len(envelopes)))
            for envelope in envelopes:
                self.received.append(Received(method.routing_key, envelope, properties, body))
        return self.received

    def events(self, boot: str | None = None) -> list[dict[str, Any]]:
        return [
            r.envelope
            for r in self.received
            if r.envelope["type"] in fleetwire.EVENT_TYPES
            and (boot is None or r.envelope["boot"] == boot)
        ]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r.envelope for r in self.received if r.envelope["type"] == kind]

    def wait(self, predicate: Any, what: str, timeout: float = 20.0) -> Any:
        return wait_until(lambda: predicate(self.drain()), what, timeout, interval=0.1)

    def publish_command(self, host: str, data: bytes, ttl: float = 60.0) -> None:
        """As the hub sends one: to the host's command queue, through the default exchange."""
        self.channel.basic_publish(
            "",
            fleetwire.command_queue(self.exchange, host),
            data,
            pika.BasicProperties(
                content_type="application/json", expiration=str(int(ttl * 1000)), delivery_mode=2
            ),
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.channel.queue_delete(self.queue)
        with contextlib.suppress(Exception):
            self.connection.close()


class BrokerProxy:
    """TCP between the agent and the broker, which the test can cut (every connection closed,
    new ones hung up at once) and restore."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.cut_now = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed by close()
            while True:
                client, _ = self.listener.accept()
                if self.cut_now:
                    client.close()
                    continue
                try:
                    server = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    client.close()
                    continue
                with self._lock:
                    self._sockets += [client, server]
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.cut_now = True
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self.cut_now = False

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def tap(rabbitmq: str, unique_exchange: str) -> Iterator[Tap]:
    reader = Tap(rabbitmq, unique_exchange)
    try:
        yield reader
    finally:
        reader.close()


@pytest.fixture
def proxy(rabbitmq: str) -> Iterator[BrokerProxy]:
    relay = BrokerProxy(("127.0.0.1", 5672))
    try:
        yield relay
    finally:
        relay.close()


def proxied(url: str, port: int) -> str:
    return url.replace("127.0.0.1:5672", f"127.0.0.1:{port}")


def fleet_section(broker: str, exchange: str, **more: Any) -> dict[str, Any]:
    return {
        "broker": broker,
        "host": HOST,
        "exchange": exchange,
        "heartbeat_interval": duration(0.5),
        "labels": {"site": "test"},
        **more,
    }


def beating(name: str, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "command": worker_command("--beat", "0.2"),
        "heartbeat_timeout": duration(2),
        "startsecs": "0s",
        **more,
    }


def assert_in_order(events: list[dict[str, Any]]) -> None:
    """Events of each boot numbered 1, 2, 3… with no gap and none twice."""
    boots: dict[str, list[int]] = {}
    for event in events:
        boots.setdefault(event["boot"], []).append(event["seq"])
    for boot, seqs in boots.items():
        assert seqs == list(range(1, len(seqs) + 1)), (boot, seqs)


def entry_reasons(events: list[dict[str, Any]]) -> list[str]:
    return [e["body"]["reason"] for e in events if e["type"] == "entry"]


def test_agent_publishes_entries_in_order_then_a_snapshot_and_heartbeats(
    rabbitmq: str, unique_exchange: str, tap: Tap, pipeline: Pipeline
) -> None:
    """Every journal entry arrives once, in seq order; a snapshot of every service (the API's
    own items) follows the connect; heartbeats come every interval, expiring."""
    pipeline.write_config(
        [beating("collector"), beating("parser")],
        extra={"fleet": fleet_section(rabbitmq, unique_exchange)},
    )
    daemon = pipeline.start_daemon()
    daemon.wait_running("collector")
    daemon.wait_running("parser")
    tap.wait(lambda _: len(tap.of_type("heartbeat")) >= 3, "three heartbeats")
    tap.wait(
        lambda _: any(
            e["body"]["state"] == "running" for e in tap.events() if e["type"] == "entry"
        ),
        "the transitions to running",
    )
    events = tap.events()
    assert_in_order(events)
    boot = events[0]["boot"]
    assert {e["boot"] for e in events} == {boot}
    assert events[0]["body"]["kind"] == "daemon" or any(
        r.startswith("heartwatch started") for r in entry_reasons(events)
    )
    for received in tap.received:
        assert received.envelope["host"] == HOST
        assert received.properties.content_type == "application/json"
    entry = next(r for r in tap.received if r.envelope["type"] == "entry")
    assert entry.routing_key.startswith(f"{HOST}.")
    assert entry.properties.delivery_mode == 2
    # The snapshot: once the outbox was replayed, every service as the API answers it.
    snapshot = tap.of_type("snapshot")[0]
    api = daemon.services()
    assert [s["name"] for s in snapshot["body"]["services"]] == [s["name"] for s in api]
    assert set(snapshot["body"]["services"][0]) == set(api[0])
    assert snapshot["body"]["labels"] == {"site": "test"}
    assert snapshot["body"]["config_hash"]
    beat = next(r for r in tap.received if r.envelope["type"] == "heartbeat")
    assert beat.routing_key == f"{HOST}.-.heartbeat"
    assert beat.properties.delivery_mode in (None, 1)
    assert float(beat.properties.expiration) == pytest.approx(3 * scaled(0.5) * 1000, rel=0.01)
    assert beat.envelope["body"]["services"] == 2
    assert beat.envelope["boot"] == boot
    # A restart asked for locally: its entries follow, in order.
    daemon.control("parser", "restart")
    tap.wait(
        lambda _: "restart requested" in entry_reasons(tap.events()),
        "the restart's entries",
    )
    assert_in_order(tap.events())


def test_agent_without_broker_keeps_supervising_and_sends_everything_after(
    rabbitmq: str, unique_exchange: str, tap: Tap, proxy: BrokerProxy, pipeline: Pipeline
) -> None:
    """With the broker cut off from the start, a hang is still recovered; once it is back,
    every event arrives in order, none twice, then a snapshot; a second cut while idle loses
    nothing either."""
    proxy.cut()
    pipeline.write_config(
        [beating("collector")],
        extra={"fleet": fleet_section(proxied(rabbitmq, proxy.port), unique_exchange)},
    )
    daemon = pipeline.start_daemon()
    pid = daemon.wait_running("collector")["pid"]
    os.kill(pid, signal.SIGSTOP)  # alive but silent: a hang
    daemon.wait_service(
        "collector", lambda s: s["restarts"] >= 1 and s["state"] == "running", "recovered", 30
    )
    time.sleep(scaled(0.5))
    assert tap.drain() == []  # nothing got through the cut
    log = daemon.log_text()
    # Said once per reason, however many tries (a port that hangs up may look like a reset
    # or like a close before the broker answered: two reasons at most).
    problems = [line for line in log.splitlines() if "fleet: cannot publish" in line]
    reasons = [line.partition("%2F: ")[2] for line in problems]
    assert 1 <= len(problems) <= 2 and len(set(reasons)) == len(reasons), problems
    assert all("guest:***@" in line for line in problems) and ":guest@" not in log
    proxy.restore()
    tap.wait(lambda _: tap.of_type("snapshot"), "the snapshot after the connect", 40)
    events = tap.events()
    assert_in_order(events)
    reasons = entry_reasons(events)
    assert any("no heartbeat" in r for r in reasons), reasons
    # The outbox's replay went as batches of the host's events (and none twice: in order).
    batched = [(key, count) for key, count in tap.messages if count > 1]
    assert batched and all(key == f"{HOST}.-.batch" for key, _ in batched), tap.messages
    # Everything made before the snapshot came before it.
    index = next(i for i, r in enumerate(tap.received) if r.envelope["type"] == "snapshot")
    snapshot = tap.received[index].envelope
    before = [r.envelope["seq"] for r in tap.received[:index] if r.envelope["type"] != "heartbeat"]
    assert before and max(before) <= snapshot["seq"]
    # Idle, then cut again: events made meanwhile come after it, none twice.
    seen = len(tap.events())
    proxy.cut()
    daemon.control("collector", "restart")
    daemon.wait_running("collector")
    time.sleep(scaled(0.5))
    proxy.restore()
    tap.wait(lambda _: len(tap.of_type("snapshot")) >= 2, "a snapshot after the reconnect", 40)
    tap.wait(lambda _: len(tap.events()) > seen, "the events made during the cut", 20)
    assert_in_order(tap.events())
    assert "restart requested" in entry_reasons(tap.events()[seen:])
    assert len([line for line in daemon.log_text().splitlines() if "again" in line]) >= 1


def test_events_made_while_the_broker_is_away_survive_a_sigkill(
    rabbitmq: str, unique_exchange: str, tap: Tap, proxy: BrokerProxy, pipeline: Pipeline
) -> None:
    """An agent killed while its events wait: the next one sends them (their boot, in
    order) before its own."""
    proxy.cut()
    pipeline.write_config(
        [beating("collector")],
        extra={"fleet": fleet_section(proxied(rabbitmq, proxy.port), unique_exchange)},
    )
    daemon = pipeline.start_daemon()
    daemon.wait_running("collector")
    daemon.control("collector", "restart")
    daemon.wait_running("collector")
    time.sleep(scaled(0.5))  # the outbox writes within a loop turn or two
    daemon.kill()
    proxy.restore()
    second = pipeline.start_daemon()
    second.wait_running("collector")
    tap.wait(lambda _: tap.of_type("snapshot"), "the second agent's snapshot", 40)
    events = tap.events()
    assert_in_order(events)
    boots = list(dict.fromkeys(e["boot"] for e in events))
    assert len(boots) == 2, boots
    first_boot = [e for e in events if e["boot"] == boots[0]]
    assert "restart requested" in entry_reasons(first_boot)
    # The old boot's events first, then the new one's.
    last_old = max(i for i, e in enumerate(events) if e["boot"] == boots[0])
    first_new = min(i for i, e in enumerate(events) if e["boot"] == boots[1])
    assert last_old < first_new
    assert tap.of_type("snapshot")[0]["boot"] == boots[1]


# -- commands ------------------------------------------------------------------------------


def command(verb: str, service: str | None, ttl: float = 60.0, **args: Any) -> Command:
    now = time.time()
    return Command(uuid.uuid4().hex, HOST, service, verb, now, now + ttl, args, HUB)  # type: ignore[arg-type]


def replies(tap: Tap, command_id: str) -> list[str]:
    return [
        e["body"]["status"]
        for e in tap.events()
        if e["type"] == "reply" and e["body"]["command"] == command_id
    ]


def wait_command_queue(tap: Tap) -> None:
    def declared() -> bool:
        channel = tap.connection.channel()
        try:
            channel.queue_declare(fleetwire.command_queue(tap.exchange, HOST), passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return False
        channel.close()
        return True

    wait_until(declared, "the agent's command queue", 20, interval=0.1)


def test_signed_commands_run_once_and_forged_replayed_expired_are_refused(
    rabbitmq: str, unique_exchange: str, tap: Tap, pipeline: Pipeline
) -> None:
    """A restart signed by a trusted hub runs once (accepted, done); the same bytes again are
    refused as replayed, after an agent restart too; a forged one is refused and logged; an
    expired one replies expired and never runs."""
    hub_key = Ed25519PrivateKey.generate()
    fleet = fleet_section(
        rabbitmq, unique_exchange, hub_keys=[public_key_text(hub_key.public_key())]
    )
    pipeline.write_config([beating("collector")], extra={"fleet": fleet})
    daemon = pipeline.start_daemon()
    daemon.wait_running("collector")
    wait_command_queue(tap)
    restart = command("restart", "collector")
    signed = sign(restart, hub_key)
    tap.publish_command(HOST, signed)
    tap.wait(lambda _: replies(tap, restart.id) == ["accepted", "done"], "accepted, then done")
    done = next(e for e in tap.events() if e["type"] == "reply" and e["body"]["status"] == "done")
    assert done["body"]["reason"] == "restarted collector"
    status = daemon.wait_service("collector", lambda s: s["restarts_requested"] >= 1, "restarted")
    assert status["restarts_requested"] == 1
    daemon.wait_running("collector")
    reasons = entry_reasons(tap.events())
    assert f"restart requested by hub {HUB} (command {restart.id})" in reasons
    # The same bytes again: refused, not run.
    tap.publish_command(HOST, signed)
    tap.wait(lambda _: "refused" in replies(tap, restart.id), "the replay refused")
    assert daemon.service("collector")["restarts_requested"] == 1
    # Forged: signed by a key the agent does not trust.
    forged = command("stop", "collector")
    tap.publish_command(HOST, sign(forged, Ed25519PrivateKey.generate()))
    tap.wait(lambda _: replies(tap, forged.id) == ["refused"], "the forged one refused")
    assert daemon.service("collector")["state"] == "running"
    wait_until(lambda: "(forged)" in daemon.log_text(), "the forged command in the log", 5)
    # Expired before it arrived: replied expired, never run.
    expired = Command(
        uuid.uuid4().hex, HOST, "collector", "stop", time.time() - 120, time.time() - 60, {}, HUB
    )
    tap.publish_command(HOST, sign(expired, hub_key))
    tap.wait(lambda _: replies(tap, expired.id) == ["expired"], "the expired one replied")
    assert daemon.service("collector")["state"] == "running"
    # After the agent restarts, the ids it ran are still known.
    daemon.terminate()
    again = pipeline.start_daemon()
    again.wait_running("collector")
    wait_command_queue(tap)
    tap.publish_command(HOST, signed)
    tap.wait(lambda _: replies(tap, restart.id).count("refused") == 2, "refused after a restart")
    assert again.service("collector")["restarts_requested"] == 0
    log = again.log_text()
    assert "replayed" in log and signed.decode() not in log


def test_commands_signal_reload_and_failures_say_why(
    rabbitmq: str, unique_exchange: str, tap: Tap, pipeline: Pipeline
) -> None:
    """A signal and a reload from the hub run and reply done; an unknown service fails,
    naming it."""
    hub_key = Ed25519PrivateKey.generate()
    fleet = fleet_section(
        rabbitmq, unique_exchange, hub_keys=[public_key_text(hub_key.public_key())]
    )
    pipeline.write_config([beating("collector")], extra={"fleet": fleet})
    daemon = pipeline.start_daemon()
    daemon.wait_running("collector")
    wait_command_queue(tap)
    unknown = command("restart", "colector")
    tap.publish_command(HOST, sign(unknown, hub_key))
    tap.wait(lambda _: replies(tap, unknown.id) == ["accepted", "failed"], "failed")
    failed = [
        e for e in tap.events() if e["type"] == "reply" and e["body"]["command"] == unknown.id
    ]
    assert "colector" in failed[-1]["body"]["reason"]
    reload = command("reload", None)
    tap.publish_command(HOST, sign(reload, hub_key))
    tap.wait(lambda _: replies(tap, reload.id) == ["accepted", "done"], "reloaded")
    assert any(
        e["body"]["kind"] == "reload" and f"command {reload.id}" in e["body"]["reason"]
        for e in tap.events()
        if e["type"] == "entry"
    )
    pid = daemon.service("collector")["pid"]
    stop = command("signal", "collector", signal="STOP")
    tap.publish_command(HOST, sign(stop, hub_key))
    tap.wait(lambda _: replies(tap, stop.id) == ["accepted", "done"], "signalled")
    wait_until(lambda: _stopped(pid), "the process stopped by the hub's SIGSTOP", 10)
    os.kill(pid, signal.SIGCONT)


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_full_outbox_drops_the_oldest_and_says_how_many(
    rabbitmq: str, unique_exchange: str, tap: Tap, proxy: BrokerProxy, pipeline: Pipeline
) -> None:
    """Beyond outbox_max while the broker is away, the oldest events go: the hub gets the
    newest in order, and an entry saying how many were dropped."""
    proxy.cut()
    fleet = fleet_section(proxied(rabbitmq, proxy.port), unique_exchange, outbox_max=10)
    pipeline.write_config([beating("collector")], extra={"fleet": fleet})
    daemon = pipeline.start_daemon()
    daemon.wait_running("collector")
    for _ in range(4):  # each restart journals a few entries
        daemon.control("collector", "restart")
        daemon.wait_running("collector")
    time.sleep(scaled(0.5))
    wait_until(lambda: "the outbox is full" in daemon.log_text(), "the outbox full, said", 5)
    proxy.restore()
    tap.wait(lambda _: tap.of_type("snapshot"), "the snapshot after the connect", 40)
    tap.wait(
        lambda _: any("were dropped from the outbox" in r for r in entry_reasons(tap.events())),
        "the entry saying how many were dropped",
    )
    events = tap.events()
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))  # in order, none twice
    said = next(e for e in events if "were dropped" in e["body"].get("reason", ""))
    dropped = said["body"]["detail"]["fleet_dropped"]
    # The oldest were dropped: what came is the newest, from just after them, without a gap.
    assert seqs[0] == dropped + 1
    assert seqs == list(range(dropped + 1, seqs[-1] + 1))
    assert f"{dropped} events were dropped" in daemon.log_text()


def test_tail_streams_a_service_output_while_its_lease_lasts(
    rabbitmq: str, unique_exchange: str, tap: Tap, pipeline: Pipeline
) -> None:
    """Lines go on the fleet exchange under <host>.<service>.log.<stream>, to the queue the
    hub bound there, as {"line"} (never to the events' tap); without a renewal the lease ends
    with {"end"}; a renewal keeps it going; a queue deleted ends it."""
    hub_key = Ed25519PrivateKey.generate()
    fleet = fleet_section(
        rabbitmq, unique_exchange, hub_keys=[public_key_text(hub_key.public_key())]
    )
    printer = {
        "name": "printer",
        "command": [
            sys.executable,
            "-u",
            "-c",
            "import time\nfor i in range(100000):\n    print('line', i); time.sleep(0.05)",
        ],
        "startsecs": "0s",
    }
    pipeline.write_config([printer], extra={"fleet": fleet})
    daemon = pipeline.start_daemon()
    daemon.wait_running("printer")
    wait_command_queue(tap)
    stream, queue = stream_queue(tap, "printer")
    tail = command("tail", "printer", stream=stream, lease=scaled(2.0), lines=3)
    tap.publish_command(HOST, sign(tail, hub_key))
    tap.wait(lambda _: replies(tap, tail.id) == ["accepted", "done"], "tail accepted, done")

    received: list[dict[str, Any]] = []

    def read_tail() -> list[dict[str, Any]]:
        for _ in range(10_000):
            method, _, body = tap.channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            received.append(json.loads(body))
        return received

    wait_until(lambda: any("end" in m for m in read_tail()), "the lease's end", 20)
    lines = [m["line"] for m in received if "line" in m]
    assert len(lines) >= 3 and all(line.startswith("line ") for line in lines), lines
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # none lost between
    assert received[-1] == {"end": "the lease ended without a renewal"}
    # A queue that goes away ends the stream (the broker returns what is sent to it).
    received.clear()
    again = command("tail", "printer", stream=stream, lease=scaled(60.0), lines=0)
    tap.publish_command(HOST, sign(again, hub_key))
    wait_until(lambda: any("line" in m for m in read_tail()), "lines again", 20)
    renewal = command("tail", "printer", stream=stream, lease=scaled(60.0), lines=0)
    tap.publish_command(HOST, sign(renewal, hub_key))
    tap.wait(lambda _: replies(tap, renewal.id) == ["accepted", "done"], "the renewal done")
    reason = next(
        e["body"]["reason"]
        for e in tap.events()
        if e["type"] == "reply" and e["body"]["command"] == renewal.id and e["body"]["reason"]
    )
    assert "renewed" in reason
    key = fleetwire.log_routing_key(HOST, "printer", stream)
    tap.channel.queue_delete(queue)
    wait_until(
        lambda: f"stopped streaming output to {key}: the hub's queue is gone" in daemon.log_text(),
        "the stream ended for the deleted queue",
        20,
    )
    assert all(r.routing_key.count(".") == 2 for r in tap.drain())  # no log line in the tap


def stream_queue(tap: Tap, service: str) -> tuple[str, str]:
    """As the hub does for a viewer: a stream token, and a queue bound to its key alone."""
    stream = uuid.uuid4().hex[:16]
    queue = f"{tap.exchange}.tail.{stream}"
    tap.channel.queue_declare(queue, durable=False, exclusive=True)
    tap.channel.queue_bind(queue, tap.exchange, fleetwire.log_routing_key(HOST, service, stream))
    return stream, queue


def test_events_wait_while_no_queue_takes_them(
    rabbitmq: str, unique_exchange: str, pipeline: Pipeline
) -> None:
    """Before any hub bound a queue to the exchange, the broker returns the events: they wait
    in the outbox (said once) and all arrive, from seq 1, once a queue is bound."""
    pipeline.write_config(
        [beating("collector")], extra={"fleet": fleet_section(rabbitmq, unique_exchange)}
    )
    daemon = pipeline.start_daemon()
    daemon.wait_running("collector")
    wait_until(lambda: "no queue is bound" in daemon.log_text(), "the unrouted events said", 10)
    late = Tap(rabbitmq, unique_exchange)
    try:
        late.wait(lambda _: any(e["seq"] >= 3 for e in late.events()), "the waiting events", 30)
        events = late.events()
        assert_in_order(events)
        assert events[0]["seq"] == 1
        assert any(r.startswith("heartwatch started") for r in entry_reasons(events))
    finally:
        late.close()
    assert daemon.log_text().count("no queue is bound") == 1


@pytest.fixture
def host_user(rabbitmq: str, unique_exchange: str) -> Iterator[str]:
    """A broker user of this host's own, with exactly the permissions docs/fleet.md gives one
    (no write on the default exchange); its AMQP URL."""
    name, password = f"hwtest-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    exchange = unique_exchange.replace(".", r"\.")
    host = HOST.replace(".", r"\.")
    rabbitmqctl("add_user", name, password)
    try:
        rabbitmqctl(
            "set_permissions",
            "-p",
            "/",
            name,
            rf"^{exchange}(\.expired|\.commands\.{host})?$",
            rf"^{exchange}(\.expired)?$",
            rf"^{exchange}\.commands\.{host}$",
        )
        rabbitmqctl("set_topic_permissions", "-p", "/", name, unique_exchange, rf"^{host}\.", "^$")
        yield f"amqp://{name}:{password}@127.0.0.1:5672/%2F"
    finally:
        rabbitmqctl("delete_user", name)


def test_an_agent_with_a_broker_user_of_its_own(
    rabbitmq: str, unique_exchange: str, tap: Tap, host_user: str, pipeline: Pipeline
) -> None:
    """With only its own routing keys and command queue, the agent publishes, takes commands
    and streams a tail (on the fleet exchange: no write on the default exchange needed); that
    user can neither publish to a queue by name (the hubs' events queue, say) nor under
    another host's routing key."""
    hub_key = Ed25519PrivateKey.generate()
    fleet = fleet_section(
        host_user, unique_exchange, hub_keys=[public_key_text(hub_key.public_key())]
    )
    talker = {
        "name": "talker",
        "command": [
            sys.executable,
            "-u",
            "-c",
            "import time\nfor i in range(100000):\n    print('line', i); time.sleep(0.05)",
        ],
        "startsecs": "0s",
    }
    pipeline.write_config([beating("collector"), talker], extra={"fleet": fleet})
    daemon = pipeline.start_daemon()
    daemon.wait_running("collector")
    tap.wait(lambda _: tap.of_type("snapshot"), "the snapshot", 30)
    wait_command_queue(tap)
    stream, queue = stream_queue(tap, "talker")
    tail = command("tail", "talker", stream=stream, lease=scaled(30.0), lines=5)
    tap.publish_command(HOST, sign(tail, hub_key))
    lines: list[str] = []

    def read_lines() -> list[str]:
        for _ in range(10_000):
            method, _, body = tap.channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            message = json.loads(body)
            if "line" in message:
                lines.append(message["line"])
        return lines

    wait_until(
        lambda: sum(line.startswith("line ") for line in read_lines()) >= 3,
        "the tail's lines, under the host's user",
        20,
    )
    assert "the broker refused the stream" not in daemon.log_text()
    restart = command("restart", "collector")
    tap.publish_command(HOST, sign(restart, hub_key))
    tap.wait(lambda _: replies(tap, restart.id) == ["accepted", "done"], "commands go on")
    assert_in_order(tap.events())
    assert host_user.split(":")[2].split("@")[0] not in daemon.log_text()
    # What that user cannot do: write to a queue by name (the default exchange), or publish
    # under another host's key on the fleet exchange (the hub would take it as that host's).
    impostor = fleetwire.encode(
        fleetwire.Envelope("entry", "farm-other", uuid.uuid4().hex, 1, time.time(), {})
    )
    connection = pika.BlockingConnection(pika.URLParameters(host_user))
    try:
        for exchange, key in (
            ("", fleetwire.events_queue(unique_exchange)),
            (unique_exchange, "farm-other.-.note"),
        ):
            channel = connection.channel()
            channel.confirm_delivery()
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                channel.basic_publish(exchange, key, impostor)
            assert refused.value.reply_code == 403, (exchange, key)
    finally:
        with contextlib.suppress(Exception):
            connection.close()
