"""Clients that tell the daemon "alive" and "I produced data": ``Heartbeat``, ``AsyncHeartbeat``.

Pure standard library, so a worker pays only for a socket; each is imported when first asked
for (``AsyncHeartbeat`` brings asyncio, which a thread-based worker does not need).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: see heartwatch/__init__.py
if TYPE_CHECKING:
    from typing import Any

    from heartwatch.client.aio import AsyncHeartbeat
    from heartwatch.client.sync import Heartbeat

__all__ = ["AsyncHeartbeat", "Heartbeat"]

_LAZY = {"Heartbeat": "heartwatch.client.sync", "AsyncHeartbeat": "heartwatch.client.aio"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'heartwatch.client' has no attribute {name!r}")
