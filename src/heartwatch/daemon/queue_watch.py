"""Reads the depth of the queues services consume, for the queue-stall rule (``stall.py``).

A passive ``queue.declare`` over AMQP answers with the number of ready messages and needs no
management plugin. pika's ``BlockingConnection`` runs in a worker thread (one connection per
broker URL, kept open between readings), so a slow or unreachable broker never blocks the
event loop. A failed reading is reported as a broker problem, never as a stalled consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from loguru import logger

from heartwatch.config import QueueConfig

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
                    self._report_problem(_describe(error))
                else:
                    if self._last_problem is not None:
                        logger.info("{}: queue {!r} readable again", self.service, self.config.name)
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

    def _report_problem(self, problem: str) -> None:
        self._on_problem(self.service, problem)
        if problem != self._last_problem:
            logger.warning(
                "{}: cannot read queue {!r}: {} (not counted against the consumer)",
                self.service,
                self.config.name,
                problem,
            )
            self._last_problem = problem

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def _describe(error: Exception) -> str:
    text = str(error) or repr(error)
    if type(error).__name__ == "ChannelClosedByBroker" and "404" in text:
        return "no such queue"
    if type(error).__name__ in ("AMQPConnectionError", "ConnectionClosed", "StreamLostError"):
        return f"broker unreachable ({type(error).__name__})"
    return f"{type(error).__name__}: {text[:200]}"
