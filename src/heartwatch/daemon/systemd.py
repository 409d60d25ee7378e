"""The daemon's own liveness under systemd (``Type=notify``, ``WatchdogSec=``).

When systemd starts the daemon with ``NOTIFY_SOCKET``, the daemon says ``READY=1`` once it
listens and its services are starting, and, with ``WATCHDOG_USEC``, says ``WATCHDOG=1`` every
half period from its event loop: if the loop hangs, the pings stop and systemd restarts the
daemon. These variables are the daemon's, so they are never passed on to its children (they
get heartwatch's own socket instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Mapping

from loguru import logger

SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        path = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        watchdog_pid = environ.get("WATCHDOG_PID")
        usec = environ.get("WATCHDOG_USEC", "")
        mine = watchdog_pid is None or watchdog_pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2_000_000 if usec.isdigit() and mine else None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")
        if self.watchdog_interval:
            self._ping()

    def stopping(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.send("STOPPING=1")

    def send(self, text: str) -> None:
        if not self.enabled:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(text.encode(), self.address)
            except OSError as error:
                logger.warning("cannot notify systemd at {}: {}", self.address, error)

    def _ping(self) -> None:
        self.send("WATCHDOG=1")
        assert self.watchdog_interval is not None
        with contextlib.suppress(RuntimeError):  # no loop: a one-shot use
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.watchdog_interval, self._ping)
