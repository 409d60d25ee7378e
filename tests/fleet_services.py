"""The real services the fleet tests need: RabbitMQ and PostgreSQL, shared safely between tests.

Registered as a pytest plugin by tests/conftest.py, so every test (and every xdist worker) can
ask for:

- ``rabbitmq``: the broker's AMQP URL. The test holds a SHARED lock on
  ``/tmp/heartwatch-tests-broker.lock`` while it runs, so a test that stops the broker waits
  for it, and it for that one.
- ``broker_outage``: a context manager factory, ``with broker_outage():`` stops the broker
  (``rabbitmqctl stop_app``) and starts it again at the end, whatever happened, then waits
  until 5672 answers AMQP again. A test that asks for it holds the lock EXCLUSIVELY for its
  whole run: no other broker test (in any worker) runs meanwhile.
- ``postgres``: the URL of a database made for this test run (one per xdist worker), dropped
  at the end. ``fresh_database``: the URL of a new empty database for one test, dropped after.
- ``unique_exchange``: ``hwtest.<hex>``; at teardown the exchanges and queues whose names start
  with it are deleted.

Without the service, a test that needs it skips and says why; under ``CI=true`` it fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

AMQP_URL = os.environ.get("HEARTWATCH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
POSTGRES_URL = os.environ.get(
    "HEARTWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BROKER_LOCK = Path("/tmp/heartwatch-tests-broker.lock")
LOCK_WAIT = 600.0  # seconds: a broker outage test takes about a minute; four in a row at most
BROKER_START_WAIT = 90.0  # seconds for a started broker to answer AMQP again
RABBITMQCTL_TIMEOUT = 120.0

# What an AMQP 0-9-1 client sends first; the broker answers with a Connection.Start frame.
_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def missing(reason: str) -> NoReturn:
    """Skip the test for a missing service, or fail it under CI=true (CI must have them all)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true requires it)", pytrace=False)
    pytest.skip(reason)


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def amqp_answers(url: str = AMQP_URL, timeout: float = 2.0) -> str | None:
    """None if the broker answers the AMQP protocol header with Connection.Start, else why not.

    A bare TCP connect is not enough: a stopped RabbitMQ app (stop_app) may still hold the
    port for a moment, and a starting one accepts before it can speak.
    """
    host, port = _host_port(url, 5672)
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            connection.sendall(_AMQP_HEADER)
            frame = connection.recv(11)
    except OSError as error:
        return f"no RabbitMQ broker at {host}:{port}: {type(error).__name__} {error}"
    # frame type 1 (method), channel 0, then size (4 bytes), class 10 method 10: Connection.Start
    if len(frame) >= 11 and frame[0] == 1 and frame[7:11] == b"\x00\x0a\x00\x0a":
        return None
    return f"{host}:{port} does not answer AMQP 0-9-1 (got {frame[:16]!r})"


def wait_for_amqp(url: str = AMQP_URL, timeout: float = BROKER_START_WAIT) -> None:
    """Return once the broker speaks AMQP again; raise (saying the last reason) after timeout."""
    deadline = time.monotonic() + timeout
    while (problem := amqp_answers(url)) is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the broker did not come back within {timeout:g} s: {problem}")
        time.sleep(0.2)


class BrokerLock:
    """One test's hold on the broker: shared, or exclusive while it stops the broker.

    Two lock files, so that a test waiting to stop the broker is not starved by the shared
    holders that keep coming (xdist workers start broker tests back to back): a shared taker
    passes through the *gate* (shared, released at once) to the *lock*; an exclusive taker
    holds the gate exclusively while it waits for the lock, so no new shared holder gets in.
    """

    def __init__(self, path: Path = BROKER_LOCK) -> None:
        self.path = path
        self.gate_path = path.with_name(path.name + ".gate")
        self._files: list[IO[bytes]] = []

    def hold(self, exclusive: bool, wait: float = LOCK_WAIT) -> None:
        """Take the lock (bounded wait: a test that never gets it fails, saying so)."""
        deadline = time.monotonic() + wait
        gate = open(self.gate_path, "ab")  # noqa: SIM115 - held until release() or below
        lock = open(self.path, "ab")  # noqa: SIM115 - held until release()
        self._files = [gate, lock]
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        self._flock(gate, mode, deadline, wait)
        self._flock(lock, mode, deadline, wait)
        if not exclusive:
            fcntl.flock(gate.fileno(), fcntl.LOCK_UN)  # through the gate: let the next one in

    def _flock(self, file: IO[bytes], mode: int, deadline: float, wait: float) -> None:
        while True:
            try:
                fcntl.flock(file.fileno(), mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    kind = "exclusive" if mode == fcntl.LOCK_EX else "shared"
                    self.release()
                    raise AssertionError(
                        f"no {kind} hold on {self.path} within {wait:g} s (another test keeps it)"
                    ) from None
                time.sleep(0.1)

    def release(self) -> None:
        for file in self._files:
            fcntl.flock(file.fileno(), fcntl.LOCK_UN)
            file.close()
        self._files = []


@pytest.fixture
def rabbitmq(request: pytest.FixtureRequest) -> Iterator[str]:
    """The broker's AMQP URL, held (shared; exclusive if the test also stops it) for the test."""
    lock = BrokerLock()
    lock.hold(exclusive="broker_outage" in request.fixturenames)
    try:
        # Checked under the lock: a broker another test stopped is back by the time we hold it.
        if (problem := amqp_answers()) is not None:
            missing(problem)
        yield AMQP_URL
    finally:
        lock.release()


def rabbitmqctl(*args: str) -> str:
    """Run rabbitmqctl; its output, or an AssertionError quoting what it said."""
    done = subprocess.run(
        ["rabbitmqctl", *args],
        capture_output=True,
        text=True,
        timeout=RABBITMQCTL_TIMEOUT,
        check=False,
    )
    if done.returncode:
        said = (done.stderr or done.stdout).strip()
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): {said}")
    return done.stdout


@pytest.fixture
def broker_outage(rabbitmq: str) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """``with broker_outage():`` the broker is stopped inside the block, started after it.

    The test holds the broker lock exclusively (see ``rabbitmq``). The broker is started again
    whatever happens in the block, and the block's exit waits until it speaks AMQP again.
    """
    if shutil.which("rabbitmqctl") is None:
        missing("rabbitmqctl is not on PATH: cannot stop and start the broker")

    @contextlib.contextmanager
    def stopped() -> Iterator[None]:
        try:
            rabbitmqctl("stop_app")
            yield
        finally:
            rabbitmqctl("start_app")
            wait_for_amqp(rabbitmq)

    return stopped


def broker_names(exchange: str) -> tuple[list[str], list[str]]:
    """The queues and exchanges whose names start with ``exchange`` (as rabbitmqctl lists them)."""
    options = ["--quiet", "--no-table-headers"]
    queues = rabbitmqctl("list_queues", *options, "name").split()
    exchanges = rabbitmqctl("list_exchanges", *options, "name").split()
    return (
        [name for name in queues if name.startswith(exchange)],
        [name for name in exchanges if name.startswith(exchange)],
    )


def delete_broker_names(url: str, exchange: str, known_queues: list[str] | None = None) -> None:
    """Delete the queues named after ``exchange`` (listed by rabbitmqctl, once: it takes a
    second or two to start) and the exchanges the fleet declares under it (by pika)."""
    import pika  # the dev extra has it; imported here so the plugin loads without it

    queues = list(known_queues or [])
    if shutil.which("rabbitmqctl"):
        listed = rabbitmqctl("list_queues", "--quiet", "--no-table-headers", "name").split()
        queues += [name for name in listed if name.startswith(exchange)]
    # The fleet's exchanges (core/fleetwire): the topic exchange and the expired commands'.
    exchanges = [exchange, f"{exchange}.expired"]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for name in sorted(set(queues)):
            channel = connection.channel()
            channel.queue_delete(name)
            channel.close()
        for name in exchanges:
            channel = connection.channel()
            channel.exchange_delete(name)
            channel.close()
    finally:
        connection.close()


@pytest.fixture
def unique_exchange(rabbitmq: str) -> Iterator[str]:
    """``hwtest.<hex>``; whatever was declared under that prefix is deleted at teardown."""
    name = f"hwtest.{uuid.uuid4().hex}"
    try:
        yield name
    finally:
        if amqp_answers(rabbitmq) is None:  # a test that failed while the broker was stopped
            delete_broker_names(rabbitmq, name)


# --- PostgreSQL ------------------------------------------------------------------------------


def database_url(base: str, name: str) -> str:
    """``base`` with its database replaced by ``name``."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The server's maintenance database URL, once it answered (skip/fail otherwise)."""
    try:
        import psycopg
    except ImportError as error:
        missing(f"psycopg is not installed: {error}")
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        host, port = _host_port(POSTGRES_URL, 5432)
        missing(f"no PostgreSQL at {host}:{port}: {type(error).__name__} {str(error).strip()}")
    return POSTGRES_URL


@contextlib.contextmanager
def new_database(server: str, prefix: str = "heartwatch_test_") -> Iterator[str]:
    """A new empty database on ``server`` for the block; dropped (connections ended) after."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True, connect_timeout=3) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(server, name)
    finally:
        with psycopg.connect(server, autocommit=True, connect_timeout=3) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def postgres(postgres_server: str) -> Iterator[str]:
    """The URL of a database made for this test run (per xdist worker), dropped at the end."""
    with new_database(postgres_server) as url:
        yield url


@pytest.fixture
def fresh_database(postgres_server: str) -> Iterator[str]:
    """The URL of a new empty database for this test only, dropped after it."""
    with new_database(postgres_server) as url:
        yield url
