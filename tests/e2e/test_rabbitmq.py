"""The original pipeline against a real RabbitMQ broker: no item lost, none recorded twice.

Needs the broker at 127.0.0.1:5672 (guest/guest). Without it these tests skip, saying why,
except under ``CI=true``, where a missing broker fails the run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.support import Pipeline, duration, wait_until

pika = pytest.importorskip("pika")

pytestmark = pytest.mark.e2e

AMQP_URL = os.environ.get("HEARTWATCH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
EXAMPLE = Path(__file__).parents[2] / "examples" / "rabbitmq"
ITEMS = 200


@pytest.fixture
def broker(rabbitmq: str) -> str:
    """The broker's URL (tests/fleet_services.py: skip or, under CI, fail without it), held
    shared for the test so a broker outage test elsewhere waits for it."""
    return rabbitmq


@pytest.fixture
def queue(broker: str) -> Iterator[str]:
    """A fresh, durable queue, deleted afterwards."""
    name = f"heartwatch-test-{uuid.uuid4().hex[:12]}"
    connection = pika.BlockingConnection(pika.URLParameters(broker))
    connection.channel().queue_declare(name, durable=True)
    try:
        yield name
    finally:
        connection.channel().queue_delete(name)
        connection.close()


def publish(url: str, queue: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for item in range(count):
        channel.basic_publish("", queue, json.dumps({"id": item}).encode())
    connection.close()


def queue_depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def example_pipeline(pipeline: Pipeline, queue: str, **collector: object) -> Path:
    """The example's collector and emulator, copied into the test folder and configured."""
    for script in ("collector.py", "emulator.py"):
        shutil.copy(EXAMPLE / script, pipeline.folder / script)
    records = pipeline.folder / "records.sqlite"
    pipeline.write_config(
        [
            {"name": "emulator", "command": [sys.executable, "emulator.py"], "ready": "0.3s"},
            {
                "name": "collector",
                "command": [sys.executable, "collector.py"],
                "requires": ["emulator"],
                "heartbeat_timeout": duration(1.0),
                "startup_grace": duration(10),
                "restart": "group",
                "stop_timeout": duration(2),
                "env": {
                    "QUEUE": queue,
                    "RECORDS": str(records),
                    "AMQP_URL": AMQP_URL,
                    "WORK_SECONDS": "0.01",
                },
                **collector,
            },
        ],
        server={"default_service": "collector"},
    )
    return records


def recorded(records: Path) -> tuple[int, int, int]:
    """(rows recorded, distinct items recorded, deliveries seen) so far."""
    if not records.exists():
        return 0, 0, 0
    db = sqlite3.connect(records, timeout=30)
    try:
        rows, distinct = db.execute("select count(*), count(distinct item) from records").fetchone()
        deliveries = db.execute("select count(*) from deliveries").fetchone()[0]
    except sqlite3.OperationalError:  # the collector has not created its tables yet
        return 0, 0, 0
    finally:
        db.close()
    return int(rows), int(distinct), int(deliveries)


def test_frozen_collector_recovered_with_no_item_lost_or_recorded_twice(
    pipeline: Pipeline, queue: str
) -> None:
    """200 items; the collector is frozen mid-way; the group restarts; all 200 recorded once."""
    records = example_pipeline(pipeline, queue)
    daemon = pipeline.start_daemon()
    first = daemon.wait_running("collector")
    emulator_pid = daemon.service("emulator")["pid"]
    publish(AMQP_URL, queue, ITEMS)
    wait_until(lambda: recorded(records)[1] >= 50, "50 items recorded", 30)
    os.kill(first["pid"], signal.SIGSTOP)
    daemon.wait_service(
        "collector",
        lambda s: s["pid"] not in (None, first["pid"]) and s["state"] == "running",
        "a new collector running",
        30,
    )
    assert daemon.service("emulator")["pid"] != emulator_pid  # recovered as a group
    wait_until(lambda: recorded(records)[1] == ITEMS, f"all {ITEMS} items recorded", 60)
    rows, distinct, deliveries = recorded(records)
    assert (rows, distinct) == (ITEMS, ITEMS)
    assert deliveries >= ITEMS
    print(f"deliveries: {deliveries} for {ITEMS} items")  # > ITEMS: the frozen item came again
    wait_until(lambda: queue_depth(AMQP_URL, queue) == 0, "the queue drained", 15)
    assert "no heartbeat for" in daemon.log_text()


def test_queue_stall_detected_while_collector_still_beats(pipeline: Pipeline, queue: str) -> None:
    """A consumer that beats but takes nothing from a full queue is unresponsive and restarted."""
    pipeline.write_config(
        [
            {
                "name": "idler",
                "command": [
                    sys.executable,
                    "-c",
                    "from heartwatch import Heartbeat; import time\n"
                    "hb = Heartbeat()\n"
                    "while True: hb.beat(); time.sleep(0.1)",
                ],
                "heartbeat_timeout": duration(2),
                "queue": {
                    "url": AMQP_URL,
                    "name": queue,
                    "stalled_after": duration(1.0),
                    "check_interval": duration(0.2),
                },
            }
        ]
    )
    publish(AMQP_URL, queue, 5)
    daemon = pipeline.start_daemon()
    first = daemon.wait_running("idler")
    daemon.wait_service("idler", lambda s: s["restarts"] >= 1, "restarted for the stall", 20)
    assert "queue not going down for" in daemon.log_text()
    status = daemon.service("idler")
    assert status["queue"]["depth"] == 5
    assert status["pid"] != first["pid"]


def test_broker_down_is_reported_not_held_against_the_consumer(pipeline: Pipeline) -> None:
    """An unreachable broker shows as a queue problem; the beating service stays running."""
    pipeline.write_config(
        [
            {
                "name": "consumer",
                "command": [
                    sys.executable,
                    "-c",
                    "from heartwatch import Heartbeat; import time\n"
                    "hb = Heartbeat()\n"
                    "while True: hb.beat(); time.sleep(0.1)",
                ],
                "heartbeat_timeout": duration(2),
                "queue": {
                    "url": "amqp://guest:guest@127.0.0.1:1/%2F",
                    "name": "anything",
                    "stalled_after": duration(0.5),
                    "check_interval": duration(0.2),
                },
            }
        ]
    )
    daemon = pipeline.start_daemon()
    daemon.wait_running("consumer")
    status = daemon.wait_service(
        "consumer",
        lambda s: bool(s["queue"] and s["queue"]["broker_problem"]),
        "a broker problem reported",
        15,
    )
    assert "broker unreachable" in status["queue"]["broker_problem"]
    wait_until(lambda: "cannot read queue" in daemon.log_text(), "the problem logged", 10)
    assert daemon.service("consumer")["restarts"] == 0
    assert daemon.service("consumer")["state"] == "running"
