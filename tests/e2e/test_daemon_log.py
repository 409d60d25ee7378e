"""The daemon's own log: no variable values in tracebacks, no credentials, rotation by size.

``configure_logging`` is run in this process (a real file, real loguru sinks), and undone after
each test; the last test runs a real daemon whose queue's broker is down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
import time

import pytest
from loguru import logger

from e2e.daemon_logging import Configure, daemon_log
from e2e.support import Pipeline, duration, wait_until
from heartwatch.config import ConfigError, parse_config

pytestmark = pytest.mark.e2e

__all__ = ["daemon_log"]  # the fixture, used by name


def _fails_with_a_secret_in_a_local() -> None:
    password = "hunter2-local-secret"  # a value loguru's diagnose would print
    len(password) / 0


def test_a_traceback_carries_no_variable_values(daemon_log: Configure) -> None:
    path = daemon_log()
    try:
        _fails_with_a_secret_in_a_local()
    except ZeroDivisionError:
        logger.exception("something failed")
    text = path.read_text()
    assert "something failed" in text
    assert "Traceback (most recent call last)" in text  # heartwatch's own errors: traceback
    assert "ZeroDivisionError" in text
    assert "_fails_with_a_secret_in_a_local" in text
    assert "hunter2-local-secret" not in text
    assert "│" not in text and "└" not in text  # loguru's value annotations


def test_credentials_in_messages_and_exceptions_are_redacted(daemon_log: Configure) -> None:
    path = daemon_log()
    logger.info("connecting to {}", "amqp://guest:msgsecret@127.0.0.1:5672/%2F")
    try:
        raise ConnectionError("cannot reach https://user:excsecret@example.com/x?token=toksecret")
    except ConnectionError:
        logger.exception("delivery failed")
    logging.getLogger("somelibrary").error("retrying postgresql://app:libsecret@db/items")
    text = path.read_text()
    for secret in ("msgsecret", "excsecret", "toksecret", "libsecret"):
        assert secret not in text
    assert "amqp://guest:***@127.0.0.1:5672/%2F" in text
    assert "https://user:***@example.com/x?token=***" in text
    assert "postgresql://app:***@db/items" in text


def test_log_text_is_never_markup_nor_a_format(daemon_log: Configure) -> None:
    path = daemon_log()
    logger.info("a line with {} in it", "<red>{0} {message}</red>")
    try:
        raise ValueError("<b>{record}</b>")
    except ValueError:
        logger.exception("<i>failed</i>")
    text = path.read_text()
    assert "<red>{0} {message}</red>" in text
    assert "ValueError: <b>{record}</b>" in text


def test_a_librarys_expected_failure_is_one_line(daemon_log: Configure) -> None:
    """A library's warning that carries an exception: its reason on the line, no traceback.
    Its errors keep their traceback (uvicorn's "Exception in ASGI application" is heartwatch's
    own code failing), still without values."""
    path = daemon_log()
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        logging.getLogger("somelibrary").warning("peer went away", exc_info=True)
    text = path.read_text()
    assert "peer went away: ConnectionResetError: [Errno 104] Connection reset by peer" in text
    assert "Traceback" not in text
    try:
        _fails_with_a_secret_in_a_local()
    except ZeroDivisionError:
        logging.getLogger("uvicorn.error").error("Exception in ASGI application", exc_info=True)
    text = path.read_text()
    assert text.count("Traceback (most recent call last)") == 1
    assert "hunter2-local-secret" not in text


def test_pika_is_kept_quiet(daemon_log: Configure) -> None:
    path = daemon_log()
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError:
        logging.getLogger("pika.adapters.utils.connection_workflow").error(
            "AMQPConnector - reporting failure", exc_info=True
        )
    logging.getLogger("pika.adapters.blocking_connection").error("Error in _create_connection().")
    assert "AMQPConnector" not in path.read_text()
    assert "_create_connection" not in path.read_text()


# -- rotation --------------------------------------------------------------------------------


def test_default_rotation_is_weekly_or_at_50_mb() -> None:
    assert parse_config({}).daemon.log_rotation == ["1 week", "50 MB"]


def test_size_rotation_from_a_list(daemon_log: Configure) -> None:
    path = daemon_log(log_rotation=["1 week", "2 KB"])
    for index in range(100):  # ~10 KB
        logger.info("line {} {}", index, "x" * 60)
    rotated = [p for p in path.parent.iterdir() if p != path]
    assert rotated, f"no rotated file beside {path.name}: {list(path.parent.iterdir())}"
    assert all(p.name.startswith("heartwatch.") and p.suffix == ".log" for p in rotated)
    for file in [path, *rotated]:
        assert file.stat().st_size <= 2048 + 200  # a file never outgrows the limit by a line
    lines = "".join(p.read_text() for p in [path, *rotated])
    assert all(f"line {index} " in lines for index in range(100))  # nothing lost on the way


def test_time_rotation_in_a_list_still_applies(daemon_log: Configure) -> None:
    path = daemon_log(log_rotation=["50 MB", "1 second"])
    logger.info("first")
    time.sleep(1.5)  # past the one-second limit (a lower bound, not a timed assertion)
    logger.info("second")
    rotated = [p for p in path.parent.iterdir() if p != path]
    assert len(rotated) == 1
    assert "first" in rotated[0].read_text()
    assert "second" in path.read_text() and "first" not in path.read_text()


def test_a_single_size_rotation_still_works(daemon_log: Configure) -> None:
    path = daemon_log(log_rotation="1 KB")
    for index in range(40):
        logger.info("line {} {}", index, "y" * 60)
    assert len(list(path.parent.iterdir())) > 1


@pytest.mark.parametrize(
    ("rotation", "key"),
    [
        ("fifty", "daemon.log_rotation"),
        (["1 week", "fifty"], "daemon.log_rotation[1]"),
        ([], "daemon.log_rotation"),
        (5, "daemon.log_rotation"),
    ],
)
def test_a_bad_rotation_names_its_key(daemon_log: Configure, rotation: object, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        daemon_log(log_rotation=rotation)
    paths = [problem.path for problem in caught.value.problems]
    assert paths == [key], caught.value.problems


def test_a_bad_retention_names_its_key(daemon_log: Configure) -> None:
    with pytest.raises(ConfigError) as caught:
        daemon_log(log_retention="forever")
    assert [problem.path for problem in caught.value.problems] == ["daemon.log_retention"]


# -- a daemon whose broker is down -----------------------------------------------------------


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class CountingBroker:
    """A port that accepts and hangs up at once, counting the daemon's attempts: a pace.

    A refused connection leaves no trace the test can count; a second watcher, with the same
    interval, pointed here, does. When it has tried N times, the daemon's queue watchers have
    had about N turns each.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.attempts = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed by close()
            while True:
                connection, _ = self.listener.accept()
                connection.close()
                self.attempts += 1

    def close(self) -> None:
        self.listener.close()


def test_daemon_reports_a_down_broker_once_without_its_password(pipeline: Pipeline) -> None:
    url = f"amqp://guest:secretpw@127.0.0.1:{closed_port()}/%2F"
    pace = CountingBroker()
    beating = [
        sys.executable,
        "-c",
        "from heartwatch import Heartbeat; import time\n"
        "hb = Heartbeat()\n"
        "while True: hb.beat(); time.sleep(0.1)",
    ]
    pipeline.write_config(
        [
            {
                "name": "consumer",
                "command": beating,
                "heartbeat_timeout": duration(5),
                "queue": {"url": url, "name": "items", "check_interval": "0.1s"},
            },
            {
                "name": "pacer",
                "command": beating,
                "heartbeat_timeout": duration(5),
                "queue": {
                    "url": f"amqp://127.0.0.1:{pace.port}/%2F",
                    "name": "items",
                    "check_interval": "0.1s",
                },
            },
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
    assert status["queue"]["broker_problem"] == "broker unreachable (connection refused)"
    # About 20 more failed readings, counted on the pacer's port (not slept for).
    seen = pace.attempts
    wait_until(lambda: pace.attempts >= seen + 20, "20 more queue readings", timeout=30)
    pace.close()
    text = daemon.log_text()
    problem_lines = [line for line in text.splitlines() if "consumer: cannot read queue" in line]
    assert len(problem_lines) == 1, problem_lines
    assert "broker unreachable (connection refused)" in problem_lines[0]
    assert "amqp://guest:***@127.0.0.1:" in problem_lines[0]
    assert "secretpw" not in text
    assert "Traceback" not in text
    assert "secretpw" not in json.dumps(daemon.services())
    assert "secretpw" not in daemon.stderr_text()
    wait_until(lambda: daemon.service("consumer")["state"] == "running", "still running", 5)
