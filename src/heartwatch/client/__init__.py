"""Clients that tell the daemon "alive" and "I produced data": ``Heartbeat``, ``AsyncHeartbeat``.

Pure standard library, so a worker pays only for a socket.
"""

from heartwatch.client.aio import AsyncHeartbeat
from heartwatch.client.sync import Heartbeat

__all__ = ["AsyncHeartbeat", "Heartbeat"]
