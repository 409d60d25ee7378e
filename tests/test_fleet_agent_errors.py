"""The fleet agent's words for a broker it cannot use: plain, without the password, no
traceback for what a broker is expected to do (no broker needed: closed and hanging ports)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

import aio_pika
import aiormq

from heartwatch.daemon.fleet_agent import SessionEnded, _describe


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def connect_error(url: str) -> BaseException:
    async def attempt() -> BaseException:
        try:
            connection = await aio_pika.connect(url, timeout=5)
        except Exception as error:
            return error
        await connection.close()
        raise AssertionError("connected")

    return asyncio.run(attempt())


def test_a_refused_connection_is_said_plainly() -> None:
    error = connect_error(f"amqp://guest:hunter2@127.0.0.1:{closed_port()}/%2F")
    problem, expected = _describe(error)
    assert (problem, expected) == ("broker unreachable (connection refused)", True)


def test_a_port_that_hangs_up_is_not_a_broker_answering() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        problem, expected = _describe(connect_error(f"amqp://guest:hunter2@127.0.0.1:{port}/"))
    finally:
        listener.close()
    assert expected
    assert problem.startswith(
        ("the connection was closed before", "broker unreachable (connection reset")
    )
    assert "hunter2" not in problem


def test_a_lost_session_is_said_without_a_traceback() -> None:
    assert _describe(SessionEnded("connection closed")) == ("connection to the broker lost", True)


def test_a_broker_closing_the_connection_says_its_code_and_words() -> None:
    """What a stopping broker (or an operator's close_connection) sends, as aiormq raises it."""
    closed = aiormq.exceptions.ConnectionClosed(320, "CONNECTION_FORCED - broker shutdown")
    assert _describe(closed) == (
        "the broker closed the connection (320 CONNECTION_FORCED - broker shutdown)",
        True,
    )
