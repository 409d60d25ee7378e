"""The heartbeat ingest under abuse: the connection cap, running out of descriptors, floods.

Each test runs the real ``Ingest`` on 127.0.0.1 port 0 and drives it with real sockets; the
floods come from a separate process, so that they never share this interpreter's lock with
the loop they load.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from heartwatch.core.wire import Message
from heartwatch.daemon.ingest import Ingest, IngestStats

BEAT = b'{"type":"heartbeat","service":"a"}\n'


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def run_with_ingest(
    body: Callable[[Ingest, tuple[str, int], list[Message]], Awaitable[None]], **options: Any
) -> IngestStats:
    async def main() -> IngestStats:
        received: list[Message] = []

        def sink(message: Message, transport: str) -> str | None:
            received.append(message)
            return None

        stats = IngestStats()
        options.setdefault("max_connections", 100)
        ingest = Ingest(sink, max_line=1024, stats=stats, **options)
        address = await ingest.start("127.0.0.1", 0)
        try:
            await body(ingest, address, received)
        finally:
            await ingest.close()
        return stats

    return asyncio.run(main())


def server_side_sockets(port: int) -> int:
    """Established TCP sockets of this process whose local port is the ingest's."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 0.5) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def connect_many(address: tuple[str, int], count: int, timeout: float) -> list[socket.socket]:
    """``count`` connections opened at once (non-blocking); those that connected in time."""
    selector = selectors.DefaultSelector()
    pending = 0
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(address)
        selector.register(sock, selectors.EVENT_WRITE)
        pending += 1
    connected = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(0.1):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            selector.unregister(ready)
            pending -= 1
            if ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected.append(ready)
            else:
                ready.close()
    for key in list(selector.get_map().values()):
        assert isinstance(key.fileobj, socket.socket)
        key.fileobj.close()
    selector.close()
    return connected


# -- the connection cap ----------------------------------------------------------------------


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the other end closed ``sock`` (end-of-file or reset); it must be non-blocking."""
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_ingest_cap_holds_against_twice_as_many_idle_connections() -> None:
    """A burst of 2N idle connections with max_connections=N: N are really closed, N stay; each
    close is counted once, and the survivors still carry heartbeats."""
    cap = 50

    async def body(ingest: Ingest, address: tuple[str, int], got: list[Message]) -> None:
        clients = connect_many(address, 2 * cap, timeout=10.0)  # all in the backlog at once
        assert len(clients) == 2 * cap
        try:
            await wait_for(lambda: ingest.stats.connections_total >= 2 * cap)
            await wait_for(lambda: server_side_sockets(address[1]) <= cap)
            await wait_for(lambda: sum(map(closed_by_peer, clients)) >= cap)
            await asyncio.sleep(0.2)  # nothing more is closed
            closed = [closed_by_peer(sock) for sock in clients]
            assert sum(closed) == cap, f"{sum(closed)} of {2 * cap} closed by the server"
            assert server_side_sockets(address[1]) == cap
            stats = ingest.stats
            assert stats.connections_open == cap
            assert stats.connections_evicted + stats.connections_refused == cap
            survivors = [sock for sock, gone in zip(clients, closed, strict=True) if not gone]
            for sock in survivors:
                sock.send(BEAT)
            await wait_for(lambda: len(got) == cap)
        finally:
            for sock in clients:
                sock.close()
        await wait_for(lambda: ingest.stats.connections_open == 0)

    run_with_ingest(body, max_connections=cap)


def test_ingest_cap_evicts_the_idlest_once_it_has_been_quiet_a_while() -> None:
    """Beyond the cap, a newcomer evicts the connection quiet longest (if quiet long enough);
    one that has just spoken is not the one closed."""

    async def body(ingest: Ingest, address: tuple[str, int], got: list[Message]) -> None:
        clients = [await asyncio.open_connection(*address) for _ in range(4)]
        await wait_for(lambda: ingest.stats.connections_open == 4)
        await asyncio.sleep(0.25)  # all four have been quiet for evict_min_idle
        clients[0][1].write(BEAT)  # the oldest speaks: now clients[1] is the idlest
        await wait_for(lambda: len(got) == 1)
        newcomer = await asyncio.open_connection(*address)
        assert await closed_by_server(clients[1][0])
        assert not await closed_by_server(clients[0][0])
        newcomer[1].write(BEAT)
        await wait_for(lambda: len(got) == 2)
        assert ingest.stats.connections_evicted == 1
        assert ingest.stats.connections_refused == 0
        for _, writer in [*clients, newcomer]:
            writer.close()

    run_with_ingest(body, max_connections=4, evict_min_idle=0.2)


def test_ingest_cap_turns_a_newcomer_away_when_every_connection_is_busy() -> None:
    """When every connection has spoken within evict_min_idle, the newcomer is accepted and
    closed at once, and the established clients keep their connections."""

    async def body(ingest: Ingest, address: tuple[str, int], got: list[Message]) -> None:
        clients = [await asyncio.open_connection(*address) for _ in range(3)]
        for _, writer in clients:
            writer.write(BEAT)
        await wait_for(lambda: len(got) == 3)
        newcomers = [await asyncio.open_connection(*address) for _ in range(5)]
        for reader, _ in newcomers:
            assert await closed_by_server(reader)
        for _, writer in clients:
            writer.write(BEAT)
        await wait_for(lambda: len(got) == 6)
        assert ingest.stats.connections_refused == 5
        assert ingest.stats.connections_evicted == 0
        for _, writer in [*clients, *newcomers]:
            writer.close()

    run_with_ingest(body, max_connections=3, evict_min_idle=3600.0)


def test_ingest_cap_ranks_by_accepted_messages_not_bytes() -> None:
    """Connections trickling bytes that never make a message rank below a worker that beats
    rarely: a newcomer at the cap evicts the oldest trickler, never the worker; and a worker's
    beat on a fresh connection is taken while the tricklers keep trickling."""

    async def body(ingest: Ingest, address: tuple[str, int], got: list[Message]) -> None:
        worker = await asyncio.open_connection(*address)
        worker[1].write(BEAT)
        await wait_for(lambda: len(got) == 1)
        tricklers = [await asyncio.open_connection(*address) for _ in range(2)]
        await wait_for(lambda: ingest.stats.connections_open == 3)
        for _ in range(15):  # 0.3 s: the worker quiet beyond evict_min_idle, the others not
            for _, writer in tricklers:
                writer.write(b"x")
            await asyncio.sleep(0.02)
        newcomer = await asyncio.open_connection(*address)
        assert await closed_by_server(tricklers[0][0])
        assert not await closed_by_server(worker[0])
        assert not await closed_by_server(tricklers[1][0])
        worker[1].write(BEAT)
        await wait_for(lambda: len(got) == 2)
        assert ingest.stats.connections_evicted == 1
        assert ingest.stats.connections_refused == 0
        for _, writer in [worker, *tricklers, newcomer]:
            writer.close()

    run_with_ingest(body, max_connections=3, evict_min_idle=0.2)


def test_ingest_cap_ranks_a_tokenless_stranger_below_a_worker() -> None:
    """A peer that must show a token and has not (here: any peer, the rule wants "t") ranks
    below a worker that delivered, however many bytes it sends without a whole line."""

    async def body(ingest: Ingest, address: tuple[str, int], got: list[Message]) -> None:
        worker = await asyncio.open_connection(*address)
        worker[1].write(b'{"type":"heartbeat","service":"a","token":"t"}\n')
        await wait_for(lambda: len(got) == 1)
        stranger = await asyncio.open_connection(*address)
        for _ in range(15):
            stranger[1].write(b"y" * 10)
            await asyncio.sleep(0.02)
        newcomer = await asyncio.open_connection(*address)
        assert await closed_by_server(stranger[0])
        assert not await closed_by_server(worker[0])
        for _, writer in [worker, stranger, newcomer]:
            writer.close()

    run_with_ingest(
        body,
        max_connections=2,
        evict_min_idle=0.2,
        may_ingest=lambda peer, token: token == "t",
    )


# -- out of descriptors ----------------------------------------------------------------------

SERVER = r"""
import asyncio, resource, sys, threading
from heartwatch.daemon.ingest import Ingest, IngestStats


async def main():
    loop = asyncio.get_running_loop()
    count = [0]

    def sink(message, transport):
        count[0] += 1

    stats = IngestStats()
    ingest = Ingest(sink, max_line=1024, max_connections=1000, stats=stats)
    _, port = await ingest.start("127.0.0.1", 0)
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    print(port, flush=True)
    done = asyncio.Event()

    def answer():
        print(count[0], stats.connections_open, flush=True)

    def commands():
        for _ in sys.stdin:
            loop.call_soon_threadsafe(answer)
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=commands, daemon=True).start()
    await done.wait()
    await ingest.close()


asyncio.run(main())
"""


def test_ingest_out_of_descriptors_pauses_accepting_without_a_traceback(tmp_path: Path) -> None:
    """At the open-files limit, accepting pauses and one line says so (no traceback per
    connection); once descriptors are free again, new connections are served."""
    log_path = tmp_path / "server.log"
    log_file = log_path.open("w")  # a file, not a pipe: a flood of lines must not block it
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, "64"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None

    def ask() -> tuple[int, int]:
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write("?\n")
        server.stdin.flush()
        count, open_ = server.stdout.readline().split()
        return int(count), int(open_)

    try:
        address = ("127.0.0.1", int(server.stdout.readline()))
        crowd = connect_many(address, 300, timeout=10.0)
        assert len(crowd) >= 100  # the kernel completes handshakes into the backlog
        time.sleep(1.5)  # the server accepts what it can and runs out of descriptors
        _, open_during = ask()
        assert open_during < 64
        for sock in crowd:
            sock.close()
        deadline = time.monotonic() + 20.0
        counted = 0
        while counted == 0 and time.monotonic() < deadline:
            with socket.create_connection(address, timeout=5.0) as sock:
                sock.sendall(BEAT)
            time.sleep(0.3)
            counted, _ = ask()
        assert counted >= 1, "no heartbeat counted after the crowd left"
    finally:
        server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
        log_file.close()
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    lines = [line for line in log.splitlines() if "descriptor" in line or "accept" in line]
    assert 1 <= len(lines) <= 3, log[-3000:]


# -- floods ----------------------------------------------------------------------------------

FLOOD = r"""
import selectors, socket, sys

port, connections, per_connection = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
line = b'{"type":"heartbeat","service":"a"}\n'
chunk = line * (65536 // len(line))
selector = selectors.DefaultSelector()
left = {}
for _ in range(connections):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    selector.register(sock, selectors.EVENT_WRITE)
    left[sock] = per_connection // len(line) * len(line)
print(sum(left.values()) // len(line), flush=True)
while left:
    for key, _ in selector.select(10.0):
        sock = key.fileobj
        sent = sock.send(chunk[: min(len(chunk), left[sock])])
        left[sock] -= sent
        if not left[sock]:
            selector.unregister(sock)
            sock.close()
            del left[sock]
"""


def test_ingest_flood_gets_a_bounded_share_of_each_loop_turn() -> None:
    """30 connections sending as fast as they can: each loop turn handles only a few reads'
    worth of messages (not one read per connection), and every message is still counted."""
    connections, per_connection = 30, 300_000
    per_turn: list[int] = []

    async def body(ingest: Ingest, address: tuple[str, int], got: list[Message]) -> None:
        loop = asyncio.get_running_loop()
        flood = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            FLOOD,
            str(address[1]),
            str(connections),
            str(per_connection),
            stdout=asyncio.subprocess.PIPE,
        )
        assert flood.stdout is not None
        total = int(await flood.stdout.readline())
        seen = [0]

        def mark() -> None:  # runs once per loop turn: the messages handled since the last
            per_turn.append(len(got) - seen[0])
            seen[0] = len(got)
            if len(got) < total:
                loop.call_soon(mark)

        await wait_for(lambda: len(got) > 0)
        seen[0] = len(got)
        loop.call_soon(mark)
        await wait_for(lambda: len(got) >= total, timeout=60.0)
        assert await asyncio.wait_for(flood.wait(), 30) == 0
        assert len(got) == total

    run_with_ingest(body)
    busy = sorted(n for n in per_turn if n)
    assert len(busy) > 50
    # One read is at most 4 KiB (113 of these messages); one read per flooding connection per
    # turn would be 30 reads. A fair share keeps a turn to a few reads.
    bound = 8 * 4096 // len(BEAT)
    p99 = busy[int(len(busy) * 0.99)]
    assert p99 <= bound, f"p99 {p99} messages per loop turn (bound {bound}); max {busy[-1]}"
