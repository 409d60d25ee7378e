"""The daemon's state directory: one daemon at a time, and no worker ever running twice.

- ``daemon.lock`` is held (``flock``) for the daemon's lifetime: a second daemon on the same
  state directory refuses to start.
- ``daemon.json`` says where the running daemon listens, so the CLI and tests find it even when
  it was asked for port 0.
- ``children.json`` records every live child as ``(pid, create_time)``. A daemon killed with
  SIGKILL leaves its children running; the next daemon ends them before starting new ones. The
  create time guards against a recycled pid. Each child also carries ``HEARTWATCH_STATE_ID`` in
  its environment, inherited by everything it starts, which finds descendants that escaped the
  recorded process group.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import psutil
from loguru import logger

from heartwatch.daemon.daemon_info import (
    read_daemon_info,
    remove_daemon_info,
    replace_json,
    write_daemon_info,
)
from heartwatch.daemon.processes import find_processes_with_env

STATE_ID_VARIABLE = "HEARTWATCH_STATE_ID"


class DaemonAlreadyRunning(RuntimeError):
    """Another daemon holds this state directory."""


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.state_id = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
        self._lock_fd = -1
        self._children: dict[str, dict[str, float]] = {}

    def acquire(self) -> None:
        """Take the lock or raise ``DaemonAlreadyRunning``."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = self.read_daemon_info() or {}
            raise DaemonAlreadyRunning(
                f"another heartwatch daemon (pid {info.get('pid', '?')}) uses {self.path}"
            ) from None
        self._lock_fd = fd

    def release(self) -> None:
        remove_daemon_info(self.path)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def write_daemon_info(self, **info: Any) -> None:
        write_daemon_info(self.path, **info)

    def read_daemon_info(self) -> dict[str, Any] | None:
        return read_daemon_info(self.path)

    def record_child(self, service: str, pid: int, create_time: float) -> None:
        self._children[service] = {"pid": pid, "create_time": create_time}
        replace_json(self.path / "children.json", self._children)

    def forget_child(self, service: str, pid: int) -> None:
        if self._children.get(service, {}).get("pid") == pid:
            del self._children[service]
            replace_json(self.path / "children.json", self._children)

    def end_stale_children(self, timeout: float = 5.0) -> list[int]:
        """End what a previous daemon left running; return the pids that were ended."""
        stale = {p.pid: p for p in self._recorded_processes() + self._marked_processes()}
        stale.pop(os.getpid(), None)
        for ancestor in psutil.Process().parents():
            stale.pop(ancestor.pid, None)
        if not stale:
            return []
        logger.warning(
            "ending {} process(es) left by a previous daemon: {}", len(stale), sorted(stale)
        )
        for process in stale.values():
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGTERM)
                process.send_signal(signal.SIGCONT)
        _, survivors = psutil.wait_procs(list(stale.values()), timeout=timeout)
        for process in survivors:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(survivors, timeout=timeout)
        replace_json(self.path / "children.json", {})
        return sorted(stale)

    def _recorded_processes(self) -> list[psutil.Process]:
        try:
            records = json.loads((self.path / "children.json").read_text())
        except (OSError, ValueError):
            return []
        found: list[psutil.Process] = []
        for record in records.values() if isinstance(records, dict) else []:
            try:
                process = psutil.Process(int(record["pid"]))
                if abs(process.create_time() - float(record["create_time"])) < 0.01:
                    found.append(process)
                    found.extend(process.children(recursive=True))
            except (psutil.Error, KeyError, TypeError, ValueError):
                continue
        return found

    def _marked_processes(self) -> list[psutil.Process]:
        return find_processes_with_env(STATE_ID_VARIABLE, self.state_id)
