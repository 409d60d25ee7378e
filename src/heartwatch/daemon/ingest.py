"""Heartbeat ingest over TCP and UDP: thin asyncio protocols around ``heartwatch.wire``.

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
once per interval per code, and the connection stays usable after a bad line. The number of
open connections is capped; a new one beyond the cap evicts the one idle longest, so a crowd of
idle or half-open sockets cannot lock real clients out.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from loguru import logger

from heartwatch.throttle import LogThrottle
from heartwatch.wire import LineDecoder, Message, WireError, parse_message, read_token

# Takes a message and its transport; returns None when accepted, else why it was refused
# (an error code such as "unknown_service").
MessageSink = Callable[[Message, str], str | None]
# Whether a sender at this address, showing this token (or None), may send heartbeats.
IngestCheck = Callable[[str | None, str | None], bool]


@dataclass
class IngestStats:
    """Counters by transport: what arrived, what was refused and why."""

    messages: Counter[str] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    connections_total: int = 0
    connections_open: int = 0
    connections_evicted: int = 0


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
    ) -> None:
        self.sink = sink
        self.may_ingest = may_ingest
        self.max_line = max_line
        self.max_connections = max_connections
        self.stats = stats
        self._throttle = LogThrottle(interval=10.0)
        self._connections: set[_TcpConnection] = set()
        self._loop = asyncio.get_running_loop()
        self._tcp: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen for TCP and UDP on ``host:port`` (port 0: any free port, the same for both)."""
        for _attempt in range(20):
            server = await self._loop.create_server(
                lambda: _TcpConnection(self), host, port, reuse_address=True, backlog=1024
            )
            bound = server.sockets[0].getsockname()
            try:
                udp, _ = await self._loop.create_datagram_endpoint(
                    lambda: _UdpReceiver(self), local_addr=(host, bound[1])
                )
            except OSError:
                server.close()
                if port:
                    raise
                continue  # the TCP port's UDP twin is taken: try another free port
            self._tcp, self._udp = server, udp
            return str(bound[0]), int(bound[1])
        raise OSError(f"no port free for both TCP and UDP on {host}")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for connection in list(self._connections):
                connection.close()
            await self._tcp.wait_closed()

    def receive_lines(self, lines: list[bytes], transport: str) -> None:
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

    def add(self, connection: _TcpConnection) -> None:
        if len(self._connections) >= self.max_connections:
            idlest = min(self._connections, key=lambda c: c.last_active_at)
            idlest.close()
            self.stats.connections_evicted += 1
            self.receive_error("tcp", "evicted", "too many connections: closed the idlest")
        self._connections.add(connection)
        self.stats.connections_total += 1
        self.stats.connections_open = len(self._connections)

    def remove(self, connection: _TcpConnection) -> None:
        self._connections.discard(connection)
        self.stats.connections_open = len(self._connections)


# Bytes read per call. asyncio's default (256 KiB) is some 6000 messages, tens of milliseconds
# of work in one callback; with many busy connections timers (deadlines!) would wait seconds.
# 4 KiB (about 100 messages) keeps each callback near half a millisecond: even 100 saturating
# connections delay a timer by tens of milliseconds, not seconds. A recv per 100 messages costs
# little.
READ_SIZE = 4 * 1024


class _TcpConnection(asyncio.BufferedProtocol):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self.decoder = LineDecoder(ingest.max_line)
        self.transport: asyncio.Transport | None = None
        self.last_active_at = 0.0
        self.peer: str | None = None
        self.trusted = True
        self._buffer = memoryview(bytearray(READ_SIZE))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # notice peers that vanished without a FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.last_active_at = self.ingest._loop.time()
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if peername else None
        self.trusted = self.ingest.is_trusted(self.peer)
        self.ingest.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        self.last_active_at = self.ingest._loop.time()
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
        self.ingest.receive_lines(lines, "tcp")

    def connection_lost(self, exc: Exception | None) -> None:
        self.ingest.remove(self)

    def close(self) -> None:
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
