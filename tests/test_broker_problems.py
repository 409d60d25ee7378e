"""Why a queue reading failed, in plain words and without secrets (``describe_broker_error``),
for the exceptions pika raises, nested as pika nests them."""

from __future__ import annotations

import errno
import socket

import pytest

pika_exceptions = pytest.importorskip("pika.exceptions")
workflow = pytest.importorskip("pika.adapters.utils.connection_workflow")

from heartwatch.daemon.queue_watch import describe_broker_error  # noqa: E402

_AUTH_TEXT = (
    "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused using authentication "
    "mechanism PLAIN. For details see the broker logfile.'"
)


def _connect_error(cause: BaseException) -> BaseException:
    """As ``BlockingConnection`` raises a failed TCP connect."""
    return pika_exceptions.AMQPConnectionError(workflow.AMQPConnectorSocketConnectError(cause))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            _connect_error(ConnectionRefusedError(111, "Connection refused")),
            "broker unreachable (connection refused)",
        ),
        (
            socket.gaierror(-2, "Name or service not known"),
            "broker unreachable (host name not found)",
        ),
        (_connect_error(TimeoutError("timed out")), "broker unreachable (timed out)"),
        (
            workflow.AMQPConnectorStackTimeout("Timeout during AMQP handshake"),
            "broker unreachable (timed out)",
        ),
        (
            _connect_error(OSError(errno.EHOSTUNREACH, "No route to host")),
            "broker unreachable (no route to host)",
        ),
        (
            pika_exceptions.ProbableAuthenticationError(_AUTH_TEXT),
            "wrong credentials (ACCESS_REFUSED)",
        ),
        (
            pika_exceptions.ProbableAccessDeniedError(
                "ConnectionClosedByBroker: (530) 'NOT_ALLOWED - vhost x not found'"
            ),
            "virtual host refused (NOT_ALLOWED - vhost x not found)",
        ),
        (
            pika_exceptions.ChannelClosedByBroker(404, "NOT_FOUND - no queue 'items' in vhost '/'"),
            "no such queue",
        ),
        (
            pika_exceptions.ChannelClosedByBroker(
                403, "ACCESS_REFUSED - access to queue 'items' refused"
            ),
            "access to the queue refused (ACCESS_REFUSED - access to queue 'items' refused)",
        ),
        (
            pika_exceptions.ConnectionClosedByBroker(320, "CONNECTION_FORCED - shutdown"),
            "the broker closed the connection (320 CONNECTION_FORCED - shutdown)",
        ),
        (
            pika_exceptions.IncompatibleProtocolError(
                "StreamLostError: ('Transport indicated EOF',)"
            ),
            "not an AMQP broker at that address (incompatible protocol)",
        ),
        (
            pika_exceptions.StreamLostError("Transport indicated EOF"),
            "connection to the broker lost",
        ),
        (pika_exceptions.AMQPHeartbeatTimeout("no heartbeat"), "connection to the broker lost"),
        (pika_exceptions.AMQPConnectionError(), "broker unreachable"),
    ],
)
def test_expected_failures_in_plain_words(error: BaseException, expected: str) -> None:
    assert describe_broker_error(error) == (expected, True)


def test_a_workflow_failure_is_read_from_its_last_attempt() -> None:
    attempts = [
        workflow.AMQPConnectorSocketConnectError(TimeoutError("timed out")),
        workflow.AMQPConnectorSocketConnectError(ConnectionRefusedError(111, "refused")),
    ]
    error = pika_exceptions.AMQPConnectionError(workflow.AMQPConnectionWorkflowFailed(attempts))
    assert describe_broker_error(error)[0].startswith("broker unreachable (")


def test_a_bad_url_is_described_without_its_password() -> None:
    error = ValueError("cannot use amqp://guest:secretpw@host:notaport/")
    problem, expected = describe_broker_error(error)
    assert problem == "bad queue URL (cannot use amqp://guest:***@host:notaport/)"
    assert expected


def test_an_unexpected_error_is_flagged_and_redacted() -> None:
    problem, expected = describe_broker_error(RuntimeError("bug near amqp://u:secretpw@h/"))
    assert problem == "RuntimeError: bug near amqp://u:***@h/"
    assert not expected  # logged with a traceback, once
