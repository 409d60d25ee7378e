"""Live logs under a path race: a folder inside a root swapped for a symlink to one outside.

A thread swaps ``root/sub`` (a real folder) and a symlink ``root/sub -> outside`` thousands of
times while viewers open ``sub/app.log`` over and over, with and without following. Every
answer must be the inside file's lines or a refusal with a code (4403/4404): never a byte of
the outside file, never an HTTP 500, never a traceback in the daemon's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from e2e.support import Pipeline, scaled
from e2e.test_live_logs import file_url, start

pytestmark = pytest.mark.e2e

SECRET = "OUTSIDE-SECRET"
SWAPS = 4000
OPENS = 1500  # as many as the review made
VIEWERS = 4  # concurrent clients sharing the opens


@contextlib.contextmanager
def swapping(root: Path, outside: Path, swaps: int) -> Iterator[threading.Event]:
    """A thread that swaps ``root/sub`` between the real folder and a symlink out, ``swaps``
    times or until told to stop; the real folder is back in place when it ends."""
    stop = threading.Event()
    sub, parked, link = root / "sub", root / "sub.parked", root / "sub.link"

    def run() -> None:
        for _ in range(swaps):
            if stop.is_set():
                break
            os.rename(sub, parked)
            os.symlink(outside, link)
            os.rename(link, sub)  # the symlink takes the folder's name
            time.sleep(0)  # let an opener run while the name leads outside
            os.unlink(sub)
            os.rename(parked, sub)
        stop.set()

    thread = threading.Thread(target=run, name="swapper", daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(scaled(30.0))
        assert not thread.is_alive(), "the swapper did not stop"


def test_swapping_a_folder_for_a_symlink_never_serves_the_outside_file(
    pipeline: Pipeline,
) -> None:
    """No byte of the outside file arrives; every refusal is 4403/4404; no 500, no traceback."""
    root = pipeline.folder / "applogs"
    outside = pipeline.folder / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "app.log").write_text("".join(f"inside {i}\n" for i in range(20)))
    (outside / "app.log").write_text("".join(f"{SECRET} {i}\n" for i in range(20)))
    daemon = start(pipeline, root)
    outcomes: dict[str, int] = {}
    leaked: list[str] = []

    def count(outcome: str) -> None:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    async def open_once(index: int) -> None:
        follow = index % 2 == 1
        url = file_url(daemon, "sub/app.log", lines=5, follow="true" if follow else "false")
        try:
            async with asyncio.timeout(scaled(10.0)):
                async with connect(url, open_timeout=scaled(10.0), close_timeout=2) as ws:
                    frames: list[str] = []
                    with contextlib.suppress(ConnectionClosed):
                        while True:
                            frame = await ws.recv()
                            frames.append(str(frame))
                            if follow and "inside 19" in frame:
                                break  # the initial lines came; enough of following
                    if any(SECRET in frame for frame in frames):
                        leaked.append(" | ".join(frames)[:200])
                    code = ws.close_code
            count(f"lines, then {code}" if frames else f"closed {code}")
        except InvalidStatus as error:
            count(f"HTTP {error.response.status_code}")
        except TimeoutError:
            count("timeout")

    async def opener(first: int, step: int, stop: threading.Event) -> None:
        for index in range(first, OPENS, step):
            if stop.is_set():
                return
            await open_once(index)

    async def main(stop: threading.Event) -> None:
        await asyncio.gather(*(opener(i, VIEWERS, stop) for i in range(VIEWERS)))

    started = time.monotonic()
    with swapping(root, outside, SWAPS) as stop:
        asyncio.run(main(stop))
    elapsed = time.monotonic() - started
    print(f"{sum(outcomes.values())} opens in {elapsed:.1f} s: {outcomes}")

    assert not leaked, f"{len(leaked)} answers held the outside file: {leaked[:3]}"
    allowed = {"lines, then 1000", "lines, then None", "closed 4403", "closed 4404"}
    allowed |= {"lines, then 1005", "lines, then 1006"}  # our own close after following
    unexpected = {outcome: n for outcome, n in outcomes.items() if outcome not in allowed}
    assert not unexpected, f"answers other than lines or a 4403/4404 refusal: {outcomes}"
    assert sum(outcomes.values()) > 50, outcomes
    log = daemon.log_text() + daemon.stderr_text()
    assert "Traceback" not in log, log[-3000:]
