"""The shared service fixtures themselves (tests/fleet_services.py) do what they promise."""

from __future__ import annotations

import fcntl
import threading
import time
import uuid
from pathlib import Path

import pika
import psycopg
import pytest

from e2e.support import wait_until
from fleet_services import BROKER_LOCK, BrokerLock, delete_broker_names, new_database

pytestmark = pytest.mark.e2e


def test_a_broker_test_holds_the_lock_shared(rabbitmq: str) -> None:
    with open(BROKER_LOCK, "ab") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: granted
        with pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # exclusive: refused


def test_a_test_waiting_to_stop_the_broker_is_not_starved_by_new_shared_holders(
    tmp_path: Path,
) -> None:
    path = tmp_path / "broker.lock"
    order: list[str] = []
    first = BrokerLock(path)
    first.hold(exclusive=False)
    stopper, later = BrokerLock(path), BrokerLock(path)

    def stop_the_broker() -> None:
        stopper.hold(exclusive=True, wait=10)
        order.append("exclusive")
        time.sleep(0.2)
        stopper.release()

    def share_it() -> None:
        later.hold(exclusive=False, wait=10)
        order.append("shared")
        later.release()

    threads = [threading.Thread(target=stop_the_broker), threading.Thread(target=share_it)]
    threads[0].start()
    wait_until(lambda: stopper._files and not order, "the exclusive taker at the gate", 5)
    time.sleep(0.3)  # it holds the gate and waits for the first shared holder
    threads[1].start()
    time.sleep(0.3)
    assert order == []  # the new shared taker waits behind the exclusive one
    first.release()
    for thread in threads:
        thread.join(15)
    assert order == ["exclusive", "shared"]


def test_the_exchange_and_its_queues_are_deleted(rabbitmq: str) -> None:
    unique_exchange = f"hwtest.{uuid.uuid4().hex}"
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq))
    channel = connection.channel()
    channel.exchange_declare(unique_exchange, "topic", durable=True)
    channel.exchange_declare(f"{unique_exchange}.expired", "fanout", durable=True)
    for queue in (f"{unique_exchange}.hub", f"{unique_exchange}.commands.host-a"):
        channel.queue_declare(queue, durable=True)
    connection.close()
    delete_broker_names(rabbitmq, unique_exchange)
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq))
    try:
        for name in (f"{unique_exchange}.hub", f"{unique_exchange}.commands.host-a"):
            with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
                connection.channel().queue_declare(name, passive=True)
        for name in (unique_exchange, f"{unique_exchange}.expired"):
            with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
                connection.channel().exchange_declare(name, passive=True)
    finally:
        connection.close()


def test_a_fresh_database_is_empty_and_its_own(postgres: str, fresh_database: str) -> None:
    assert fresh_database != postgres
    with psycopg.connect(fresh_database) as connection:
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)


def test_a_database_is_dropped_after_its_block(postgres_server: str) -> None:
    with new_database(postgres_server, prefix=f"heartwatch_test_{uuid.uuid4().hex[:4]}_") as url:
        name = url.rpartition("/")[2]
        psycopg.connect(url).close()
    with psycopg.connect(postgres_server) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        assert found.fetchone() is None
