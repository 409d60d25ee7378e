"""The state directory and output files: one daemon at a time, stale children ended, rotation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from heartwatch.daemon.output import RotatingOutput
from heartwatch.daemon.statedir import STATE_ID_VARIABLE, DaemonAlreadyRunning, StateDir


def test_second_daemon_on_same_state_dir_is_refused(tmp_path: Path) -> None:
    """The lock is exclusive; releasing it lets the next daemon in."""
    first, second = StateDir(tmp_path), StateDir(tmp_path)
    first.acquire()
    first.write_daemon_info(tcp="127.0.0.1:1")
    with pytest.raises(DaemonAlreadyRunning, match=f"pid {os.getpid()}"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


def test_end_stale_children_ends_recorded_and_marked_processes(tmp_path: Path) -> None:
    """A recorded child and an unrecorded process carrying the state id are both ended."""
    state = StateDir(tmp_path)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    recorded = subprocess.Popen(sleeper)
    marked = subprocess.Popen(sleeper, env={**os.environ, STATE_ID_VARIABLE: state.state_id})
    stranger = subprocess.Popen(sleeper)
    try:
        state.record_child("worker", recorded.pid, psutil.Process(recorded.pid).create_time())
        ended = StateDir(tmp_path).end_stale_children(timeout=5.0)
        assert sorted(ended) == sorted([recorded.pid, marked.pid])
        assert recorded.wait(5) is not None and marked.wait(5) is not None
        assert stranger.poll() is None
    finally:
        for process in (recorded, marked, stranger):
            process.kill()
            process.wait()


def test_recorded_pid_reused_by_another_process_is_left_alone(tmp_path: Path) -> None:
    """A record whose create time does not match is a recycled pid, not our child."""
    state = StateDir(tmp_path)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state.record_child("worker", stranger.pid, 12345.0)
        assert StateDir(tmp_path).end_stale_children(timeout=1.0) == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_rotating_output_keeps_n_backups(tmp_path: Path) -> None:
    """Past max_bytes the file rotates to .1, .2 ...; the oldest beyond N is dropped."""
    path = tmp_path / "svc.log"
    output = RotatingOutput(path, max_bytes=100, backups=2)
    for i in range(10):
        output.write(f"{i:02d}".encode() * 20 + b"\n")  # 41 bytes
    output.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["svc.log", "svc.log.1", "svc.log.2"]
    assert path.read_bytes().startswith(b"0808") and path.read_bytes().endswith(b"0909\n")
    assert (tmp_path / "svc.log.2").read_bytes().startswith(b"04")


def test_rotating_output_appends_across_reopen(tmp_path: Path) -> None:
    """A daemon restart appends to the existing file and counts its size."""
    path = tmp_path / "svc.log"
    RotatingOutput(path, 1000, 1).write(b"before\n")
    output = RotatingOutput(path, 1000, 1)
    output.write(b"after\n")
    output.close()
    assert path.read_bytes() == b"before\nafter\n"
