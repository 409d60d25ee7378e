"""The queue watch against real sockets and a real broker: one log line per change of state,
in plain words, never a password, never a traceback.

The broker cases need RabbitMQ at 127.0.0.1:5672 (guest/guest); without it they skip, saying
why, except under ``CI=true``, where a missing broker fails the run. The closed-port case
needs nothing.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.daemon_logging import Configure, daemon_log
from e2e.support import scaled
from heartwatch.config import QueueConfig
from heartwatch.daemon.queue_watch import QueueWatcher

pika = pytest.importorskip("pika")

pytestmark = pytest.mark.e2e

__all__ = ["daemon_log"]  # the fixture, used by name

BROKER = "127.0.0.1:5672"
GOOD_URL = f"amqp://guest:guest@{BROKER}/%2F"


@pytest.fixture
def broker(rabbitmq: str) -> str:
    """The broker's URL (tests/fleet_services.py: skip or, under CI, fail without it), held
    shared for the test so a broker outage test elsewhere waits for it."""
    return rabbitmq


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Recorder:
    """What a watcher reported, in order: ``("depth", 3)`` or ``("problem", "no such queue")``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def depth(self, service: str, depth: int) -> None:
        self.events.append(("depth", depth))

    def problem(self, service: str, problem: str) -> None:
        self.events.append(("problem", problem))

    def count(self, event: tuple[str, object]) -> int:
        return self.events.count(event)


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {scaled(timeout):g} s waiting for {what}")
        await asyncio.sleep(0.02)


def queue(url: str, name: str, interval: float = 0.05) -> QueueConfig:
    return QueueConfig.model_validate({"url": url, "name": name, "check_interval": interval})


def problem_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "cannot read queue" in line]


def test_a_closed_port_is_logged_once_in_plain_words(daemon_log: Configure) -> None:
    log = daemon_log()
    seen = Recorder()
    watcher = QueueWatcher(
        "collector",
        queue(f"amqp://guest:secretpw@127.0.0.1:{closed_port()}/%2F", "items"),
        seen.depth,
        seen.problem,
    )
    refused = ("problem", "broker unreachable (connection refused)")

    async def scenario() -> None:
        task = asyncio.create_task(watcher.run())
        try:
            await wait_for(lambda: seen.count(refused) >= 20, "20 failed readings")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert set(seen.events) == {refused}  # the status says it in the same words, no password
    text = log.read_text()
    lines = problem_lines(log)
    assert len(lines) == 1, lines
    assert "collector: cannot read queue 'items' at amqp://guest:***@127.0.0.1:" in lines[0]
    assert "broker unreachable (connection refused); retrying every 0.05 s" in lines[0]
    assert "secretpw" not in text
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1  # and nothing from pika


def test_a_bug_in_the_reading_is_logged_once_with_its_traceback(daemon_log: Configure) -> None:
    """Not a broker's failure but heartwatch's own: a traceback (to find it), once, no values."""
    log = daemon_log()
    seen = Recorder()
    watcher = QueueWatcher(
        "collector", queue("amqp://guest:secretpw@127.0.0.1:1/", "items"), seen.depth, seen.problem
    )
    readings = iter(range(10))

    def read_depth() -> int:
        secret = "amqp://guest:secretpw@127.0.0.1:1/"
        if next(readings) < 8:
            raise RuntimeError(f"a bug while reading {secret}")
        return 7

    watcher._read_depth = read_depth  # type: ignore[method-assign]

    async def scenario() -> None:
        task = asyncio.create_task(watcher.run())
        try:
            await wait_for(lambda: seen.count(("depth", 7)) >= 1, "a reading after the bug")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    text = log.read_text()
    assert (
        seen.count(("problem", "RuntimeError: a bug while reading amqp://guest:***@127.0.0.1:1/"))
        == 8
    )
    assert text.count("Traceback (most recent call last)") == 1
    assert len(problem_lines(log)) == 1
    assert "in read_depth" in text
    assert "secretpw" not in text
    assert "collector: queue 'items' readable again (depth 7)" in text


def test_each_change_of_state_is_logged_once(daemon_log: Configure, broker: str) -> None:
    """refused -> wrong password -> no such queue -> readable: four lines, whatever the polls."""
    log = daemon_log()
    seen = Recorder()
    name = f"heartwatch-test-{uuid.uuid4().hex[:12]}"
    watcher = QueueWatcher(
        "collector",
        queue(f"amqp://guest:secretpw@127.0.0.1:{closed_port()}/%2F", name),
        seen.depth,
        seen.problem,
    )
    refused = ("problem", "broker unreachable (connection refused)")
    wrong = ("problem", "wrong credentials (ACCESS_REFUSED)")
    missing = ("problem", "no such queue")

    async def scenario() -> None:
        task = asyncio.create_task(watcher.run())
        try:
            await wait_for(lambda: seen.count(refused) >= 5, "readings refused")
            watcher.config = queue(f"amqp://guest:wrongpw@{BROKER}/%2F", name)
            await wait_for(lambda: seen.count(wrong) >= 5, "readings with a wrong password")
            watcher.config = queue(broker, name)
            await wait_for(lambda: seen.count(missing) >= 5, "readings of a missing queue")
            declare(broker, name)
            await wait_for(lambda: seen.count(("depth", 0)) >= 5, "readings of the queue")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        delete(broker, name)
    text = log.read_text()
    lines = problem_lines(log)
    assert [line.rpartition(": ")[2].partition(";")[0] for line in lines] == [
        "broker unreachable (connection refused)",
        "wrong credentials (ACCESS_REFUSED)",
        "no such queue",
    ], lines
    assert text.count(f"collector: queue {name!r} readable again (depth 0)") == 1
    assert len(text.splitlines()) == 4, text
    for secret in ("secretpw", "wrongpw", "guest:guest"):
        assert secret not in text
    assert "Traceback" not in text


def declare(url: str, name: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_declare(name)
    finally:
        connection.close()


def delete(url: str, name: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_delete(name)
    finally:
        connection.close()
