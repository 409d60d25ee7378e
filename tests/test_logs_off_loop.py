"""Blocking work of live logs runs in worker threads, never on the event loop.

Listing the roots (a walk over up to 1000 files), finding where following starts, and reading
a viewer's initial lines (up to 8 MiB) are each replaced here by a stand-in that notes whether
it was called on a thread that runs an event loop. The real functions still do the work, so
the answers are checked too; and the ordering promise (initial lines, then every later line
once) holds across the thread hop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from heartwatch.config import parse_config
from heartwatch.daemon import logfollow
from heartwatch.daemon.logfollow import LogHub, LogTarget, Viewer
from heartwatch.web import logs as web_logs


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Spy:
    """Wraps a function; records, per call, whether it ran on an event loop's thread."""

    def __init__(self) -> None:
        self.on_loop: list[bool] = []

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def spied(*args: Any, **kwargs: Any) -> Any:
            self.on_loop.append(_on_loop())
            return function(*args, **kwargs)

        return spied


@pytest.fixture
def spy() -> Spy:
    return Spy()


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    """The live-log routes on a bare app, with one root holding a few files."""
    root = tmp_path / "root"
    (root / "nested").mkdir(parents=True)
    for index in range(30):
        (root / f"f{index:02d}.log").write_text(f"file {index}\n")
    (root / "nested" / "big.log").write_text("".join(f"line {i}\n" for i in range(5000)))
    config = parse_config(
        {"logs": {"roots": [str(root)]}, "daemon": {"log_dir": str(tmp_path / "logs")}},
        environ={},
    )
    supervisor = SimpleNamespace(config=config, services={})
    application = FastAPI()
    router = web_logs.create_log_router(supervisor, LogHub(0.5, 1000))  # type: ignore[arg-type]
    application.include_router(router)
    return application


async def _websocket_frames(app: FastAPI, path: str, query: bytes) -> list[dict[str, Any]]:
    """Drive one websocket through the ASGI app by hand; what the app sent."""
    sent: list[dict[str, Any]] = []
    connected = False

    async def receive() -> dict[str, Any]:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        await asyncio.sleep(3600)  # the client says nothing more
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [],
        "scheme": "ws",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1234),
        "subprotocols": [],
    }
    await asyncio.wait_for(app(scope, receive, send), 10)
    return sent


def test_listing_the_roots_runs_in_a_thread(
    app: FastAPI, spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_logs, "_files_under", spy.wrap(web_logs._files_under))

    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (await client.get("/api/v1/logs")).json()

    listed = asyncio.run(main())
    assert spy.on_loop == [False]
    files = [entry["name"] for entry in listed if entry["kind"] == "file"]
    assert len(files) == 31 and files[0].endswith("f00.log") and files[-1].endswith("big.log")


def test_initial_lines_without_following_are_read_in_a_thread(
    app: FastAPI, spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_logs, "read_initial_lines", spy.wrap(web_logs.read_initial_lines))
    monkeypatch.setattr(web_logs, "open_planned", spy.wrap(web_logs.open_planned))
    query = b"path=nested/big.log&lines=3&follow=false"
    sent = asyncio.run(_websocket_frames(app, "/ws/logs", query))
    assert [message["type"] for message in sent] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]
    assert sent[1]["text"] == "line 4997\nline 4998\nline 4999"
    assert spy.on_loop == [False, False]  # the open, then the read


def test_following_starts_and_reads_initial_lines_in_threads_in_order(
    tmp_path: Path, spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Positioned, initial lines read in a thread, then a line written meanwhile: each once."""
    path = tmp_path / "app.log"
    path.write_text("".join(f"old {i}\n" for i in range(100)))
    release = threading.Event()
    real_last_lines = logfollow._last_lines

    def slow_last_lines(fd: int, end: int, count: int) -> list[str]:
        release.wait(5)  # the loop goes on meanwhile: a line is written and read live
        return real_last_lines(fd, end, count)

    monkeypatch.setattr(logfollow, "_last_lines", spy.wrap(slow_last_lines))
    monkeypatch.setattr(logfollow, "_position_at_end", spy.wrap(logfollow._position_at_end))

    async def main() -> list[str]:
        hub = LogHub(flush_after=0.5, history_lines=1000)
        viewer = Viewer(grep=None, html=False)
        subscribing = asyncio.ensure_future(
            hub.subscribe(LogTarget(tmp_path, ("app.log",)), viewer, 3)
        )
        for _ in range(200):  # the loop keeps running while the initial lines are read
            await asyncio.sleep(0.01)
            if len(spy.on_loop) == 2:
                break
        with path.open("a") as file:
            file.write("new 0\n")
        await asyncio.sleep(0.3)  # the follower reads it into the ring meanwhile
        release.set()
        follower = await asyncio.wait_for(subscribing, 5)
        received: list[str] = []
        while len(received) < 4:
            frame = await asyncio.wait_for(viewer.next_frame(), 5)
            viewer.receive_sent()
            received += frame.split("\n")
        hub.unsubscribe(follower, viewer)
        await hub.aclose()
        return received

    assert asyncio.run(main()) == ["old 97", "old 98", "old 99", "new 0"]
    assert spy.on_loop == [False, False]  # where to start, then the initial lines
