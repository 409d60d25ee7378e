"""The hub's database schema: numbered SQL files applied at start, recorded in ``schema_version``.

Why versioned SQL, not alembic: the hub has no ORM (its queries are SQL written for
PostgreSQL: COPY, ``ON CONFLICT``, ``RETURNING``, ``pg_notify``) and one small schema; alembic
would bring SQLAlchemy in for nothing but a version table. Here a migration is a file
``migrations/NNNN_name.sql`` run in one transaction, and ``schema_version`` says which ran.

Several hubs may start at once: each takes a session-level ``pg_advisory_lock`` first, so one
applies what is missing while the others wait, then find nothing left to do. A database whose
schema is newer than this code (a newer hub migrated it) is refused with a clear message: an
older hub would write rows the newer schema does not mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import psycopg
from loguru import logger

# pg_advisory_lock's key: any constant shared by every hub ("heartwatch" in ASCII, as a bigint).
MIGRATION_LOCK: Final = 0x6865617274776174
_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer hub than this one."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The migrations this code carries, in order (read from the package: wheel or checkout)."""
    found = []
    for item in (resources.files("heartwatch.hub") / "migrations").iterdir():
        match = _FILE.fullmatch(item.name)
        if match:
            found.append(Migration(int(match[1]), match[2], item.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"the hub's migrations are not numbered 1, 2, 3…: {versions}")
    return found


async def current_version(connection: psycopg.AsyncConnection[Any]) -> int:
    """The database's schema version (0: no hub schema yet)."""
    cursor = await connection.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return 0
    cursor = await connection.execute("SELECT coalesce(max(version), 0) FROM schema_version")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def migrate(dsn: str) -> list[int]:
    """Bring the database at ``dsn`` to this code's schema; the versions applied (often none).

    Raises ``SchemaTooNew`` when the database is ahead of this code."""
    known = migrations()
    latest = known[-1].version
    applied: list[int] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await connection.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
        try:
            version = await current_version(connection)
            if version > latest:
                raise SchemaTooNew(
                    f"the database's schema is version {version}, newer than this hub's "
                    f"({latest}): it was migrated by a newer heartwatch; run that version here"
                )
            for migration in known[version:]:
                async with connection.transaction():
                    await connection.execute(migration.sql.encode())
                    await connection.execute(
                        "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                        [migration.version, migration.name],
                    )
                logger.info(
                    "database schema: applied migration {} ({})", migration.version, migration.name
                )
                applied.append(migration.version)
        finally:
            await connection.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])
    return applied
