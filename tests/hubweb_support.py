"""Helpers for the hub's HTTP tests: a migrated database with rows put in through the schema,
the hub's app served on 127.0.0.1:0, and a bounded asyncio runner."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from psycopg_pool import AsyncConnectionPool

from heartwatch.hub.config import HubConfig, parse_hub_config
from heartwatch.hub.schema import migrate

T = TypeVar("T")
BOOT = "0123456789abcdef0123456789abcdef"
TOKEN = "control-token-for-tests-0001"
READ_TOKEN = "read-token-for-tests-0002"


def run(main: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout)

    return asyncio.run(bounded())


def hub_config(
    dsn: str,
    *,
    broker: str = "amqp://guest:guest@127.0.0.1:5672/%2F",
    exchange: str = "heartwatch.fleet",
    tokens: bool = False,
    command_ttl: str = "60s",
) -> HubConfig:
    section: dict[str, Any] = {
        "name": "hub-test",
        "broker": broker,
        "database": dsn,
        "exchange": exchange,
        "http": "127.0.0.1:0",
        "state_dir": "/tmp",
        "command_ttl": command_ttl,
    }
    if tokens:
        section.update(token=TOKEN, read_token=READ_TOKEN)
    return parse_hub_config({"hub": section}, base_dir=Path("/tmp"), environ={})


@contextlib.asynccontextmanager
async def opened_pool(dsn: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    await migrate(dsn)
    async with AsyncConnectionPool(dsn, min_size=1, max_size=4, open=False) as pool:
        await pool.open(wait=True, timeout=10)
        yield pool


def status_item(name: str, state: str = "running", **extra: Any) -> dict[str, Any]:
    """An agent's GET /api/v1/services item, with the fields the hub reads."""
    item: dict[str, Any] = {
        "name": name,
        "instance_of": None,
        "state": state,
        "reason": extra.pop("reason", ""),
        "pid": 4242,
        "restarts": 1,
        "ready": state == "running",
        "uptime": 12.5,
        "last_heartbeat_age": 0.5,
    }
    item.update(extra)
    return item


async def add_host(
    pool: AsyncConnectionPool[Any],
    host: str,
    *,
    state: str = "live",
    labels: dict[str, str] | None = None,
    silent_for: float = 0.0,
) -> None:
    async with pool.connection() as connection:
        await connection.execute(
            "INSERT INTO hosts (host, boot, labels, version, config_hash, state, last_seen) "
            "VALUES (%s, %s, %s, '1.0', 'abc', %s, now() - make_interval(secs => %s))",
            [host, BOOT, json.dumps(labels or {}), state, silent_for],
        )


async def add_service(
    pool: AsyncConnectionPool[Any],
    host: str,
    name: str,
    state: str = "running",
    *,
    reason: str = "",
    instance_of: str | None = None,
) -> None:
    item = status_item(name, state, reason=reason, instance_of=instance_of)
    async with pool.connection() as connection:
        await connection.execute(
            "INSERT INTO services (host, service, instance_of, state, reason, since, status) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [host, name, instance_of, state, reason, time.time() - 60, json.dumps(item)],
        )


async def add_entry(
    pool: AsyncConnectionPool[Any],
    host: str,
    seq: int,
    *,
    at: float,
    kind: str = "transition",
    service: str | None = None,
    reason: str = "",
    state: str | None = None,
    previous: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    body = {
        "id": seq,
        "at": at,
        "kind": kind,
        "service": service,
        "reason": reason,
        "state": state,
        "previous": previous,
        "detail": detail,
    }
    async with pool.connection() as connection:
        await connection.execute(
            "INSERT INTO events (host, boot, seq, type, at, kind, service, reason, state, "
            "previous, detail, body) VALUES (%s, %s, %s, 'entry', %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                host,
                BOOT,
                seq,
                at,
                kind,
                service,
                reason,
                state,
                previous,
                None if detail is None else json.dumps(detail),
                json.dumps(body),
            ],
        )


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on 127.0.0.1:0 in this loop; yields ``http://127.0.0.1:PORT``."""
    sock = _free_socket()
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_config=None, log_level="warning", lifespan="off", ws="websockets-sansio"
        )
    )
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started and not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    port = sock.getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        sock.close()


def unique_host() -> str:
    return f"farm-{uuid.uuid4().hex[:6]}"
