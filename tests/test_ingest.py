"""The TCP/UDP ingest driver, in-process on port 0, and the daemon's API over it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from heartwatch.assembly.daemon import run_daemon
from heartwatch.config import parse_config
from heartwatch.core.wire import Message
from heartwatch.daemon.ingest import Ingest, IngestStats


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def run_with_ingest(
    body: Callable[[Ingest, tuple[str, int], list[Message]], Awaitable[None]],
    max_connections: int = 100,
    evict_min_idle: float = 1.0,
) -> IngestStats:
    async def main() -> IngestStats:
        received: list[Message] = []

        def sink(message: Message, transport: str) -> str | None:
            if message.service == "nobody":
                return "unknown_service"
            received.append(message)
            return None

        stats = IngestStats()
        ingest = Ingest(
            sink,
            max_line=1024,
            max_connections=max_connections,
            stats=stats,
            evict_min_idle=evict_min_idle,
        )
        address = await ingest.start("127.0.0.1", 0)
        try:
            await body(ingest, address, received)
        finally:
            await ingest.close()
        return stats

    return asyncio.run(main())


def test_ingest_persistent_connection_survives_bad_lines() -> None:
    """After broken JSON, an oversized line and an unknown service, the same connection works."""

    async def body(ingest: Ingest, address: tuple[str, int], got: list[Message]) -> None:
        _reader, writer = await asyncio.open_connection(*address)
        writer.write(b'{"type":"heartbeat","service":"a"}\n{broken\n')
        writer.write(b"x" * 5000 + b"\n")
        writer.write(b'{"type":"heartbeat","service":"nobody"}\n')
        writer.write(b'{"type":"poiid","service":"a","dat":[1]}\n')
        await writer.drain()
        await wait_for(lambda: len(got) == 2)
        writer.close()
        await writer.wait_closed()

    stats = run_with_ingest(body)
    assert stats.messages["tcp"] == 2
    assert stats.errors["tcp", "json"] == 1
    assert stats.errors["tcp", "too_long"] == 1
    assert stats.errors["tcp", "unknown_service"] == 1


def test_ingest_original_framing_one_object_per_connection() -> None:
    """No newline, ended by close: the object still counts."""

    async def body(ingest: Ingest, address: tuple[str, int], got: list[Message]) -> None:
        for _ in range(3):
            _, writer = await asyncio.open_connection(*address)
            writer.write(json.dumps({"type": "heartbeat", "time": "2026-11-21 10:00:00"}).encode())
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        await wait_for(lambda: len(got) == 3)
        assert got[0].sent_time == "2026-11-21 10:00:00" and got[0].service is None

    run_with_ingest(body)


def test_ingest_udp_datagrams_on_the_same_port() -> None:
    """UDP on the TCP port: one object per datagram, or several separated by newlines."""

    async def body(ingest: Ingest, address: tuple[str, int], got: list[Message]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b'{"type":"heartbeat","service":"u"}', address)
            sock.sendto(b'{"type":"a"}\n{"type":"b"}\n', address)
            sock.sendto(b"\x00\xff junk", address)
            await wait_for(lambda: len(got) == 3)
            await wait_for(lambda: ingest.stats.errors["udp", "encoding"] == 1)

    stats = run_with_ingest(body)
    assert stats.messages["udp"] == 3


def test_ingest_connection_cap_evicts_the_idlest() -> None:
    """Beyond max_connections the longest-idle connection is closed, and new clients get in
    (here as soon as it is idle at all: evict_min_idle 0)."""

    async def body(ingest: Ingest, address: tuple[str, int], got: list[Message]) -> None:
        idle = [await asyncio.open_connection(*address) for _ in range(5)]
        await wait_for(lambda: ingest.stats.connections_open == 5)
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b'{"type":"heartbeat","service":"fresh"}\n')
        await writer.drain()
        await wait_for(lambda: len(got) == 1)
        assert await asyncio.wait_for(idle[0][0].read(), 5) == b""  # the idlest was closed
        assert ingest.stats.connections_evicted == 1
        for _, w in [*idle, (reader, writer)]:
            w.close()
        await wait_for(lambda: ingest.stats.connections_open == 0)

    run_with_ingest(body, max_connections=5, evict_min_idle=0.0)


def test_daemon_api_reports_messages_and_controls_watch_only_services(tmp_path: Path) -> None:
    """In-process daemon: a heartbeat over TCP shows in the API; stop/start work; 404s are JSON."""
    config = parse_config(
        {
            "server": {"tcp": "127.0.0.1:0", "http": "127.0.0.1:0", "default_service": "phone"},
            "daemon": {"state_dir": "state", "log_dir": "logs"},
            "service": [{"name": "phone", "heartbeat_timeout": "1h", "data_timeout": {"p": "1h"}}],
        },
        base_dir=tmp_path,
    )

    async def main() -> None:
        stop = asyncio.Event()
        daemon = asyncio.ensure_future(run_daemon(config, stop))
        info_path = tmp_path / "state" / "daemon.json"
        await wait_for(info_path.exists)
        info = json.loads(info_path.read_text())
        host, port = info["tcp"].rsplit(":", 1)
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(b'{"type":"heartbeat"}\n{"type":"p","time":"t1","dat":1}\n')
        await writer.drain()
        async with httpx.AsyncClient(base_url=f"http://{info['http']}") as client:

            async def phone() -> dict[str, object]:
                response = await client.get("/api/v1/services/phone")
                assert response.status_code == 200
                assert response.headers["date"].endswith(" GMT")
                body: dict[str, object] = response.json()
                return body

            for _ in range(200):
                if (await phone())["messages"] == 2:
                    break
                await asyncio.sleep(0.01)
            status = await phone()
            assert status["state"] == "running"
            data = status["data"]
            assert isinstance(data, dict)
            assert data["p"]["count"] == 1 and data["p"]["last_sent_time"] == "t1"
            stopped = (await client.post("/api/v1/services/phone/stop")).json()
            assert stopped["state"] == "stopped"
            started = (await client.post("/api/v1/services/phone/start")).json()
            assert started["state"] == "starting"
            missing = await client.post("/api/v1/services/nobody/restart")
            assert missing.status_code == 404
            assert missing.json()["code"] == "unknown_service"
        writer.close()
        await writer.wait_closed()
        stop.set()
        await asyncio.wait_for(daemon, 10)
        assert not info_path.exists()

    asyncio.run(main())


def test_connection_cap_stays_below_the_open_files_limit() -> None:
    """With a hard limit of 300 descriptors, the cap leaves room for everything else."""
    import resource
    import subprocess
    import sys

    code = (
        "import resource\n"
        "from heartwatch.daemon.ingest import connection_cap\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))\n"
        "print(connection_cap(1024))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert int(result.stdout.strip()) == 300 - 256
    assert resource.getrlimit(resource.RLIMIT_NOFILE)  # this process's limits untouched
