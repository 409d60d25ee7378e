"""Websocket clients that leave the moment they asked: a reset, never a traceback in the log."""

from __future__ import annotations

import base64
import os
import socket
import struct
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from e2e.support import Pipeline, wait_until, worker_command

pytestmark = pytest.mark.e2e


def test_clients_that_reset_right_after_the_upgrade_leave_no_traceback(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.log").write_text("a line\n")
    pipeline.write_config(
        [{"name": "svc", "command": worker_command()}], logs={"roots": [str(root)]}
    )
    daemon = pipeline.start_daemon()
    address = urlsplit(daemon.http_url)
    paths = [
        "/ws/events",
        "/ws/logs?path=f.log&follow=0",
        "/ws/logs?path=f.log",
        "/ws/logs/svc",
        f"{root}/f.log?tail=1",
    ]
    for path in paths:
        for _ in range(10):
            with socket.create_connection((address.hostname, address.port)) as sock:
                key = base64.b64encode(os.urandom(16)).decode()
                sock.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n".encode()
                )
                # RST at once: gone before the server's first frame.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # Every one of them has been served (and has left) once the daemon answers a marker after.
    wait_until(lambda: daemon.service("svc")["state"] == "running", "the daemon to answer")
    status, _headers, _body = daemon.raw("GET", "/api/v1/services")
    assert status == 200
    log = daemon.log_text() + daemon.stderr_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
