"""The original live-log viewer, unchanged, against heartwatch's compatibility route.

That viewer connects to ``ws://HOST:PORT<absolute path of the file>`` (``?tail=1`` to keep
following), takes the last lines as one text message of HTML, then each new chunk, and answers
every text ``ping`` with ``pong``. The viewers here are written the way it is: ``connect(url)``,
``async for message in ws``, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from e2e.support import Daemon, Pipeline, scaled
from heartwatch.web.original import is_own_route

pytestmark = pytest.mark.e2e

PING_INTERVAL = 0.5  # [logs] ping_interval: the text "ping" after this much quiet


def start(pipeline: Pipeline, root: Path, server: dict[str, str] | None = None) -> Daemon:
    root.mkdir(parents=True, exist_ok=True)
    pipeline.write_config(
        [],
        server=server,
        logs={"roots": [str(root)], "ping_interval": f"{PING_INTERVAL}s", "initial_lines": 50},
    )
    return pipeline.start_daemon()


def original_url(daemon: Daemon, path: Path | str, query: str = "tail=1") -> str:
    base = "ws" + daemon.http_url.removeprefix("http")
    return f"{base}{quote(str(path))}" + (f"?{query}" if query else "")


def append(path: Path, text: str) -> None:
    with path.open("a") as file:
        file.write(text)


class OriginalViewer:
    """The original viewer's loop: every message kept, every ``ping`` answered ``pong``."""

    def __init__(self, url: str, answer_pings: bool = True, origin: str | None = None) -> None:
        self.url = url
        self.origin = Origin(origin) if origin else None
        self.answer_pings = answer_pings
        self.messages: list[str] = []
        self.pings = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.connected = asyncio.Event()

    async def run(self) -> None:
        try:
            async with connect(self.url, origin=self.origin) as ws:
                self.connected.set()
                await self._loop(ws)
                self.close_code, self.close_reason = ws.close_code, ws.close_reason or ""
        except ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd else None
            self.close_reason = closed.rcvd.reason if closed.rcvd else ""

    async def _loop(self, ws: ClientConnection) -> None:
        async for message in ws:
            assert isinstance(message, str)
            if message == "ping":
                self.pings += 1
                if self.answer_pings:
                    await ws.send("pong")
                continue
            self.messages.append(message)

    @property
    def text(self) -> str:
        return "".join(self.messages)


async def wait_for(predicate: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_follows_across_a_rotation_and_stays_through_ping_rounds(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    root = tmp_path / "var-log"
    daemon = start(pipeline, root)
    log = root / "collector.log"
    log.write_text("".join(f"old line {i}\n" for i in range(100)))
    append(log, "\x1b[31mred <b>not bold</b>\x1b[0m\n")

    async def scenario() -> OriginalViewer:
        viewer = OriginalViewer(original_url(daemon, log))
        task = asyncio.create_task(viewer.run())
        await wait_for(lambda: viewer.messages, "the last lines")
        first = viewer.messages[0]
        # The last 50 lines, as one message, colours as spans, text escaped (never markup).
        assert "old line 50" not in first and "old line 51" in first and "old line 99" in first
        assert '<span style="color' in first or "<span class=" in first
        assert "&lt;b&gt;not bold&lt;/b&gt;" in first and "<b>" not in first

        append(log, "new line 1\n")
        await wait_for(lambda: "new line 1" in viewer.text, "a line written after connecting")
        os.rename(log, root / "collector.log.1")  # rotation, as loguru or logrotate does it
        append(root / "collector.log.1", "last line of the old file\n")
        log.write_text("first line of the new file\n")
        await wait_for(lambda: "first line of the new file" in viewer.text, "the new file")
        assert "last line of the old file" in viewer.text

        await wait_for(lambda: viewer.pings >= 3, "three ping rounds", timeout=15)
        assert not task.done()  # kept alive: it answered every ping
        append(log, "after the pings\n")
        await wait_for(lambda: "after the pings" in viewer.text, "a line after the pings")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return viewer

    viewer = asyncio.run(scenario())
    assert viewer.text.count("new line 1") == 1


def test_a_viewer_that_never_answers_ping_is_dropped(pipeline: Pipeline, tmp_path: Path) -> None:
    root = tmp_path / "var-log"
    daemon = start(pipeline, root)
    log = root / "quiet.log"
    log.write_text("one line\n")

    async def scenario() -> tuple[OriginalViewer, float]:
        viewer = OriginalViewer(original_url(daemon, log), answer_pings=False)
        began = time.monotonic()
        await asyncio.wait_for(viewer.run(), scaled(30))
        return viewer, time.monotonic() - began

    viewer, lasted = asyncio.run(scenario())
    assert viewer.pings >= 1
    assert viewer.close_code is not None and viewer.close_code != 1000
    assert lasted < scaled(20)  # dropped: ping after 0.5 s of quiet, 5 s to answer


def test_without_tail_the_last_lines_then_a_normal_close(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    root = tmp_path / "var-log"
    daemon = start(pipeline, root)
    log = root / "app.log"
    log.write_text("".join(f"line {i}\n" for i in range(10)))

    viewer = OriginalViewer(original_url(daemon, log, query=""))
    asyncio.run(asyncio.wait_for(viewer.run(), scaled(15)))
    assert len(viewer.messages) == 1
    assert "line 0" in viewer.messages[0] and "line 9" in viewer.messages[0]
    assert viewer.close_code == 1000


def test_refusals_have_codes_and_heartwatch_routes_are_not_shadowed(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    root = tmp_path / "var-log"
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "passwords.log").write_text("hunter2\n")
    (root / "sub").mkdir(parents=True)
    os.symlink(outside, root / "sub" / "escape")
    daemon = start(pipeline, root, server={"token": "s3cret-token"})
    token = "token=s3cret-token"

    def refused(path: str, query: str) -> OriginalViewer:
        viewer = OriginalViewer(original_url(daemon, path, query))
        asyncio.run(asyncio.wait_for(viewer.run(), scaled(15)))
        assert viewer.messages == [], viewer.messages
        return viewer

    assert refused(str(outside / "passwords.log"), f"tail=1&{token}").close_code == 4403
    assert refused(str(root / "sub/escape/passwords.log"), f"tail=1&{token}").close_code == 4403
    assert refused(str(root / "missing.log"), f"tail=1&{token}").close_code == 4404
    assert refused(str(root / "app.log"), "tail=1").close_code == 4401  # no token
    # A websocket on heartwatch's own prefixes is never taken for a file path.
    assert refused("/ws/nonexistent", token).close_code == 4404
    assert refused("/api/v1/services", token).close_code == 4404

    (root / "app.log").write_text("allowed\n")
    viewer = OriginalViewer(original_url(daemon, root / "app.log", f"{token}"))
    asyncio.run(asyncio.wait_for(viewer.run(), scaled(15)))
    assert viewer.messages == ["allowed"] or viewer.messages == ["allowed\n"]
    foreign = OriginalViewer(
        original_url(daemon, root / "app.log", token), origin="http://evil.example"
    )
    asyncio.run(asyncio.wait_for(foreign.run(), scaled(15)))
    assert (foreign.close_code, foreign.messages) == (4403, [])
    # Every route of the app lies under the prefixes the route leaves alone.
    status, _headers, body = daemon.raw(
        "GET", "/openapi.json", {"Authorization": "Bearer s3cret-token"}
    )
    assert status == 200
    routes = [*json.loads(body)["paths"], "/ws/events", "/ws/logs", "/ws/logs/x", "/static/x.js"]
    assert [route for route in routes if not is_own_route(route)] == []
    # Plain HTTP on the same paths is untouched: the dashboard and the API answer as before.
    status, _headers, body = daemon.raw("GET", "/", {"Authorization": "Bearer s3cret-token"})
    assert status == 200 and b"<html" in body.lower()
    status, _headers, _body = daemon.raw("GET", str(root / "app.log"))
    assert status in (401, 404)


def test_a_burst_arrives_whole_in_frames_of_bounded_size(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """3 MiB written at once reaches a viewer that keeps up, every line once, in messages far
    below a default client's 1 MiB limit."""
    root = tmp_path / "var-log"
    daemon = start(pipeline, root)
    log = root / "burst.log"
    log.write_text("")
    lines = [f"burst line {i:06d} " + "x" * 100 for i in range(30_000)]

    async def scenario() -> OriginalViewer:
        viewer = OriginalViewer(original_url(daemon, log))
        task = asyncio.create_task(viewer.run())
        await viewer.connected.wait()
        append(log, "".join(line + "\n" for line in lines))
        await wait_for(lambda: lines[-1] in viewer.text, "the whole burst", timeout=30)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return viewer

    viewer = asyncio.run(scenario())
    assert max(len(message.encode()) for message in viewer.messages) <= 512 * 1024 + 1
    received = [line for line in viewer.text.splitlines() if line.startswith("burst line")]
    assert received == lines
