"""Websocket clients must not exhaust the daemon: not its descriptors, not its memory.

- 300 idle ``/ws/events`` clients (answering pings) against a daemon allowed 256 descriptors
  took all of them: the API went dark for 25 s and the log got 55,268 tracebacks. Now HTTP
  connections are capped below the limit: the crowd beyond it is answered 503, the API answers.
- A client starting a 15 MiB message in 1 MiB fragments and never finishing it made the daemon
  hold it (8 clients: RSS 67 -> 194 MB). Now a message over 64 KiB closes the connection (1009).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time

import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from e2e.support import Pipeline, scaled, worker_command
from e2e.test_ingest_flood import start_daemon_with_open_files

pytestmark = pytest.mark.e2e

OPEN_FILES = 256
CLIENTS = 300


async def _crowd(url: str, count: int) -> tuple[list[ClientConnection], list[int]]:
    """``count`` websocket clients at once: those connected, and the statuses of the refused."""

    async def one() -> ClientConnection | int:
        try:
            return await connect(url, open_timeout=scaled(20), compression=None)
        except InvalidStatus as refused:
            return refused.response.status_code
        except (OSError, TimeoutError):
            return 0

    results = await asyncio.gather(*(one() for _ in range(count)))
    return [r for r in results if not isinstance(r, int)], [
        r for r in results if isinstance(r, int)
    ]


def test_idle_websockets_beyond_the_cap_are_refused_and_the_api_answers(
    pipeline: Pipeline,
) -> None:
    pipeline.write_config(
        [{"name": "worker", "command": worker_command("--beat", "0.5")}],
        logs={"ping_interval": "2s"},  # the clients answer: pings keep nobody out
    )
    daemon = start_daemon_with_open_files(pipeline, OPEN_FILES)
    daemon.wait_running("worker")
    url = daemon.http_url.replace("http://", "ws://") + "/ws/events"

    async def scenario() -> tuple[int, list[int], int]:
        clients, refused = await _crowd(url, CLIENTS)
        answered = 0
        try:
            for _ in range(5):  # over ~5 s, with the crowd connected and answering pings
                started = time.monotonic()
                status = await asyncio.to_thread(daemon.service, "worker")
                assert time.monotonic() - started < scaled(5.0), "the API answered, but slowly"
                answered += status["state"] == "running"
                await asyncio.sleep(1.0)
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        return len(clients), refused, answered

    connected, refused, answered = asyncio.run(scenario())
    assert answered == 5
    assert connected + len(refused) == CLIENTS
    assert connected < CLIENTS - 50, f"{connected} connected: the cap did not hold"
    assert refused and set(refused) == {503}, refused[:20]
    process_fds = psutil.Process(daemon.pid).num_fds()
    assert process_fds < OPEN_FILES, process_fds
    log = daemon.log_text() + daemon.stderr_text()
    assert "Traceback" not in log, log[-3000:]
    # 300 connects at once are accepted by asyncio in one go (up to the listen backlog) before
    # the cap can answer the excess, so for an instant the kernel may refuse a descriptor:
    # asyncio then pauses accepting for a second, which the daemon says in one rate-limited
    # line (seen in about one run of three on a loaded 2-core machine). What must hold is the
    # rest: the API answers throughout, the crowd beyond the cap gets 503, no traceback.
    starved = [line for line in log.splitlines() if "out of system resource" in line]
    assert len(starved) <= 2, starved
    busy = [line for line in log.splitlines() if "503 busy" in line]
    assert len(busy) <= 2, busy  # rate-limited: a line per kind a minute


def _frame(opcode: int, payload: bytes, fin: bool) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big")
    return head + mask + masked


def _handshake(address: tuple[str, int], path: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(address, timeout=scaled(10))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "\r\n"
    )
    sock.sendall(request.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return sock, rest


def _close_code(sock: socket.socket, data: bytes, timeout: float) -> int | None:
    """Read server frames until a close frame; its code (None: the connection stayed open)."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while len(data) >= 2:
            opcode, size = data[0] & 0x0F, data[1] & 0x7F
            offset = 2
            if size == 126:
                size, offset = struct.unpack("!H", data[2:4])[0], 4
            elif size == 127:
                size, offset = struct.unpack("!Q", data[2:10])[0], 10
            if len(data) < offset + size:
                break
            payload, data = data[offset : offset + size], data[offset + size :]
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionError:
            return None
        if not chunk:
            return None
        data += chunk
    return None


def test_a_websocket_message_over_the_bound_is_closed_with_1009(pipeline: Pipeline) -> None:
    pipeline.write_config([{"name": "worker", "command": worker_command("--beat", "0.5")}])
    daemon = pipeline.start_daemon()
    daemon.wait_running("worker")
    host, _, port = daemon.http_url.removeprefix("http://").rpartition(":")
    address = (host, int(port))
    process = psutil.Process(daemon.pid)
    time.sleep(scaled(1))
    before = process.memory_info().rss / 2**20
    chunk = b"x" * (1 << 20)
    held = []
    try:
        for _ in range(4):  # each starts a 15 MiB text message and never finishes it
            sock, rest = _handshake(address, "/ws/events")
            held.append(sock)
            with contextlib.suppress(OSError):
                sock.sendall(_frame(0x1, chunk, fin=False))
                for _ in range(14):
                    sock.sendall(_frame(0x0, chunk, fin=False))
            assert _close_code(sock, rest, scaled(10)) == 1009
        time.sleep(scaled(1))
        grown = process.memory_info().rss / 2**20 - before
        assert grown < 20, f"RSS grew by {grown:.0f} MB for 4 messages of 15 MiB refused"
        assert daemon.service("worker")["state"] == "running"
    finally:
        for sock in held:
            sock.close()
    log = daemon.log_text() + daemon.stderr_text()
    assert "Traceback" not in log, log[-3000:]
