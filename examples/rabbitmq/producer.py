"""Publish work items to the queue: ``python producer.py [COUNT] [QUEUE]``."""

import json
import os
import sys

import pika

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def publish(count: int, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True)
    for item in range(count):
        channel.basic_publish(
            "",
            queue,
            json.dumps({"id": item}).encode(),
            pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
        )
    connection.close()
    print(f"published {count} items to {queue!r}")


if __name__ == "__main__":
    publish(
        int(sys.argv[1]) if len(sys.argv) > 1 else 200,
        sys.argv[2] if len(sys.argv) > 2 else "items",
    )
