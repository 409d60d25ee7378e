"""The baseline for ``bench/ingest.py``: the least an asyncio server can do with the same bytes.

It counts newlines in ``data_received`` and, for the one-object-per-connection framing, one
message for an unterminated tail at end-of-file; then it closes, like heartwatch does. Same event
loop (the standard asyncio one), same backlog. It prints its port, then answers each ``count``
line on stdin with the number of messages counted so far; it exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
import threading

COUNT = 0


class Counter(asyncio.Protocol):
    def __init__(self) -> None:
        self.tail = False

    def data_received(self, data: bytes) -> None:
        global COUNT
        COUNT += data.count(b"\n")
        self.tail = not data.endswith(b"\n")

    def eof_received(self) -> bool:
        global COUNT
        if self.tail:
            COUNT += 1
        return False  # close, as heartwatch does


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Counter, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    finished = asyncio.Event()

    def answer() -> None:
        for line in sys.stdin:
            if line.strip() == "count":
                print(COUNT, flush=True)
        loop.call_soon_threadsafe(finished.set)

    threading.Thread(target=answer, daemon=True).start()
    await finished.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
