"""Memory after a storm of websocket clients: what the crowd used is given back once it left."""

from __future__ import annotations

import asyncio
import threading
import time

import psutil
import pytest
from websockets.asyncio.client import connect

from e2e.support import Pipeline, scaled, wait_until, worker_command

pytestmark = pytest.mark.e2e

CLIENTS = 2000


def _rss_mb(process: psutil.Process) -> float:
    return float(process.memory_info().rss) / 2**20


async def _storm(url: str) -> int:
    """``CLIENTS`` websocket clients at once, half on the event stream and half on a service's
    live log; each reads its first frame and leaves. Returns how many got their frame."""

    async def one(path: str) -> bool:
        try:
            async with connect(
                url + path, open_timeout=scaled(60), close_timeout=scaled(10), compression=None
            ) as websocket:
                await asyncio.wait_for(websocket.recv(), scaled(60))
        except (OSError, TimeoutError, Exception):
            return False
        return True

    paths = ["/ws/events", "/ws/logs/worker?lines=20"]
    results = await asyncio.gather(*(one(paths[i % 2]) for i in range(CLIENTS)))
    return sum(results)


def test_memory_a_crowd_of_websocket_clients_used_is_given_back(pipeline: Pipeline) -> None:
    """2000 clients at once took the daemon from ~55 to ~140 MB, and it stayed there (uncollected
    cycles, memory glibc kept). Now it comes down by itself once they left."""
    pipeline.write_config(
        [{"name": "worker", "command": worker_command("--beat", "0.2")}],
        # This is about memory, not slow clients nor crowds beyond the cap.
        server={"http_max_pending": 4 * CLIENTS, "http_max_connections": 4 * CLIENTS},
        daemon={"log_level": "WARNING"},
    )
    daemon = pipeline.start_daemon()
    process = psutil.Process(daemon.pid)
    time.sleep(scaled(2))
    before = _rss_mb(process)
    peak = before
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, _rss_mb(process))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        served = asyncio.run(_storm(daemon.http_url.replace("http://", "ws://")))
    finally:
        sampling = False
        sampler.join()
    assert served >= CLIENTS * 0.9, f"only {served} of {CLIENTS} clients got a frame"
    assert peak - before > 30, f"the storm did not cost memory ({before:.0f} -> {peak:.0f} MB)"
    # The crowd's memory is given back a moment after it left (one full collection, then
    # malloc_trim): well below the peak, and not far above where it started.
    settled = wait_until(
        lambda: (rss := _rss_mb(process)) <= peak - 15 and rss,
        f"RSS to come down from its peak of {peak:.0f} MB (was {before:.0f} MB before)",
        timeout=45,
        interval=0.5,
    )
    print(f"RSS before {before:.1f} MB, peak {peak:.1f} MB, settled {settled:.1f} MB")
    assert settled <= before + 75, (before, peak, settled)
    assert "Traceback" not in daemon.log_text()
