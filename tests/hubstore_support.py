"""Helpers for the hub-store tests: envelopes as agents make them, a migrated database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from psycopg_pool import AsyncConnectionPool

from heartwatch.core.fleetwire import Envelope, MessageType
from heartwatch.hub.schema import migrate
from heartwatch.hub.store import FleetStore, Storable, check_storable

T = TypeVar("T")
NOW = 1_764_590_000.0


def new_boot() -> str:
    return uuid.uuid4().hex


def envelope(
    kind: MessageType, host: str, boot: str, seq: int, body: dict[str, Any], at: float = NOW
) -> Envelope:
    return Envelope(kind, host, boot, seq, at, body)


def transition(
    host: str, boot: str, seq: int, service: str, state: str, reason: str = "", **detail: Any
) -> Envelope:
    body = {
        "id": seq,
        "at": NOW + seq,
        "kind": "transition",
        "service": service,
        "reason": reason,
        "state": state,
        "previous": None,
        "detail": detail or None,
    }
    return envelope("entry", host, boot, seq, body, at=NOW + seq)


def service_item(name: str, state: str = "running", reason: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "instance_of": None,
        "state": state,
        "reason": reason,
        "since_age": 5.0,
        "pid": 1234,
        "restarts": 0,
    }


def snapshot(
    host: str,
    boot: str,
    seq: int,
    services: list[dict[str, Any]],
    started_at: float = NOW,
    labels: dict[str, str] | None = None,
) -> Envelope:
    body = {
        "labels": labels or {},
        "config_hash": "abc",
        "started_at": started_at,
        "version": "1.0",
        "heartbeat_interval": 5.0,
        "services": services,
    }
    return envelope("snapshot", host, boot, seq, body)


def heartbeat(host: str, boot: str, seq: int = 0, started_at: float = NOW) -> Envelope:
    body = {
        "labels": {},
        "config_hash": "abc",
        "started_at": started_at,
        "version": "1.0",
        "heartbeat_interval": 5.0,
        "services": 1,
    }
    return envelope("heartbeat", host, boot, seq, body)


def storable(items: list[Envelope]) -> list[Storable]:
    return [check_storable(item) for item in items]


@asynccontextmanager
async def opened_store(dsn: str) -> AsyncIterator[FleetStore]:
    await migrate(dsn)
    async with AsyncConnectionPool(dsn, min_size=1, max_size=4, open=False) as pool:
        await pool.open(wait=True, timeout=10)
        yield FleetStore(pool)


async def rows(store: FleetStore, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with store.pool.connection() as connection:
        cursor = await connection.execute(query, list(params))
        return await cursor.fetchall()


def run(main: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout)

    return asyncio.run(bounded())
