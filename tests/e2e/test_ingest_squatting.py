"""Connections that trickle bytes on the heartbeat port must not get a healthy service restarted.

The review's scenario: a daemon with ``max_connections = 32`` watches ``victim``, a worker
beating every 3 s (``heartbeat_timeout`` 8 s), while 33 connections each send one byte (never a
newline) every 0.4 s and are topped up as they are closed. When any byte counted as activity,
the victim, quiet for 3 s between beats, was the one evicted, and its reconnects were refused:
it was restarted 5 times in 40 s. Rank is earned by accepted messages now, so the tricklers go.
"""

from __future__ import annotations

import socket
import time

import pytest

from e2e.support import Pipeline, duration, scaled, worker_command

pytestmark = pytest.mark.e2e

CAP = 32


def trickle(address: tuple[str, int], connections: int, seconds: float) -> int:
    """Keep ``connections`` open, each sending b"x" every 0.4 s, for ``seconds``; how many
    times the daemon closed one of them."""
    socks: list[socket.socket] = []
    closed = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            while len(socks) < connections:
                try:
                    sock = socket.create_connection(address, timeout=1.0)
                except OSError:
                    break
                sock.setblocking(False)
                socks.append(sock)
            alive = []
            for sock in socks:
                try:
                    sock.send(b"x")
                    try:
                        if sock.recv(1) == b"":
                            raise ConnectionResetError
                    except BlockingIOError:
                        pass
                    alive.append(sock)
                except OSError:
                    sock.close()
                    closed += 1
            socks = alive
            time.sleep(0.4)
    finally:
        for sock in socks:
            sock.close()
    return closed


def test_tricklers_at_the_cap_never_get_a_beating_worker_restarted(pipeline: Pipeline) -> None:
    pipeline.write_config(
        [
            {
                "name": "victim",
                "command": worker_command("--beat", "3"),
                "heartbeat_timeout": duration(8),
                "startup_grace": duration(10),
            }
        ],
        server={"max_connections": CAP},
    )
    daemon = pipeline.start_daemon()
    status = daemon.wait_running("victim")
    pid = status["pid"]
    daemon.wait_service("victim", lambda s: s["messages"] > 0, "victim's first beat")
    # 20 s: more than twice the heartbeat timeout, so an evicted and refused victim is down.
    closed = trickle(daemon.tcp_address, CAP + 1, scaled(20.0))
    assert closed > 0, "the cap never closed a trickler: the scenario did not reach it"
    status = daemon.service("victim")
    assert (status["state"], status["pid"], status["restarts"]) == ("running", pid, 0), status
    assert [e.pid for e in pipeline.events("start")] == [pid], "victim was restarted"
    log = daemon.log_text()
    assert "unresponsive" not in log, log[-3000:]
    assert "Traceback" not in log + daemon.stderr_text(), log[-3000:]
