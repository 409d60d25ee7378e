"""``Heartbeat``: say "alive" and "I produced data" from inside a work loop, at no risk to it.

Every call does a few non-blocking system calls under a lock and returns: it never raises into
the application and never waits for the daemon. No thread runs in the background; each call
also moves the connection along:

- disconnected: when the reconnect delay (50 ms doubling to 2 s) has passed, start a
  non-blocking connect and return;
- connecting: a zero-timeout ``select`` says whether it completed;
- connected: a peek tells whether the daemon closed the connection (it never sends anything),
  then whatever the ``Outbox`` has is sent without blocking. What the kernel does not take now
  waits for the next call, and meanwhile beats coalesce and events queue up to their bound.

With ``udp=True`` each message is one datagram, and nothing is ever waited for.

Heartbeats are rate-limited: a ``beat()`` within ``min_interval`` (100 ms) of the last send only
marks one beat pending, which goes out with the next call after the interval. A loop turning
thousands of times a second thus costs a clock read per turn instead of a system call, and a
loop that hangs stops sending, as it should; the daemon's view is at most ``min_interval`` old,
against heartbeat timeouts of seconds. Data events, ``ready()`` and ``status()`` are sent at once.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from heartwatch.client.address import resolve_target, token_for
from heartwatch.client.wallclock import stamped_outbox

_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EAGAIN}


class Heartbeat:
    """A heartbeat client. With no arguments it uses ``HEARTWATCH_ADDR`` and ``HEARTWATCH_SERVICE``.

    >>> hb = Heartbeat()
    >>> for item in work():
    ...     hb.beat()
    ...     if capture(item):
    ...         hb.event("poiid", {"id": item.id})
    """

    def __init__(
        self,
        service: str | None = None,
        address: str | tuple[str, int] | None = None,
        *,
        udp: bool = False,
        max_events: int = 1000,
        reconnect_initial: float = 0.05,
        reconnect_max: float = 2.0,
        connect_timeout: float = 5.0,
        min_interval: float = 0.1,
        token: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service, self.address, self.problem = resolve_target(service, address)
        self.udp = udp
        self.min_interval = min_interval
        self._clock = clock
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self.connect_timeout = connect_timeout
        self.connects = 0  # connections established, for the curious and for tests
        self._outbox = stamped_outbox(self.service, max_events, token_for(self.address, token))
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._connecting_since: float | None = None
        self._unsent = b""
        self._unsent_starts_line = True
        self._retry_at = 0.0
        self._retry_delay = reconnect_initial
        self._sent_at = float("-inf")  # last time lines were handed to the kernel
        self._peeked_at = float("-inf")  # last check that the daemon had not closed

    # -- what the application calls ----------------------------------------------------------

    def beat(self) -> None:
        """I am alive (call it from inside the work loop, never from a side thread)."""
        with self._lock:
            self._outbox.beat()
            if self._unsent or self._clock() - self._sent_at >= self.min_interval:
                self._pump()

    def event(self, kind: str, data: Any = None) -> None:
        """I produced data of ``kind`` (for example ``"poiid"``); counts as alive too."""
        with self._lock:
            self._outbox.event(kind, data)
            self._pump()

    def status(self, text: str) -> None:
        """A short free-text status, shown by the daemon."""
        with self._lock:
            self._outbox.status(text)
            self._pump()

    def ready(self) -> None:
        """Startup is done: dependents may start now."""
        with self._lock:
            self._outbox.ready()
            self._pump()

    @property
    def connected(self) -> bool:
        return self._sock is not None and self._connecting_since is None

    @property
    def dropped(self) -> int:
        """Events lost to the buffer bound since this client was made."""
        return self._outbox.dropped_total

    def flush(self, timeout: float = 1.0) -> bool:
        """Try, for up to ``timeout`` seconds, to hand everything to the kernel. True if done."""
        deadline = time.monotonic() + timeout  # a real wait, whatever clock paces the beats
        while True:
            with self._lock:
                self._pump()
                done = self.connected and not self._unsent and not self._outbox.has_lines
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(0.005)

    def close(self) -> None:
        """Flush briefly and close the connection."""
        self.flush(timeout=0.5)
        with self._lock:
            self._disconnect(requeue=False)

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- the connection, moved along by each call ----------------------------------------------

    def _pump(self) -> None:
        try:
            if self._sock is None and not self._connect():
                return
            if self._connecting_since is not None and not self._connect_done():
                return
            if self.udp:
                self._send_datagrams()
            else:
                self._send_stream()
        except Exception:  # OSError mostly; whatever it is, never into the application
            self._disconnect(requeue=True)

    def _connect(self) -> bool:
        now = self._clock()
        if self.address is None or now < self._retry_at:
            return False
        kind = socket.SOCK_DGRAM if self.udp else socket.SOCK_STREAM
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        sock = socket.socket(family, kind)
        sock.setblocking(False)
        if not self.udp:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(self.address)
        if code == 0:
            self._sock, self._connecting_since = sock, None
            self._connected()
            return True
        if code in _IN_PROGRESS:
            self._sock, self._connecting_since = sock, now
            return True
        sock.close()
        self._schedule_retry(now)
        return False

    def _connect_done(self) -> bool:
        assert self._sock is not None
        assert self._connecting_since is not None
        poller = select.poll()  # not select.select: it fails for descriptors above 1023
        poller.register(self._sock, select.POLLOUT)
        if not poller.poll(0):
            if self._clock() - self._connecting_since > self.connect_timeout:
                self._disconnect(requeue=True)
            return False
        if self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            self._disconnect(requeue=True)
            return False
        self._connecting_since = None
        self._connected()
        return True

    def _connected(self) -> None:
        self.connects += 1
        self._retry_delay = self.reconnect_initial

    def _send_stream(self) -> None:
        sock = self._sock
        assert sock is not None
        now = self._clock()
        if now - self._peeked_at >= self.min_interval:
            # The daemon never writes: readable means it closed (restarted). Checked at most
            # once per min_interval, as a system call costs more than all the rest of a call.
            self._peeked_at = now
            try:
                if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    raise ConnectionResetError("the daemon closed the connection")
            except BlockingIOError:
                pass  # nothing to read: the usual, healthy answer
        if not self._unsent:
            if not self._outbox.has_lines:
                return
            self._unsent, self._unsent_starts_line = self._outbox.take_lines(), True
        self._sent_at = self._clock()
        with contextlib.suppress(BlockingIOError):
            sent = sock.send(self._unsent)
            if sent:
                self._unsent_starts_line = self._unsent[sent - 1 : sent] == b"\n"
                self._unsent = self._unsent[sent:]

    def _send_datagrams(self) -> None:
        sock = self._sock
        assert sock is not None
        self._sent_at = self._clock()
        for line in self._outbox.take_lines().splitlines():
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                sock.send(line)  # a lost datagram is a lost heartbeat: the next one follows

    def _disconnect(self, requeue: bool) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._connecting_since = None, None
        if requeue and self._unsent:
            self._outbox.put_back(self._unsent, self._unsent_starts_line)
        self._unsent = b""
        if requeue:
            self._schedule_retry(self._clock())

    def _schedule_retry(self, now: float) -> None:
        self._retry_at = now + self._retry_delay
        self._retry_delay = min(self.reconnect_max, self._retry_delay * 2)
