"""Heartbeats for RabbitMQ consumers written with pika (``pip install heartwatch[rabbitmq]``).

Both consumer styles beat from the consumer's own thread, never from a side thread: a consumer
that hangs inside its handler stops beating, which is the point.

Polling with ``basic_get``, as the original collector does::

    hb = Heartbeat()
    for delivery in poll(channel, "items", hb):     # beats on every poll, item or not
        record(delivery.body)
        hb.event("poiid", {"id": ...})
        delivery.ack()

Pushing with ``basic_consume`` on a ``BlockingConnection``::

    def handle(channel, method, properties, body):
        record(body)
        hb.event("poiid")
        channel.basic_ack(method.delivery_tag)

    consume(channel, "items", handle, hb)            # beats per delivery and while idle

``consume`` beats while idle with ``connection.call_later``: pika runs those timers inside
``process_data_events`` on the consumer's thread, so they stop when the handler hangs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol


class Beating(Protocol):
    """What the integration needs of a client: ``Heartbeat`` fits."""

    def beat(self) -> None: ...


Handler = Callable[[Any, Any, Any, bytes], None]


@dataclass
class Delivery:
    """One message taken with ``basic_get``."""

    channel: Any
    method: Any
    properties: Any
    body: bytes

    @property
    def redelivered(self) -> bool:
        return bool(self.method.redelivered)

    def ack(self) -> None:
        self.channel.basic_ack(self.method.delivery_tag)

    def nack(self, requeue: bool = True) -> None:
        self.channel.basic_nack(self.method.delivery_tag, requeue=requeue)


def poll(
    channel: Any,
    queue: str,
    heartbeat: Beating,
    *,
    idle_wait: float = 1.0,
    auto_ack: bool = False,
) -> Iterator[Delivery]:
    """Take messages with ``basic_get`` forever, beating on every poll, taken or empty.

    While the queue is empty it waits ``idle_wait`` seconds between polls with
    ``connection.sleep``, which keeps pika's AMQP heartbeats answered.
    """
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=auto_ack)
        heartbeat.beat()
        if method is None:
            channel.connection.sleep(idle_wait)
            continue
        yield Delivery(channel, method, properties, body)


def beating(handler: Handler, heartbeat: Beating) -> Handler:
    """Wrap an ``on_message_callback`` so that every delivery beats before it is handled."""

    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        heartbeat.beat()
        handler(channel, method, properties, body)

    return on_message


def keep_beating_while_idle(connection: Any, heartbeat: Beating, interval: float = 1.0) -> None:
    """Beat every ``interval`` seconds from the connection's own event processing."""

    def idle_beat() -> None:
        heartbeat.beat()
        connection.call_later(interval, idle_beat)

    connection.call_later(interval, idle_beat)


def consume(
    channel: Any,
    queue: str,
    handler: Handler,
    heartbeat: Beating,
    *,
    idle_interval: float = 1.0,
    auto_ack: bool = False,
    prefetch: int | None = 1,
) -> None:
    """``basic_consume`` + ``start_consuming``, beating per delivery and while idle."""
    if prefetch is not None:
        channel.basic_qos(prefetch_count=prefetch)
    channel.basic_consume(queue, beating(handler, heartbeat), auto_ack=auto_ack)
    keep_beating_while_idle(channel.connection, heartbeat, idle_interval)
    heartbeat.beat()
    channel.start_consuming()
