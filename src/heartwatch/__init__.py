"""heartwatch: keep data pipelines alive.

Supervise a pipeline's processes, hear heartbeats and data flow from inside them, and recover
the right group of processes, in the right order, the moment they fall silent.

``from heartwatch import Heartbeat`` loads ``client/sync.py`` alone (standard library only);
``AsyncHeartbeat`` loads asyncio when it is asked for. Nothing is imported before a name is
used (PEP 562), so the daemon's commands and a worker's heartbeats pay only for what they use.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs a command 10 ms
if TYPE_CHECKING:
    from typing import Any

    from heartwatch.client.aio import AsyncHeartbeat
    from heartwatch.client.sync import Heartbeat

__version__ = "0.1.0"
__all__ = ["AsyncHeartbeat", "Heartbeat", "__version__"]

_LAZY = {"Heartbeat": "heartwatch.client.sync", "AsyncHeartbeat": "heartwatch.client.aio"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'heartwatch' has no attribute {name!r}")
