"""The one conversion between the loop's monotonic time and Unix time."""

from __future__ import annotations

import asyncio
import time

import pytest

from heartwatch.daemon.loopclock import LoopClock


def test_wall_and_loop_time_convert_both_ways_with_one_offset() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        before = time.time()
        clock = LoopClock(loop)
        after = time.time()
        assert before - 1.0 <= clock.wall_time() <= after + 1.0  # a generous sanity bound
        at = loop.time() + 42.5
        # Unix times are large floats: a round trip keeps microseconds, not every bit.
        assert clock.loop_time(clock.wall_time(at)) == pytest.approx(at, abs=1e-6)
        assert clock.wall_time(at) - clock.wall_time(at - 10.0) == pytest.approx(10.0, abs=1e-6)
        assert clock.now() <= loop.time()

    asyncio.run(main())
