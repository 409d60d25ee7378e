"""uvicorn's HTTP and websocket protocols, guarded against slow and oversized clients.

uvicorn has a keep-alive timeout but no deadline for a request to arrive, no bound on the
connections still sending one, and its websocket handshake computes a 414/431 answer for a
line too long and never writes it (the client waits forever). Here:

- every connection must deliver its request (head and body) within ``header_timeout`` of
  connecting, or of its first byte after a kept-alive response: else 408, closed;
- at most ``max_open`` connections (HTTP and websocket) are open at once: a newcomer beyond
  is answered 503 and closed at once, so idle websockets cannot take every descriptor; and
  websockets may hold three quarters of them, so that a crowd of them leaves room for the API;
- those still sending are in a ``WaitingRoom`` of bounded size: a newcomer beyond it pushes
  the oldest out (503, closed), so slow clients never lock a prompt one out;
- a request line, header or head beyond ``httplimits``' limits is answered 414 or 431 before
  the app sees it; a malformed request 400; each answer closes the connection;
- a websocket handshake the ``websockets`` library refuses is answered, not left hanging.

Each refusal is counted into one log line per kind every minute at most (``LogThrottle``).
The per-connection cost is one timer and one entry in an ordered dict.

After a crowd of connections has left (``StormWatch``), the memory it used is given back to
the OS: 2000 websocket clients at once took the daemon from 55 to 140 MB, and it stayed there,
held by reference cycles the collector had not reached yet and by freed memory glibc kept
(docs/benchmarks.md, "HTTP storm").
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any, ClassVar, cast

import h11
import psutil
from loguru import logger
from uvicorn.protocols.http.h11_impl import H11Protocol

from heartwatch.core.httplimits import (
    MAX_HEAD,
    Refusal,
    StormWatch,
    WaitingRoom,
    check_head,
    incomplete_head_refusal,
    malformed,
    refusal_response,
    request_timeout,
    too_many_connections,
    too_many_waiting,
    too_many_websockets,
)
from heartwatch.core.throttle import LogThrottle
from heartwatch.daemon.memory import return_memory_to_os
from heartwatch.daemon.ws_protocol import DroppingWebSocketProtocol

REFUSAL_LOG_INTERVAL = 60.0
SETTLE_DELAY = 1.0


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


class HttpGuard:
    """What every connection of one server shares: the deadline, the waiting room, the log."""

    def __init__(self, header_timeout: float, max_waiting: int, max_open: int) -> None:
        self.header_timeout = header_timeout
        self.max_open = max_open  # HTTP and websocket connections open at once
        # Websockets stay open as long as their clients like; plain requests come and go. So
        # websockets may take three quarters of the cap: a crowd of them leaves room for the API.
        self.max_websockets = max(1, max_open - max(4, max_open // 4))
        self.websockets = 0
        self.waiting: WaitingRoom[GuardedH11Protocol] = WaitingRoom(max_waiting)
        self.storm = StormWatch()
        self._throttle = LogThrottle(REFUSAL_LOG_INTERVAL)

    def opened(self) -> None:
        self.storm.opened()

    def closed(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.storm.closed(loop.time())
        if delay is not None:
            # A moment after the crowd left, so that its stragglers' garbage goes too.
            loop.call_later(delay + SETTLE_DELAY, self._settle)

    def _settle(self) -> None:
        peak = self.storm.peak
        before = _rss_mb()
        started = time.perf_counter()
        # The pause is the freeing of what the crowd left in reference cycles: the collector
        # would take it anyway, at a moment of its choosing; now the crowd is gone.
        found = return_memory_to_os()
        self.storm.settled(asyncio.get_running_loop().time())
        logger.info(
            "http: {} connections at the peak have left; memory given back to the OS in "
            "{:.0f} ms ({} objects in cycles freed; RSS {:.0f} -> {:.0f} MB)",
            peak,
            (time.perf_counter() - started) * 1000,
            found,
            before,
            _rss_mb(),
        )

    def note(self, refusal: Refusal, client: tuple[str, int] | None) -> None:
        suppressed = self._throttle.admit(refusal.code, time.monotonic())
        if suppressed is None:
            return
        peer = f"{client[0]}:{client[1]}" if client else "?"
        more = f" ({suppressed} more like it since the last line)" if suppressed else ""
        logger.warning(
            "http: answered {} {} to {}: {}{}",
            refusal.status,
            refusal.code,
            peer,
            refusal.message,
            more,
        )


class _WatchedConnection(h11.Connection):
    """h11's connection, telling its protocol when a request's head and its end arrive, and
    turning a protocol error into the refusal that says why."""

    def __init__(self, protocol: GuardedH11Protocol) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        # Weak: a strong one would make a cycle, freed only by the cyclic collector.
        self._protocol = weakref.ref(protocol)

    def next_event(self) -> Any:
        protocol = self._protocol()
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as error:
            if protocol is None:
                raise
            if error.error_status_hint == 431:
                refusal = incomplete_head_refusal(self.trailing_data[0])
            else:
                refusal = malformed(str(error))
            protocol.refuse(refusal)
            return h11.PAUSED  # uvicorn stops reading; the connection is closing
        if protocol is None:
            return event
        if isinstance(event, h11.Request):
            too_big = check_head(event.method, event.target, event.headers)
            if too_big is not None:
                protocol.refuse(too_big)
                return h11.PAUSED
            protocol.head_received()
        elif isinstance(event, h11.EndOfMessage):
            protocol.request_received()
        return event


class GuardedH11Protocol(H11Protocol):
    guard: ClassVar[HttpGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _WatchedConnection(self)
        self._deadline: asyncio.TimerHandle | None = None
        self._head_done = False  # the current request's head has arrived
        self._busy = False  # a request is being answered: later bytes are pipelined

    # -- uvicorn's protocol, extended --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(cast(asyncio.Transport, transport))
        guard = self.guard
        full = guard.storm.open >= guard.max_open
        guard.opened()  # counted either way: its connection_lost counts it out
        if full:  # beyond the cap: answered at once, before it costs a request's worth
            self.refuse(too_many_connections(guard.max_open))
            return
        self._await_request()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and not self._busy and not self.transport.is_closing():
            self._await_request()  # the first byte of the next request on a kept-alive one
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)
        self.guard.closed()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        # Handed over whole: the handshake is answered at once, and the websocket protocol
        # reports the connection's end to the guard (this one never hears of it).
        self._stop_waiting()
        guard = self.guard
        if guard.websockets >= guard.max_websockets:
            self.refuse(too_many_websockets(guard.max_websockets))
            return
        guard.websockets += 1  # counted out by the websocket protocol's connection_lost
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        self._busy = False
        super().on_response_complete()
        if (
            self._deadline is None
            and not self._busy
            and not self.transport.is_closing()
            and self.conn.trailing_data[0]
        ):
            self._await_request()  # part of a pipelined request is waiting already

    def shutdown(self) -> None:
        if not self.transport.is_closing():  # a refused one is closing: nothing to say
            super().shutdown()

    # -- what the watched connection reports -------------------------------------------------

    def head_received(self) -> None:
        self._head_done = True
        self._busy = True

    def request_received(self) -> None:
        self._stop_waiting()

    def refuse(self, refusal: Refusal) -> None:
        """Answer ``refusal`` (if no answer has begun) and close."""
        self._stop_waiting()
        if self.transport.is_closing():
            return
        self.guard.note(refusal, self.client)
        if self.cycle is None or not self.cycle.response_started or not self._head_done:
            self.transport.write(refusal_response(refusal))
        self.transport.close()

    # -- the deadline and the waiting room ---------------------------------------------------

    def _await_request(self) -> None:
        self._head_done = False
        guard = self.guard
        self._deadline = self.loop.call_later(guard.header_timeout, self._deadline_passed)
        evicted = guard.waiting.enter(self)
        if evicted is not None:
            evicted.refuse(too_many_waiting(guard.waiting.capacity))

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.guard.waiting.leave(self)

    def _deadline_passed(self) -> None:
        self._deadline = None
        self.refuse(request_timeout(self.guard.header_timeout))


class GuardedWebSocketProtocol(DroppingWebSocketProtocol):
    """uvicorn's websocket protocol, writing the answer to a handshake ``websockets`` refused
    (request line or header too long, too many headers, not HTTP) and closing; and telling
    the guard when the connection ends."""

    guard: ClassVar[HttpGuard | None] = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.guard is not None:
            self.guard.websockets -= 1
            self.guard.closed()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if (
            not self.handshake_initiated
            and self.conn.handshake_exc is not None
            and not self.transport.is_closing()
        ):
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()


def guarded_protocols(
    header_timeout: float, max_waiting: int, max_open: int
) -> tuple[type[GuardedH11Protocol], type[GuardedWebSocketProtocol]]:
    """The protocol classes to give ``uvicorn.Config(http=..., ws=...)``, sharing one guard."""

    shared = HttpGuard(header_timeout, max_waiting, max_open)

    class Http(GuardedH11Protocol):
        guard = shared

    class WebSocket(GuardedWebSocketProtocol):
        guard = shared

    return Http, WebSocket
