"""Heartbeat ingest over TCP and UDP: thin asyncio protocols around ``heartwatch.core.wire``.

The fast path is a persistent TCP connection carrying newline-delimited JSON: no per-message
connect, no streams layer; each read of at most ``READ_SIZE`` bytes decodes every complete line
in it.
The original client's framing (one object per connection, no newline, ended by close) arrives as
the unterminated tail at EOF. UDP carries one object per datagram (newline-separated objects in
one datagram are accepted too).

Senders on other machines must show a token (``"token"`` in a message, see ``web/access.py``):
a TCP connection from elsewhere is trusted from its first message carrying a valid token on,
and until then its messages are refused (``unauthorized``); a UDP datagram from elsewhere must
carry the token in every message. Loopback senders need none, and cost nothing more.

Bad input never stops the daemon: every fault is counted by transport and code, logged at most
once per interval per code, and the connection stays usable after a bad line.

Under abuse. Connections are accepted here, not by asyncio's server, so that nothing is accepted
that the cap would not keep: at most ``ACCEPTS_PER_TURN`` per loop turn; beyond
``max_connections`` a newcomer evicts the lowest-ranked connection. Rank is earned by messages
the sink accepted, not by bytes: a connection that never delivered one (half-open, trickling a
never-ending line, sending junk, a stranger without a token) ranks below every connection that
did, oldest first; among the others, the one whose last accepted message is oldest goes first,
unless even that one delivered within ``evict_min_idle``: then the newcomer is accepted and
closed at once, so a burst of new connections cannot push out the workers that are beating,
and nobody's bytes can make a beating worker look idle. Two ordered tables (O(1) per accepted
message and per eviction; the evicted one leaves at once, so the next eviction closes another).
Out of descriptors (the kernel refuses ``accept``), the listener pauses for ``ACCEPT_PAUSE``
with one rate-limited log line, never a traceback per connection. Connections sending flat out
share the loop fairly (``heartwatch.core.fairshare``): only a few busy ones read per turn, so
timers such as heartbeat deadlines wait milliseconds, not a hundred reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import resource
import socket
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from loguru import logger

from heartwatch.core.fairshare import FairShare
from heartwatch.core.throttle import LogThrottle
from heartwatch.core.wire import LineDecoder, Message, WireError, parse_message, read_token

# Takes a message and its transport; returns None when accepted, else why it was refused
# (an error code such as "unknown_service").
MessageSink = Callable[[Message, str], str | None]
# Whether a sender at this address, showing this token (or None), may send heartbeats.
IngestCheck = Callable[[str | None, str | None], bool]

# Bytes read per call by a connection holding a fair-share slot. asyncio's default (256 KiB)
# is some 6000 messages, tens of milliseconds of work in one callback. 4 KiB (about 100
# messages) keeps a read near half a millisecond, and a recv per 100 messages costs little.
READ_SIZE = 4 * 1024
# Bytes read per call by any other connection: plenty for a worker's heartbeats, and small
# enough that even every connection of the cap becoming ready in one turn stays a short turn.
# A connection that fills it is busy, and competes for a slot.
LIGHT_READ_SIZE = 1024
# Busy connections reading at a time (``heartwatch.core.fairshare``): a loop turn handles at most
# this many full reads (about 2 ms) before its timers run, however many connections flood.
READ_SLOTS = 4
# Busy reads (one per turn) a slot holder has before it yields to a waiting connection.
READ_QUANTUM = 4
# A slot holder that has not read for this long gives its slot to a waiting connection.
SLOT_IDLE_AFTER = 0.05
# Connections accepted per loop turn at most: a connection flood costs each turn a bounded
# amount of work, and the descriptors of evicted connections (closed on the next turn) stay
# far below the reserve kept free beside the cap.
ACCEPTS_PER_TURN = 32
ACCEPT_BACKLOG = 1024
# Pause of the listener when the kernel refuses to accept (out of descriptors or memory).
ACCEPT_PAUSE = 0.25
# Beyond the cap, a connection that has delivered accepted messages is evicted for a newcomer
# only once its last one is at least this old (and only when no connection without any is left):
# a worker beating every second or faster is never pushed out by a burst of new connections.
EVICT_MIN_IDLE = 1.0

_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_ABSENT = object()  # what a table's ``pop`` returns for a connection not in it


@dataclass
class IngestStats:
    """Counters by transport: what arrived, what was refused and why."""

    messages: Counter[str] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    connections_total: int = 0  # accepted, including those closed at once
    connections_open: int = 0
    connections_evicted: int = 0  # closed for a newcomer beyond the cap
    connections_refused: int = 0  # newcomers closed at once: the cap was full of busy ones
    accept_pauses: int = 0  # the kernel refused to accept (descriptors), the listener paused
    reads_deferred: int = 0  # busy connections paused to let another have its turn


class Ingest:
    """Shared state of the TCP and UDP listeners: the sink, the counters, the connection cap."""

    def __init__(
        self,
        sink: MessageSink,
        *,
        max_line: int,
        max_connections: int,
        stats: IngestStats,
        may_ingest: IngestCheck | None = None,
        evict_min_idle: float = EVICT_MIN_IDLE,
    ) -> None:
        self.sink = sink
        self.may_ingest = may_ingest
        self.max_line = max_line
        self.max_connections = max_connections
        self.evict_min_idle = evict_min_idle
        self.stats = stats
        self.share: FairShare[_TcpConnection] = FairShare(READ_SLOTS, READ_QUANTUM, SLOT_IDLE_AFTER)
        self._throttle = LogThrottle(interval=10.0)
        # Open connections that never delivered an accepted message, oldest first: evicted
        # before any in ``_delivered``.
        self._unproven: OrderedDict[_TcpConnection, None] = OrderedDict()
        # Those that did, the one whose last accepted message is oldest first (moved to the
        # end at each read that delivered one).
        self._delivered: OrderedDict[_TcpConnection, None] = OrderedDict()
        self._starting: set[asyncio.Task[object]] = set()
        self._loop = asyncio.get_running_loop()
        self._listener: socket.socket | None = None
        self._accept_timer: asyncio.TimerHandle | None = None
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._udp: asyncio.DatagramTransport | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen for TCP and UDP on ``host:port`` (port 0: any free port, the same for both)."""
        infos = await self._loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        for _attempt in range(20):
            listener = _listen(family, address)
            bound = listener.getsockname()
            try:
                udp, _ = await self._loop.create_datagram_endpoint(
                    lambda: _UdpReceiver(self), local_addr=(host, bound[1])
                )
            except OSError:
                listener.close()
                if port:
                    raise
                continue  # the TCP port's UDP twin is taken: try another free port
            self._listener, self._udp = listener, udp
            self._loop.add_reader(listener.fileno(), self._accept)
            return str(bound[0]), int(bound[1])
        raise OSError(f"no port free for both TCP and UDP on {host}")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        for timer in (self._accept_timer, self._sweep_timer):
            if timer is not None:
                timer.cancel()
        if self._listener is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        if self._starting:  # transports being made for accepted sockets: let them finish
            await asyncio.wait(set(self._starting), timeout=5.0)
        for connection in [*self._unproven, *self._delivered]:
            connection.close()
        self._unproven.clear()
        self._delivered.clear()
        await asyncio.sleep(0)  # aborted transports close their sockets on the next turn

    # -- accepting ---------------------------------------------------------------------------

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        for _ in range(ACCEPTS_PER_TURN):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the peer gave up while waiting in the backlog
            except OSError as error:
                self._pause_accepting(error)
                return
            self._admit(sock, address)

    def _pause_accepting(self, error: OSError) -> None:
        """The kernel refuses to accept (typically out of descriptors): the listener stays
        readable, so stop watching it for a moment instead of failing again at once."""
        self.stats.accept_pauses += 1
        if self._listener is not None:
            self._loop.remove_reader(self._listener.fileno())
        self._accept_timer = self._loop.call_later(ACCEPT_PAUSE, self._resume_accepting)
        suppressed = self._throttle.admit("tcp:accept", self._loop.time())
        if suppressed is not None:
            reason = os.strerror(error.errno) if error.errno else str(error)
            if error.errno in _OUT_OF_RESOURCES:
                reason += f" (open connections {self.open_connections})"
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            logger.warning(
                "ingest tcp: cannot accept connections: {}; pausing accepts for {:g} s{}",
                reason,
                ACCEPT_PAUSE,
                more,
            )

    def _resume_accepting(self) -> None:
        self._accept_timer = None
        if self._listener is not None:
            self._loop.add_reader(self._listener.fileno(), self._accept)

    def _admit(self, sock: socket.socket, address: tuple[object, ...]) -> None:
        now = self._loop.time()
        self.stats.connections_total += 1
        if self.open_connections >= self.max_connections and not self._evict_lowest(now):
            sock.close()  # accepted and closed at once: the backlog keeps draining
            self.stats.connections_refused += 1
            self._note(
                "refused",
                f"at the cap of {self.open_connections} connections, each delivered a "
                f"message within {self.evict_min_idle:g} s: closed a new connection at once",
            )
            return
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # notice vanished peers
        except OSError:
            sock.close()  # reset before we saw it
            return
        peer = str(address[0]) if address else None
        connection = _TcpConnection(self, peer)
        self._unproven[connection] = None
        self.stats.connections_open = self.open_connections
        task = self._loop.create_task(self._loop.connect_accepted_socket(lambda: connection, sock))
        self._starting.add(task)
        task.add_done_callback(functools.partial(self._started, connection, sock))

    def _started(
        self, connection: _TcpConnection, sock: socket.socket, task: asyncio.Task[object]
    ) -> None:
        self._starting.discard(task)
        if task.cancelled() or task.exception() is not None:
            sock.close()
            self.remove(connection)

    @property
    def open_connections(self) -> int:
        return len(self._unproven) + len(self._delivered)

    def _evict_lowest(self, now: float) -> bool:
        """Close the lowest-ranked connection, if one may go; whether one was closed."""
        if self._unproven:
            lowest = next(iter(self._unproven))
            why = "closed the oldest that never delivered a message"
        else:
            lowest = next(iter(self._delivered))
            assert lowest.delivered_at is not None
            if now - lowest.delivered_at < self.evict_min_idle:
                return False
            why = "closed the one whose last message is oldest"
        self.remove(lowest)  # at once: the next eviction picks another
        lowest.close()
        self.stats.connections_evicted += 1
        self._note("evicted", f"too many connections: {why}")
        return True

    def delivered(self, connection: _TcpConnection, now: float) -> None:
        """``connection`` delivered an accepted message: it ranks above those quiet longer."""
        if connection.delivered_at is not None:
            try:
                self._delivered.move_to_end(connection)
            except KeyError:
                return  # it was removed (evicted, or lost) before its lines were handled
        elif self._unproven.pop(connection, _ABSENT) is not _ABSENT:
            self._delivered[connection] = None
        connection.delivered_at = now

    def _note(self, code: str, detail: str) -> None:
        self.stats.errors["tcp", code] += 1
        suppressed = self._throttle.admit(f"tcp:{code}", self._loop.time())
        if suppressed is not None:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            logger.warning("ingest tcp: {}{}", detail, more)

    def remove(self, connection: _TcpConnection) -> None:
        table = self._unproven if connection.delivered_at is None else self._delivered
        if table.pop(connection, _ABSENT) is not _ABSENT:
            self.stats.connections_open = self.open_connections
        self.resume(self.share.forget(connection, self._loop.time()))

    # -- fair share ----------------------------------------------------------------------------

    def resume(self, connections: tuple[_TcpConnection, ...]) -> None:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.resume_reading()

    def defer(self, connection: _TcpConnection) -> None:
        assert connection.transport is not None
        connection.transport.pause_reading()
        self.stats.reads_deferred += 1
        if self._sweep_timer is None:
            self._sweep_timer = self._loop.call_later(SLOT_IDLE_AFTER, self._sweep)

    def _sweep(self) -> None:
        self._sweep_timer = None
        self.resume(self.share.sweep(self._loop.time()))
        if self.share.waiting:
            self._sweep_timer = self._loop.call_later(SLOT_IDLE_AFTER, self._sweep)

    # -- messages ----------------------------------------------------------------------------

    def receive_lines(self, lines: list[bytes], transport: str) -> int:
        """Hand ``lines`` to the sink; how many it accepted."""
        sink, count = self.sink, 0
        for line in lines:
            try:
                message = parse_message(line)
            except WireError as error:
                self.receive_error(transport, error.code, error.detail)
                continue
            refused = sink(message, transport)
            if refused is None:
                count += 1
            else:
                detail = f"service {message.service!r}, type {message.kind!r}"
                self.receive_error(transport, refused, f"{refused}: {detail}")
        self.stats.messages[transport] += count
        return count

    def admit(self, lines: list[bytes], transport: str, peer: str | None) -> list[bytes]:
        """The lines from an untrusted peer from the first one carrying a valid token on."""
        assert self.may_ingest is not None
        for index, line in enumerate(lines):
            if self.may_ingest(peer, read_token(line)):
                return lines[index:]
            self.receive_error(transport, "unauthorized", f"no valid token from {peer}")
        return []

    def is_trusted(self, peer: str | None) -> bool:
        """Whether a sender needs no token: there is no rule, or it is on this machine."""
        return self.may_ingest is None or self.may_ingest(peer, None)

    def receive_error(self, transport: str, code: str, detail: str) -> None:
        self.stats.errors[transport, code] += 1
        suppressed = self._throttle.admit(f"{transport}:{code}", self._loop.time())
        if suppressed is not None:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            logger.warning("ingest {}: dropped a message, {}{}", transport, detail, more)


def _listen(family: int, address: tuple[object, ...]) -> socket.socket:
    """A non-blocking listening socket bound to ``address`` (as asyncio's servers set it up)."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind(address)
        listener.listen(ACCEPT_BACKLOG)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener


class _TcpConnection(asyncio.BufferedProtocol):
    def __init__(self, ingest: Ingest, peer: str | None) -> None:
        self.ingest = ingest
        self.decoder = LineDecoder(ingest.max_line)
        self.transport: asyncio.Transport | None = None
        # When it last delivered a message the sink accepted (None: never); its rank at the
        # cap. Bytes alone do not count: a trickle of them must not outrank a beating worker.
        self.delivered_at: float | None = None
        self.peer = peer
        self.trusted = ingest.is_trusted(peer)
        self.closing = False
        self._buffer = memoryview(bytearray(READ_SIZE))
        self._light = self._buffer[:LIGHT_READ_SIZE]
        self._offered = 0  # the size of the buffer handed out for the read under way

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.closing:  # evicted while its transport was being made
            transport.abort()

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer = self._buffer if self.ingest.share.holds_slot(self) else self._light
        self._offered = len(buffer)
        return buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self.closing:
            return
        self.data_received(self._buffer[:nbytes].tobytes())
        ingest = self.ingest
        turn = ingest.share.read(self, nbytes == self._offered, ingest._loop.time())
        if turn.pause and not self.closing:
            ingest.defer(self)
        if turn.resume:
            ingest.resume(turn.resume)

    def data_received(self, data: bytes) -> None:
        oversized = self.decoder.oversized
        lines = self.decoder.receive_data(data)
        if self.decoder.oversized != oversized:
            limit = self.decoder.max_line
            self.ingest.receive_error("tcp", "too_long", f"a line longer than {limit} bytes")
        if lines:
            self._receive(lines)

    def eof_received(self) -> bool:
        tail = self.decoder.receive_eof()
        if tail is not None:  # the original framing: one object, no newline, ended by close
            self._receive([tail])
        return False

    def _receive(self, lines: list[bytes]) -> None:
        if not self.trusted:
            lines = self.ingest.admit(lines, "tcp", self.peer)
            if not lines:
                self.close()  # no token: a stranger must not hold a connection slot
                return
            self.trusted = True
        ingest = self.ingest
        if ingest.receive_lines(lines, "tcp") and not self.closing:
            ingest.delivered(self, ingest._loop.time())

    def connection_lost(self, exc: Exception | None) -> None:
        self.ingest.remove(self)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


class _UdpReceiver(asyncio.DatagramProtocol):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        lines = [line for line in data.split(b"\n") if line.strip()]
        peer = str(addr[0])
        if lines and not self.ingest.is_trusted(peer):
            lines = [line for line in lines if self.ingest.admit([line], "udp", peer)]
        if lines:
            self.ingest.receive_lines(lines, "udp")

    def error_received(self, exc: Exception) -> None:
        self.ingest.receive_error("udp", "socket", str(exc))


# Descriptors kept free for what is not a heartbeat connection: service pipes and pidfds,
# output files, log followers, HTTP and websocket clients, the notify socket.
_FD_RESERVE = 256


def connection_cap(wanted: int) -> int:
    """Raise the open-files soft limit to the hard one, and keep the connection cap below it.

    With the cap under the limit, a crowd of idle peers is evicted by the cap before the
    kernel refuses new descriptors, which would also stop services from being spawned.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    cap = max(16, min(wanted, soft - _FD_RESERVE))
    if cap < wanted:
        logger.warning(
            "max_connections {} lowered to {}: the open-files limit is {}", wanted, cap, soft
        )
    return cap
