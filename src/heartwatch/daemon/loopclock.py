"""The event loop's monotonic clock and the wall-clock time people read, one offset apart.

Decisions run on ``loop.time()`` (monotonic: a clock set back does not fire every deadline);
journals, history and alerts speak Unix time. The offset between the two is measured once, here,
so that every part of the daemon converts alike, both ways.
"""

from __future__ import annotations

import asyncio
import time


class LoopClock:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.offset = time.time() - loop.time()  # the Unix time of loop time 0

    def now(self) -> float:
        """The monotonic loop time."""
        return self._loop.time()

    def wall_time(self, at: float | None = None) -> float:
        """Unix time of the loop time ``at`` (default: now)."""
        return self.offset + (self._loop.time() if at is None else at)

    def loop_time(self, wall: float) -> float:
        """The loop time of the Unix time ``wall`` (to arm a timer at a wall-clock deadline)."""
        return wall - self.offset
