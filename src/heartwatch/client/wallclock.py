"""The wall clock a heartbeat client stamps its events with: the drivers (``sync.py``,
``aio.py``) hand it to the ``Outbox``, which reads no clock itself."""

from __future__ import annotations

import time

from heartwatch.client.outbox import Outbox

now = time.time  # epoch seconds


def local_second(second: int) -> str:
    """A whole second as local time, as the original client writes it."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))


def stamped_outbox(service: str | None, max_events: int, token: str | None) -> Outbox:
    """An ``Outbox`` whose events are stamped with this wall clock."""
    return Outbox(service, max_events, token, clock=now, local_second=local_second)
