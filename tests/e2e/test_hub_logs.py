"""Live logs across hosts, end to end: a real agent's service output through the real broker,
relayed by a real hub to a websocket viewer and to ``heartwatch --hub URL tail``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
from websockets.asyncio.client import connect

from e2e.fleet_support import Fleet, default_services, fleet
from e2e.support import duration, wait_until

pytestmark = pytest.mark.e2e

__all__ = ["fleet"]  # the fixture, used by name

TALKER = {
    "name": "talker",
    "command": [
        sys.executable,
        "-c",
        "import itertools, sys, time\n"
        "for i in itertools.count():\n"
        "    print(f'tick {i}', flush=True)\n"
        "    time.sleep(0.1)\n",
    ],
    "stop_timeout": duration(2),
}


async def _frames(url: str, want: int, timeout: float = 20.0) -> list[str]:
    """The lines a viewer of ``url`` got, once it had ``want`` of them."""
    lines: list[str] = []
    async with connect(url) as websocket:
        deadline = time.monotonic() + timeout
        while len([line for line in lines if line.startswith("tick")]) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"only these lines in {timeout:g} s: {lines}")
            frame = await asyncio.wait_for(websocket.recv(), left)
            lines.extend(str(frame).split("\n"))
    return lines


def test_a_services_output_is_followed_through_the_hub(fleet: Fleet) -> None:
    """The viewer sees the agent's lines, the initial ones first; the CLI follows them too."""
    hub = fleet.start_hub()
    agent = fleet.agent("host-a", [*default_services(), TALKER])
    fleet.start_agents("host-a")
    wait_until(lambda: hub.service("host-a", "talker"), "the hub to know host-a/talker", 20)
    time.sleep(0.5)  # a few lines written before the viewer comes: the initial ones
    ws = hub.http_url.replace("http://", "ws://")
    url = f"{ws}/ws/logs/host-a/talker?lines=3&token={quote(fleet.token)}"
    lines = asyncio.run(_frames(url, 10))
    ticks = [int(line.split()[1]) for line in lines if line.startswith("tick")]
    assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks), lines
    assert ticks[0] > 0  # the first lines were the last ones written, not the file's start

    command = [
        sys.executable, "-m", "heartwatch", "--hub", hub.http_url,
        "tail", "host-a/talker", "-n", "2", "--token", fleet.token,
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as tail:
        try:
            assert tail.stdout is not None
            seen = [tail.stdout.readline().decode() for _ in range(5)]
        finally:
            tail.kill()
            tail.wait(10)
        said = tail.stderr.read().decode() if tail.stderr else ""
    assert all(line.startswith("tick ") for line in seen), (seen, said)
    assert agent.running()


def test_a_viewer_of_an_unreachable_host_is_told_at_once(fleet: Fleet) -> None:
    """The agent killed, its host unreachable: the viewer's socket closes saying so."""
    hub = fleet.start_hub()
    agent = fleet.agent("host-a", [*default_services(), TALKER])
    fleet.start_agents("host-a")
    wait_until(lambda: hub.service("host-a", "talker"), "the hub to know host-a/talker", 20)
    agent.kill()
    hub.wait_host_state("host-a", "unreachable", 30)
    command = [
        sys.executable, "-m", "heartwatch", "--hub", hub.http_url,
        "tail", "host-a/talker", "--token", fleet.token,
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, timeout=30)
    assert done.returncode == 1
    assert b"host-a is unreachable" in done.stderr
    assert time.monotonic() - started < 15
