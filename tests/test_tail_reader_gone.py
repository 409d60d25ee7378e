"""``heartwatch tail … | head``: when the reader leaves, the follower ends (as tail(1) does)
instead of taking the broken pipe for a lost connection and reconnecting forever."""

from __future__ import annotations

import asyncio
import io

from websockets.asyncio.server import ServerConnection, serve

from heartwatch.client.tail import follow_log


class ClosedPipe(io.StringIO):
    """Takes one line, then the reader is gone."""

    def __init__(self) -> None:
        super().__init__()
        self.lines = 0

    def write(self, text: str) -> int:
        if self.lines:
            raise BrokenPipeError(32, "Broken pipe")
        self.lines += 1
        return super().write(text)


def test_a_reader_that_left_ends_the_follow() -> None:
    connections = 0
    finished = asyncio.Event()

    async def lines(websocket: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        for number in range(5):
            await websocket.send(f"line {number}")
        await finished.wait()  # a live log stays open

    async def scenario() -> None:
        async with serve(lines, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            out = ClosedPipe()
            await asyncio.wait_for(
                follow_log(lambda _n: f"ws://127.0.0.1:{port}/ws/logs/x", 10, out), timeout=10
            )
            assert out.getvalue() == "line 0\n"
            finished.set()
        assert connections == 1  # never reconnected

    asyncio.run(scenario())
