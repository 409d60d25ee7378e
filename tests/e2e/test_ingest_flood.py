"""Floods on the heartbeat port must not cost a healthy service its life.

A real daemon in a subprocess watches ``steady``, a worker beating every 0.2 s with a
``heartbeat_timeout`` of 3 s, while the test floods the heartbeat port: with connections, past
the daemon's open-files limit (lowered to 400 for the test), and with messages, 100 connections
sending as fast as they can. Throughout, the API answers; afterwards ``steady`` is still the
same process, never marked unresponsive, and the daemon's log holds no traceback.
"""

from __future__ import annotations

import resource
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from e2e.support import (
    Daemon,
    Pipeline,
    duration,
    hold_still,
    scaled,
    wait_until,
    worker_command,
)

pytestmark = pytest.mark.e2e

OPEN_FILES = 400  # the daemon's limit in these tests: its connection cap becomes 400 - 256


def start_daemon_with_open_files(pipeline: Pipeline, limit: int) -> Daemon:
    """``heartwatch run`` as ``Pipeline.start_daemon`` does, with RLIMIT_NOFILE set to ``limit``
    (soft and hard, so that the daemon cannot raise it)."""

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    stderr = (pipeline.folder / f"daemon-{len(pipeline.daemons)}.stderr").open("wb")
    popen = subprocess.Popen(
        [sys.executable, "-m", "heartwatch", "run", "-c", str(pipeline.config_path)],
        stdin=subprocess.DEVNULL,
        stdout=stderr,
        stderr=stderr,
        cwd=pipeline.folder,
        preexec_fn=lower_limit,
    )
    daemon = Daemon(pipeline, popen, stderr)
    pipeline.daemons.append(daemon)
    daemon.wait_listening()
    return daemon


def steady_daemon(pipeline: Pipeline) -> tuple[Daemon, int]:
    pipeline.write_config(
        [
            {
                "name": "steady",
                "command": worker_command("--beat", "0.2"),
                "heartbeat_timeout": duration(3),
                "startup_grace": duration(10),
            }
        ]
    )
    daemon = start_daemon_with_open_files(pipeline, OPEN_FILES)
    pid: int = daemon.wait_running("steady")["pid"]
    return daemon, pid


def connect_many(address: tuple[str, int], count: int, timeout: float) -> list[socket.socket]:
    """``count`` connections opened at once (non-blocking); those that connected in time."""
    selector = selectors.DefaultSelector()
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(address)
        selector.register(sock, selectors.EVENT_WRITE)
    connected = []
    deadline = time.monotonic() + scaled(timeout)
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(0.1):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            selector.unregister(ready)
            if ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected.append(ready)
            else:
                ready.close()
    for key in list(selector.get_map().values()):
        assert isinstance(key.fileobj, socket.socket)
        key.fileobj.close()
    selector.close()
    return connected


def keeps_answering(daemon: Daemon, pid: int) -> Callable[[], bool]:
    """A check for ``hold_still``: the API answers and ``steady`` is the same, running."""

    def check() -> bool:
        started = time.monotonic()
        status = daemon.service("steady")
        assert time.monotonic() - started < scaled(5.0), "the API answered, but slowly"
        return bool(status["state"] == "running" and status["pid"] == pid)

    return check


def assert_steady_unharmed(pipeline: Pipeline, daemon: Daemon, pid: int) -> None:
    status = daemon.service("steady")
    assert (status["state"], status["pid"], status["restarts"]) == ("running", pid, 0), status
    assert [e.pid for e in pipeline.events("start")] == [pid], "steady was restarted"
    log = daemon.log_text()
    assert "unresponsive" not in log, log[-3000:]
    assert "Traceback" not in log + daemon.stderr_text(), log[-3000:]


def test_connection_burst_past_the_open_files_limit_spares_a_healthy_service(
    pipeline: Pipeline,
) -> None:
    """1500 connections at once against a daemon allowed 400 descriptors: the cap holds, no
    traceback per refused accept, the API answers, and ``steady`` is never restarted."""
    daemon, pid = steady_daemon(pipeline)
    crowd = connect_many(daemon.tcp_address, 1500, timeout=15.0)
    try:
        assert len(crowd) >= 500  # handshakes the kernel completed; the rest were turned away
        before = daemon.service("steady")["messages"]
        hold_still(keeps_answering(daemon, pid), "steady running and the API answering", 4.0)
        # The hold meant something: the daemon kept taking steady's beats (every 0.2 s) in.
        wait_until(
            lambda: daemon.service("steady")["messages"] >= before + 5,
            "steady's beats counted during the burst",
        )
        ingest = daemon.request("GET", "/api/v1/ingest")
        assert ingest["connections_open"] <= OPEN_FILES - 256
        # The cap said what it did: newcomers closed (refused or by eviction), or paused accepts.
        closed = ingest["connections_evicted"] + ingest["connections_refused"]
        assert closed + ingest["accept_pauses"] > 0, ingest
    finally:
        for sock in crowd:
            sock.close()
    hold_still(keeps_answering(daemon, pid), "steady running after the burst", 2.0)
    assert_steady_unharmed(pipeline, daemon, pid)
    lines = [line for line in daemon.log_text().splitlines() if "ingest tcp" in line]
    assert len(lines) <= 6, "\n".join(lines[:20])  # rate-limited: a line per kind per 10 s


FLOOD = r"""
import selectors, socket, sys, time

port, connections, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
line = b'{"type":"heartbeat","service":"steady-flood"}\n'
chunk = line * (65536 // len(line))
selector = selectors.DefaultSelector()
offsets = {}
for _ in range(connections):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    selector.register(sock, selectors.EVENT_WRITE)
    offsets[sock] = 0
print("ready", flush=True)
sent, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    for key, _ in selector.select(0.5):
        sock = key.fileobj
        n = sock.send(chunk[offsets[sock]:])
        offsets[sock] = (offsets[sock] + n) % len(chunk)
        sent += n
for sock in offsets:
    sock.close()
print(sent // len(line), flush=True)
"""


def test_message_flood_spares_a_healthy_service(pipeline: Pipeline) -> None:
    """100 connections sending as fast as they can for 5 s: the API answers throughout,
    ``steady``'s beats still count, and it is never marked unresponsive."""
    pipeline.write_config(
        [
            {
                "name": "steady",
                "command": worker_command("--beat", "0.2"),
                "heartbeat_timeout": duration(3),
                "startup_grace": duration(10),
            },
            {"name": "steady-flood", "heartbeat_timeout": "1h", "startup_grace": "1h"},
        ]
    )
    daemon = start_daemon_with_open_files(pipeline, OPEN_FILES)
    pid: int = daemon.wait_running("steady")["pid"]
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, str(daemon.tcp_address[1]), "100", str(scaled(5.0))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert flood.stdout is not None
    try:
        assert flood.stdout.readline().strip() == "ready"
        before = daemon.service("steady")["messages"]
        hold_still(keeps_answering(daemon, pid), "steady running during the flood", 4.0)
        assert daemon.service("steady")["messages"] > before, "steady's beats were not counted"
        assert int(flood.stdout.readline()) > 0
        assert flood.wait(scaled(30)) == 0
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
        flood.stdout.close()
    flooded = daemon.wait_service("steady-flood", lambda s: s["messages"] > 0, "flood counted")
    assert flooded["messages"] > 10_000
    assert_steady_unharmed(pipeline, daemon, pid)
