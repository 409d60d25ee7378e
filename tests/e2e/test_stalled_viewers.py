"""Viewers that stop reading are dropped: their sockets closed, their state freed.

Each viewer here is a raw socket that completes the websocket handshake and then never reads
again, with a small receive buffer, so the daemon's sends fill the socket and block: such a
viewer answers no ping (it reads none) and no send to it completes. With a short
``ping_interval`` every one of them must be gone within a few intervals.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

import psutil
import pytest

from e2e.support import Daemon, Pipeline, duration, scaled, wait_until
from e2e.test_live_logs import file_url, start, viewer

pytestmark = pytest.mark.e2e

VIEWERS = 20
PING = 0.5  # seconds, scaled


def _http_port(daemon: Daemon) -> int:
    port = urlsplit(daemon.http_url).port
    assert port is not None
    return port


def established(daemon: Daemon) -> int:
    """The daemon's open TCP connections on its HTTP port."""
    port = _http_port(daemon)
    return sum(
        1
        for connection in psutil.Process(daemon.pid).net_connections("tcp")
        if connection.laddr and connection.laddr.port == port and connection.raddr
    )


@contextlib.contextmanager
def stalled_viewers(daemon: Daemon, target: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` upgraded connections that never read after the 101 answer."""
    host, port = "127.0.0.1", _http_port(daemon)
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
            sock.settimeout(scaled(5.0))
            sock.connect((host, port))
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall(
                (
                    f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(1)  # byte by byte: not one byte of the stream is read
                assert chunk, f"closed during the handshake: {head!r}"
                head += chunk
            assert head.startswith(b"HTTP/1.1 101"), head
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_viewers_that_never_read_are_dropped_and_freed(pipeline: Pipeline) -> None:
    """20 viewers of 4 MB of initial lines that never read: all closed within a few ping
    intervals, the daemon's descriptors back to where they were; a reader still streams."""
    root = pipeline.folder / "applogs"
    daemon = start(pipeline, root, logs={"ping_interval": duration(PING)})
    path = root / "big.log"
    path.write_bytes(b"".join(b"%05d %s\n" % (i, b"s" * 400) for i in range(10_000)))
    process = psutil.Process(daemon.pid)
    time.sleep(scaled(0.3))
    fds = process.num_fds()
    target = f"/ws/logs?{urlencode({'path': 'big.log', 'lines': 10_000})}"

    with stalled_viewers(daemon, target, VIEWERS):
        assert established(daemon) >= VIEWERS
        started = time.monotonic()
        # Two ping intervals, the grace to flush the close, and a generous margin.
        wait_until(
            lambda: established(daemon) == 0,
            f"the stalled viewers to be dropped (still {established(daemon)})",
            timeout=30 * PING + 10,
        )
        print(f"{VIEWERS} stalled viewers dropped after {time.monotonic() - started:.1f} s")
        wait_until(
            lambda: process.num_fds() <= fds,
            f"the daemon's descriptors back to {fds} (now {process.num_fds()})",
            timeout=10,
        )

    async def main() -> None:
        async with viewer(file_url(daemon, "big.log", lines=2, follow="false")) as reader:
            assert (await reader.until_closed())[0] == 1000
        assert reader.lines[-1].startswith("09999 ")

    asyncio.run(main())
    log = daemon.log_text() + daemon.stderr_text()
    assert "Traceback" not in log, log[-3000:]
