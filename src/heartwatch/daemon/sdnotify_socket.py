"""The daemon's ``NOTIFY_SOCKET``: programs written for systemd's watchdog work unchanged.

Each child gets ``NOTIFY_SOCKET=@heartwatch-<state id>``, an abstract unix datagram socket (no
file to clean up, no path length limit). The kernel attaches the sender's credentials to each
datagram (``SO_PASSCRED``/``SCM_CREDENTIALS``); the sender's pid is mapped to a service through
the ``HEARTWATCH_RUN_ID`` in its environment, which only processes inside that service's
process tree inherit. A datagram from anyone else is dropped and counted. File descriptors
passed along (``BARRIER=1`` in newer ``systemd-notify``) are closed once the datagram has been
handled, which is what tells the sender it was.

The daemon's own notifications to *its* supervisor (systemd) are in ``systemd.py``.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable

from loguru import logger

from heartwatch.core.sdnotify import MAX_DATAGRAM, Notice, NoticeError, parse_notice
from heartwatch.core.throttle import LogThrottle
from heartwatch.daemon.ingest import IngestStats

_UCRED = struct.Struct("3i")  # pid, uid, gid
_MAX_FDS = 16

NoticeSink = Callable[[str, Notice], None]
Identify = Callable[[int], str | None]


class SdNotifySocket:
    """The socket children's sd_notify datagrams arrive on; each is handed to ``sink`` with
    the service it came from."""

    def __init__(self, name: str, sink: NoticeSink, identify: Identify, stats: IngestStats) -> None:
        self.address = "@" + name
        self.stats = stats
        self._sink = sink
        self._identify = identify
        self._loop = asyncio.get_running_loop()
        self._throttle = LogThrottle()
        self._sock: socket.socket | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.bind("\0" + self.address[1:])
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._read_all)
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _read_all(self) -> None:
        assert self._sock is not None
        space = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(_MAX_FDS * 4)
        for _ in range(256):  # bounded, so a flood cannot starve the loop
            try:
                data, ancillary, _flags, _addr = self._sock.recvmsg(MAX_DATAGRAM, space)
            except (BlockingIOError, InterruptedError):
                return
            pid, fds = _parse_ancillary(ancillary)
            try:
                self._receive(data, pid)
            finally:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def _receive(self, data: bytes, pid: int | None) -> None:
        service = self._identify(pid) if pid else None
        if service is None:
            self._drop("unknown_sender", f"a datagram from pid {pid}, outside every service")
            return
        try:
            notice = parse_notice(data)
        except NoticeError as error:
            self._drop("malformed", f"{service}: {error}")
            return
        self._sink(service, notice)

    def _drop(self, code: str, detail: str) -> None:
        self.stats.errors["notify", code] += 1
        suppressed = self._throttle.admit(code, self._loop.time())
        if suppressed is not None:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            logger.warning("notify socket: dropped {}{}", detail, more)


def _parse_ancillary(ancillary: list[tuple[int, int, bytes]]) -> tuple[int | None, list[int]]:
    pid: int | None = None
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
            pid = _UCRED.unpack_from(payload)[0]
        elif kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
            fds.extend(received)
    return pid, fds
