"""Reads the depth of the queues services consume, for the queue-stall rule (``stall.py``).

A passive ``queue.declare`` over AMQP answers with the number of ready messages and needs no
management plugin. pika's ``BlockingConnection`` runs in a worker thread (one connection per
broker URL, kept open between readings), so a slow or unreachable broker never blocks the
event loop. A failed reading is reported as a broker problem, never as a stalled consumer.

A broker that stays down must not fill the log: the watcher logs one line when the reason
changes (unreachable, wrong credentials, no such queue, ...) and one when the queue is readable
again, in plain words and without the URL's password; pika's own loggers are kept quiet
(``logs.py``), since everything they would say is said here once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
from collections.abc import Callable, Iterator
from typing import Any

from loguru import logger

from heartwatch.config import QueueConfig
from heartwatch.core.redact import redact

DepthSink = Callable[[str, int], None]
ProblemSink = Callable[[str, str], None]


class QueueWatcher:
    """Polls one service's queue every ``config.interval`` seconds."""

    def __init__(
        self, service: str, config: QueueConfig, on_depth: DepthSink, on_problem: ProblemSink
    ) -> None:
        self.service = service
        self.config = config
        self._on_depth = on_depth
        self._on_problem = on_problem
        self._connection: Any = None
        self._channel: Any = None
        self._last_problem: str | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    depth = await loop.run_in_executor(None, self._read_depth)
                except Exception as error:  # pika raises many kinds; all mean "no reading"
                    self._close()
                    self._report_problem(error)
                else:
                    if self._last_problem is not None:
                        logger.info(
                            "{}: queue {!r} readable again (depth {})",
                            self.service,
                            self.config.name,
                            depth,
                        )
                        self._last_problem = None
                    self._on_depth(self.service, depth)
                await asyncio.sleep(self.config.interval)
        finally:
            await loop.run_in_executor(None, self._close)

    def _read_depth(self) -> int:
        import pika  # an optional dependency: only services that name a queue need it

        if self._channel is None or not self._channel.is_open:
            parameters = pika.URLParameters(self.config.url)
            parameters.connection_attempts = 1
            parameters.socket_timeout = 5
            parameters.blocked_connection_timeout = 5
            self._connection = pika.BlockingConnection(parameters)
            self._channel = self._connection.channel()
        frame = self._channel.queue_declare(self.config.name, passive=True)
        return int(frame.method.message_count)

    def _report_problem(self, error: Exception) -> None:
        problem, expected = describe_broker_error(error)
        self._on_problem(self.service, problem)
        if problem == self._last_problem:
            return
        self._last_problem = problem
        # An error none of the broker's expected ones: a traceback, once, to find the cause
        # (without variable values, see logs.py).
        logger.opt(exception=None if expected else error).warning(
            "{}: cannot read queue {!r} at {}: {}; retrying every {:g} s "
            "(not counted against the consumer)",
            self.service,
            self.config.name,
            redact(self.config.url),
            problem,
            self.config.interval,
        )

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


_REPLY = re.compile(r"\((\d+)\)\s*'?(.*?)'?\)?$")


def describe_broker_error(error: BaseException) -> tuple[str, bool]:
    """Why a reading failed, in plain words for the log and the status, without any secret;
    and whether it is one of the failures a broker is expected to have (no traceback then).

    pika wraps the cause: ``AMQPConnectionError(AMQPConnectorSocketConnectError(
    ConnectionRefusedError))``, a workflow failure holding several attempts, and so on; the
    reason is read from the innermost exception that says something.
    """
    chain = list(_causes(error))
    names = [{cls.__name__ for cls in type(cause).__mro__} for cause in chain]

    def first(name: str) -> BaseException | None:
        return next((c for c, n in zip(chain, names, strict=True) if name in n), None)

    if (closed := first("ChannelClosedByBroker")) is not None:
        code, text = _reply(closed)
        if code == 404:
            return "no such queue", True
        if code == 403:
            return f"access to the queue refused ({text})", True
        return f"the broker closed the channel ({code} {text})", True
    if (refused := first("ProbableAuthenticationError")) is not None:
        word = _reply(refused)[1].partition(" ")[0] or "ACCESS_REFUSED"
        return f"wrong credentials ({word})", True
    if first("AuthenticationError"):  # no mechanism in common with the broker
        return "authentication failed (no common mechanism)", True
    if (denied := first("ProbableAccessDeniedError")) is not None:
        return f"virtual host refused ({_reply(denied)[1]})", True
    if first("IncompatibleProtocolError"):
        return "not an AMQP broker at that address (incompatible protocol)", True
    if (closed := first("ConnectionClosedByBroker")) is not None:
        code, text = _reply(closed)
        return f"the broker closed the connection ({code} {text})", True
    if first("gaierror"):
        return "broker unreachable (host name not found)", True
    if first("TimeoutError") or first("AMQPConnectorStackTimeout"):  # socket.timeout too
        return "broker unreachable (timed out)", True
    if first("ConnectionRefusedError"):
        return "broker unreachable (connection refused)", True
    if (os_error := first("OSError")) is not None and isinstance(os_error, OSError):
        reason = errno.errorcode.get(os_error.errno or 0)
        words = (os_error.strerror or reason or type(os_error).__name__).lower()
        return f"broker unreachable ({words})", True
    if first("AMQPHeartbeatTimeout") or first("StreamLostError") or first("ConnectionClosed"):
        return "connection to the broker lost", True
    if first("AMQPConnectionError") or first("AMQPConnectorException"):
        return "broker unreachable", True
    if first("ValueError") and len(chain) == 1:  # pika.URLParameters refusing the URL
        return f"bad queue URL ({redact(str(error))[:200]})", True
    return f"{type(error).__name__}: {redact(str(error) or repr(error))[:200]}", False


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it wraps, outermost first (bounded: wrappers do not nest deeply)."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending and len(seen) < 16:
        cause = pending.pop(0)
        if any(cause is known for known in seen):
            continue
        seen.append(cause)
        yield cause
        inner = getattr(cause, "exception", None)  # AMQPConnector*Error
        if isinstance(inner, BaseException):
            pending.append(inner)
        for attempt in reversed(getattr(cause, "exceptions", ()) or ()):  # WorkflowFailed
            if isinstance(attempt, BaseException):
                pending.append(attempt)
        pending.extend(arg for arg in cause.args if isinstance(arg, BaseException))
        if cause.__cause__ is not None:
            pending.append(cause.__cause__)


def _reply(error: BaseException) -> tuple[int, str]:
    """The AMQP reply code and text of a ``Connection/ChannelClosed`` (also from its text)."""
    code, text = getattr(error, "reply_code", None), getattr(error, "reply_text", None)
    if isinstance(code, int) and isinstance(text, str):
        return code, redact(text)[:200]
    match = _REPLY.search(str(error))
    if match is None:
        return 0, redact(str(error))[:200]
    return int(match.group(1)), redact(match.group(2))[:200]
