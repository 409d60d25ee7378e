"""Recovery end to end: a hang recovers the group in order, a crash restarts, a loop gives up."""

from __future__ import annotations

import os
import signal

import pytest

from e2e.support import (
    Pipeline,
    alive,
    capture,
    duration,
    hold_still,
    wait_until,
    worker_command,
)

pytestmark = pytest.mark.e2e


def test_hang_restarts_group_in_dependency_order(pipeline: Pipeline) -> None:
    """A SIGSTOPped collector is found hung; it stops before its emulator, which starts first."""
    pipeline.write_config(
        [
            {
                "name": "emulator",
                "command": worker_command(),
                "ready": duration(0.5),
                "stop_timeout": duration(5),
            },
            {
                "name": "collector",
                "command": worker_command("--beat", "0.1"),
                "requires": ["emulator"],
                "heartbeat_timeout": duration(1),
                "startup_grace": duration(5),
                "restart": "group",
                "stop_timeout": duration(5),
            },
        ]
    )
    daemon = pipeline.start_daemon()
    emulator = daemon.wait_running("emulator")["pid"]
    collector = daemon.wait_running("collector")["pid"]

    os.kill(collector, signal.SIGSTOP)  # alive, port open, but silent: a hang

    status = daemon.wait_service(
        "collector",
        lambda s: s["state"] == "running" and s["pid"] not in (None, collector),
        "running again with a new pid",
    )
    new_collector = status["pid"]
    new_emulator = daemon.wait_running("emulator")["pid"]
    assert new_emulator != emulator
    assert status["restarts"] >= 1
    facts = [(e.what, e.service, e.pid) for e in pipeline.events() if e.what in ("start", "stop")]
    assert facts == [
        ("start", "emulator", emulator),
        ("start", "collector", collector),
        ("stop", "collector", collector),
        ("stop", "emulator", emulator),
        ("start", "emulator", new_emulator),
        ("start", "collector", new_collector),
    ]
    wait_until(lambda: "no heartbeat for" in daemon.log_text(), "the hang in the daemon log", 5)


def test_crash_is_restarted_with_its_exit_reported(pipeline: Pipeline) -> None:
    """A worker exiting with code 3 after its first beat is respawned; last_exit says why."""
    marker = pipeline.folder / "crashed-once"
    pipeline.write_config(
        [
            {
                "name": "worker",
                "command": worker_command(
                    "--beat", "0.1", "--crash-once", str(marker), "--crash-code", "3"
                ),
                "heartbeat_timeout": duration(5),
                "startup_grace": duration(5),
            }
        ]
    )
    daemon = pipeline.start_daemon()
    crashed = wait_until(
        lambda: [e.pid for e in pipeline.events() if e.what == "exit"], "the first worker to crash"
    )
    status = daemon.wait_service(
        "worker",
        lambda s: s["state"] == "running" and s["pid"] not in (None, *crashed),
        "running again with a new pid",
    )
    assert status["restarts"] >= 1
    assert status["last_exit"] == "exit code 3"
    starts = [e.pid for e in pipeline.events() if e.what == "start"]
    assert starts == [crashed[0], status["pid"]]


def test_crash_loop_ends_in_failed_until_started(pipeline: Pipeline) -> None:
    """A worker that always exits is restarted max_restarts times, left failed, then started."""
    pipeline.write_config(
        [
            {
                "name": "worker",
                "command": worker_command("--exit-now", "1"),
                "max_restarts": 2,
                "restart_window": "1m",
                "backoff_initial": duration(0.1),
            }
        ]
    )
    daemon = pipeline.start_daemon()

    def starts() -> int:
        return sum(1 for e in pipeline.events() if e.what == "start")

    status = daemon.wait_service("worker", lambda s: s["state"] == "failed", "failed")
    assert status["pid"] is None
    assert status["restarts"] == 2
    assert status["last_exit"] == "exit code 1"
    assert "gave up" in status["reason"]
    assert starts() == 3
    hold_still(
        lambda: starts() == 3 and daemon.service("worker")["state"] == "failed",
        "no further start while failed",
        1.0,
    )

    answer = daemon.control("worker", "start")
    assert answer["state"] != "failed"
    wait_until(lambda: starts() > 3, "a new start after POST start")


def test_crash_leaves_no_grandchild_of_the_old_run(pipeline: Pipeline) -> None:
    """When a worker crashes, what it started dies too (even outside its process group), so a
    restart never leaves two copies of a grandchild running."""
    marker = pipeline.folder / "crashed-once"
    pipeline.write_config(
        [
            {
                "name": "worker",
                "command": worker_command(
                    "--beat", "0.1", "--crash-once", str(marker), "--grandchild", "escape"
                ),
                "heartbeat_timeout": duration(5),
                "stop_timeout": duration(1),
            }
        ]
    )
    daemon = pipeline.start_daemon()
    old, new = (capture(e.pid) for e in pipeline.wait_events("spawn", 2))
    daemon.wait_running("worker")
    assert alive(new)
    wait_until(lambda: not alive(old), f"the crashed run's grandchild {old.pid} to be ended", 5)


def test_a_command_that_cannot_start_is_a_failed_start_said_plainly(pipeline: Pipeline) -> None:
    """A missing executable or cwd is never "running (ready at start)": each attempt is a
    failed start, in one plain line, backed off and given up like a crash loop."""
    pipeline.write_config(
        [
            {
                "name": "collector",
                "command": "nonexist-hw-7f3 --x",
                "max_restarts": 1,
                "backoff_initial": duration(0.1),
            },
            {
                "name": "app",
                "command": worker_command(),
                "cwd": "/nonexistent",
                "max_restarts": 1,
                "backoff_initial": duration(0.1),
            },
        ]
    )
    daemon = pipeline.start_daemon()
    for name in ("collector", "app"):
        status = daemon.wait_service(name, lambda s: s["state"] == "failed", "failed")
        assert status["pid"] is None and status["restarts"] == 1, status
    reason = "no such executable 'nonexist-hw-7f3' (command \"nonexist-hw-7f3 --x\")"
    assert daemon.service("collector")["reason"] == (
        f"gave up after 1 restart in 300 s: cannot start: {reason}"
    )
    assert daemon.service("app")["last_exit"] == "cannot start: cwd /nonexistent does not exist"
    log = daemon.log_text()
    assert f"collector: cannot start: {reason}" in log, log
    assert "app: cannot start: cwd /nonexistent does not exist" in log, log
    assert "-> running" not in log, log  # never "starting -> running (ready at start)"
    assert "PosixPath" not in log and "Errno" not in log, log
    # What ``check`` warns about is in the log before the first start.
    assert "service[0] (collector).command: executable `nonexist-hw-7f3` not found" in log, log
    assert "service[1] (app).cwd: folder /nonexistent does not exist" in log, log
    output = (pipeline.log_dir / "collector.log").read_text()
    assert f"[heartwatch] cannot start: {reason}" in output
