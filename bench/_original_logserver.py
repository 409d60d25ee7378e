"""The baselines for ``bench/logs.py``: the original live-log design, and its floor.

A websockets asyncio server (``ws://127.0.0.1:<port>/?path=<file>&lines=N&follow=…``). Each
connection has its own loop: it reads the whole file and sends the last ``lines`` lines as one
frame, then

- by default (the original design), once a second reads the whole file again and sends every
  line it has not sent yet, all in one frame, whatever its size;
- with ``--inotify``, waits for inotify events on the file's folder (asyncinotify) and sends
  the complete lines among the bytes added since, as one frame: the least a websocket
  follower woken by inotify can do, with no cap on a frame and nothing shared between viewers.

It prints its port, and exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve

POLL_INTERVAL = 1.0
INOTIFY = "--inotify" in sys.argv[1:]


def _read_whole(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


async def handler(websocket: ServerConnection) -> None:
    assert websocket.request is not None
    query = parse_qs(urlsplit(websocket.request.path).query)
    path = query["path"][0]
    wanted = int(query.get("lines", ["10"])[0])
    follow = query.get("follow", ["true"])[0].lower() not in ("0", "false", "no")
    data = _read_whole(path)
    lines = data.split(b"\n")[:-1]  # what follows the last newline is not a line yet
    if wanted > 0 and lines:
        await websocket.send(b"\n".join(lines[-wanted:]).decode("utf-8", "replace"))
    if not follow:
        await websocket.close(1000, "end of the initial lines")
        return
    if INOTIFY:
        following = asyncio.ensure_future(
            follow_inotify(websocket, Path(path), data.rfind(b"\n") + 1)
        )
    else:
        following = asyncio.ensure_future(follow_polling(websocket, path, len(lines)))
    closed = asyncio.ensure_future(websocket.wait_closed())
    try:  # stop following as soon as the viewer goes, not at the next send
        await asyncio.wait({following, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        following.cancel()
        closed.cancel()
        await asyncio.gather(following, closed, return_exceptions=True)


async def follow_polling(websocket: ServerConnection, path: str, sent: int) -> None:
    while True:
        await asyncio.sleep(POLL_INTERVAL)
        lines = _read_whole(path).split(b"\n")[:-1]
        if len(lines) > sent:
            await websocket.send(b"\n".join(lines[sent:]).decode("utf-8", "replace"))
            sent = len(lines)


async def follow_inotify(websocket: ServerConnection, path: Path, offset: int) -> None:
    from asyncinotify import Inotify, Mask

    fd = os.open(path, os.O_RDONLY)
    partial = b""
    try:
        with Inotify() as inotify:
            inotify.add_watch(path.parent, Mask.MODIFY)
            async for event in inotify:
                if event.name is None or event.name.name != path.name:
                    continue
                chunks = [partial]
                while data := os.pread(fd, 1 << 20, offset):
                    offset += len(data)
                    chunks.append(data)
                data = b"".join(chunks)
                cut = data.rfind(b"\n") + 1
                partial = data[cut:]
                if cut:
                    await websocket.send(data[: cut - 1].decode("utf-8", "replace"))
    finally:
        os.close(fd)


async def main() -> None:
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()

    def wait_stdin() -> None:
        for _ in sys.stdin:
            pass
        loop.call_soon_threadsafe(finished.set)

    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(port, flush=True)
        threading.Thread(target=wait_stdin, daemon=True).start()
        await finished.wait()


if __name__ == "__main__":
    asyncio.run(main())
