"""Stopping end to end: nothing a service started outlives a stop or the daemon's shutdown."""

from __future__ import annotations

import os

import psutil
import pytest

from e2e.support import Pipeline, alive, capture, duration, wait_until, worker_command

pytestmark = pytest.mark.e2e


def test_stop_kills_child_ignoring_sigterm_with_its_grandchildren(pipeline: Pipeline) -> None:
    """A child ignoring SIGTERM dies by SIGKILL after stop_timeout, with every grandchild."""
    pipeline.write_config(
        [
            {
                "name": "stubborn",
                "command": worker_command(
                    "--ignore-term", "--grandchild", "same-ignore", "--grandchild", "escape-ignore"
                ),
                "stop_timeout": duration(1),
            }
        ]
    )
    daemon = pipeline.start_daemon()
    worker = daemon.wait_running("stubborn")["pid"]
    spawned = {e.detail: e.pid for e in pipeline.wait_events("spawn", 2)}
    assert set(spawned) == {"same-ignore", "escape-ignore"}
    processes = [capture(worker), *map(capture, spawned.values())]
    assert os.getsid(spawned["escape-ignore"]) != os.getsid(worker)  # it did leave the session

    assert daemon.control("stubborn", "stop")["name"] == "stubborn"

    wait_until(
        lambda: not any(alive(p) for p in processes),
        f"the worker and its grandchildren ({[p.pid for p in processes]}) to die",
        timeout=10,
    )
    status = daemon.wait_service("stubborn", lambda s: s["state"] == "stopped", "stopped")
    assert status["pid"] is None


def test_shutdown_stops_in_reverse_order_and_leaves_no_orphans(pipeline: Pipeline) -> None:
    """On SIGTERM the daemon stops dependents first, ends every descendant, and exits 0."""
    pipeline.write_config(
        [
            {"name": "base", "command": worker_command("--grandchild", "same")},
            {
                "name": "middle",
                "command": worker_command("--beat", "0.2", "--grandchild", "escape"),
                "requires": ["base"],
                "heartbeat_timeout": duration(5),
                "stop_timeout": duration(1),
            },
            {
                "name": "top",
                "command": worker_command("--grandchild", "same"),
                "requires": ["middle"],
            },
        ]
    )
    daemon = pipeline.start_daemon()
    workers = [daemon.wait_running(name)["pid"] for name in ("base", "middle", "top")]
    grandchildren = [e.pid for e in pipeline.wait_events("spawn", 3)]
    processes = [capture(pid) for pid in (*workers, *grandchildren)]

    assert daemon.terminate() == 0

    assert [p.pid for p in processes if alive(p)] == []
    assert pipeline.marked_processes() == []
    stops = [e.service for e in pipeline.events() if e.what == "stop"]
    assert stops == ["top", "middle", "base"]
    assert not psutil.pid_exists(daemon.pid)
