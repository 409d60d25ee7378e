"""The wall clock a heartbeat client stamps its events with: the drivers hand it to the
``Outbox``, which reads no clock itself."""

from __future__ import annotations

import time

now = time.time  # epoch seconds


def local_second(second: int) -> str:
    """A whole second as local time, as the original client writes it."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
