"""The original pipeline's collector, done with heartwatch: take items off RabbitMQ, capture
each one, record it, then acknowledge it. Beats on every poll (item or not) from the consumer's
own loop; reports a ``poiid`` data event per item captured.

The record is idempotent (check and insert in one transaction): after a hang or a crash, the
item that was being worked on is redelivered (it was never acked), and must not be recorded
twice. Every delivery, first or repeated, is also logged, so a test can see redeliveries.
"""

import json
import os
import sqlite3
import time

import pika

from heartwatch import Heartbeat
from heartwatch.integrations.pika import poll

QUEUE = os.environ.get("QUEUE", "items")
RECORDS = os.environ.get("RECORDS", "records.sqlite")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
WORK_SECONDS = float(os.environ.get("WORK_SECONDS", "0.02"))


def open_records() -> sqlite3.Connection:
    db = sqlite3.connect(RECORDS, timeout=30, isolation_level=None)
    db.execute("pragma journal_mode=wal")
    db.execute("create table if not exists records (item integer, pid integer, at real)")
    db.execute("create table if not exists deliveries (item integer, pid integer, redelivered int)")
    return db


def record_once(db: sqlite3.Connection, item: int) -> bool:
    """Record ``item`` unless it already is; True if this call recorded it."""
    db.execute("begin immediate")
    try:
        if db.execute("select 1 from records where item = ?", (item,)).fetchone():
            db.execute("commit")
            return False
        db.execute("insert into records values (?, ?, ?)", (item, os.getpid(), time.time()))
        db.execute("commit")
        return True
    except BaseException:
        db.execute("rollback")
        raise


def main() -> None:
    heartbeat = Heartbeat()  # HEARTWATCH_ADDR and HEARTWATCH_SERVICE come from the supervisor
    db = open_records()
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.queue_declare(QUEUE, durable=True)
    print(f"collector {os.getpid()}: consuming {QUEUE!r}", flush=True)
    heartbeat.ready()
    for delivery in poll(channel, QUEUE, heartbeat, idle_wait=0.2):
        item = json.loads(delivery.body)["id"]
        db.execute(
            "insert into deliveries values (?, ?, ?)", (item, os.getpid(), delivery.redelivered)
        )
        time.sleep(WORK_SECONDS)  # the capture itself
        if record_once(db, item):
            heartbeat.event("poiid", {"id": item})
        delivery.ack()


if __name__ == "__main__":
    main()
