"""The original log viewer's protocol, served beside the native one (docs/logs.md).

That viewer connects to ``ws://HOST:PORT<absolute path>`` (``?tail=1`` to keep following),
takes the last lines as one text message of HTML, then each new chunk, and answers the text
``ping`` with ``pong``. The route that serves it (``web/logs.py``) shares everything with the
native one: the path rules and the safe open, the access gate, the follower and its bounded
history, frames capped in size. What differs is here: which paths are heartwatch's own (never
taken for a file), and the streaming, with the text keepalive of ``textping.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from fastapi import WebSocket
from loguru import logger

from heartwatch.config import LogsConfig
from heartwatch.core.textping import KeepaliveStep, TextKeepalive
from heartwatch.daemon.logfollow import Viewer
from heartwatch.web.streaming import until_first_ends

# A text ping after this much quiet when [logs] ping_interval is 0 (native pings off): the
# original protocol has no "off", so it keeps the configuration's default interval.
ORIGINAL_QUIET: float = LogsConfig.model_fields["ping_interval"].default
PONG_WITHIN = 5.0  # the original server's bound for the answer
KEEPALIVE_CLOSE = 1011  # as python-websockets closes on a keepalive timeout
# Each message is a chunk of the file, its newlines included (native frames join lines with
# newlines and end without one).
CHUNK_END = "\n"


# The first path segments of heartwatch's own routes: a websocket there is never taken for a
# log file (a typo in /ws/... is "no such endpoint", not a path refused). The test of this
# module checks that every route of the app lies under one of them.
OWN_PREFIXES = frozenset(
    {"/api", "/ws", "/ping", "/metrics", "/static", "/docs", "/redoc", "/openapi.json"}
)
OWN_PATHS = frozenset({"/", "/favicon.ico"})


def is_own_route(path: str) -> bool:
    """Whether ``path`` belongs to heartwatch's own routes, never to a log file."""
    first = "/" + path.lstrip("/").split("/", 1)[0]
    return path in OWN_PATHS or first in OWN_PREFIXES


class OriginalStream:
    """Frames to the original viewer, with its text keepalive; ends when either side does."""

    def __init__(
        self, quiet: float, send_deadline: float, answer_within: float = PONG_WITHIN
    ) -> None:
        self.quiet = quiet
        self.send_deadline = send_deadline
        self.answer_within = answer_within

    async def run(self, websocket: WebSocket, viewer: Viewer, path: Path) -> None:
        loop = asyncio.get_running_loop()
        keepalive = TextKeepalive(self.quiet, self.answer_within, loop.time())
        sending = asyncio.Lock()  # three senders, one socket: a frame is never interleaved

        async def send(text: str) -> bool:
            try:
                async with asyncio.timeout(self.send_deadline), sending:
                    await websocket.send_text(text)
            except TimeoutError:
                logger.info(
                    "live logs: dropped an original viewer of {}: nothing could be sent in {:g} s",
                    path,
                    self.send_deadline,
                )
                return False
            return True

        async def frames() -> None:
            while True:
                frame = await viewer.next_frame()
                if not await send(frame + CHUNK_END):
                    return
                viewer.receive_sent()

        async def listen() -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                keepalive.receive_message(loop.time())
                if message.get("text") == "ping" and not await send("pong"):
                    return

        async def keep_alive() -> None:
            while True:
                await asyncio.sleep(max(0.0, keepalive.next_deadline() - loop.time()))
                step = keepalive.step(loop.time())
                if step is KeepaliveStep.PING and not await send("ping"):
                    return
                if step is KeepaliveStep.DROP:
                    reason = f"no answer to ping within {self.answer_within:g} s"
                    logger.info("live logs: dropped an original viewer of {}: {}", path, reason)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.send_deadline), sending:
                            await websocket.close(KEEPALIVE_CLOSE, reason)
                    return

        await until_first_ends(frames(), listen(), keep_alive())
