"""heartwatch: keep data pipelines alive.

Supervise a pipeline's processes, hear heartbeats and data flow from inside them, and recover
the right group of processes, in the right order, the moment they fall silent.
"""

from heartwatch.client import AsyncHeartbeat, Heartbeat

__version__ = "0.1.0"
__all__ = ["AsyncHeartbeat", "Heartbeat", "__version__"]
