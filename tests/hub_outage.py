"""A PostgreSQL outage of one test database, as the review made it: new connections refused
(``ALTER DATABASE … ALLOW_CONNECTIONS false``) and the open ones ended
(``pg_terminate_backend``); always allowed again at the end."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def _server_and_name(dsn: str) -> tuple[str, str]:
    parts = urlsplit(dsn)
    server = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))
    return server, parts.path.lstrip("/")


def _allow(server: str, name: str, allowed: bool) -> None:
    with psycopg.connect(server, autocommit=True, connect_timeout=5) as connection:
        connection.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(name), sql.SQL("true" if allowed else "false")
            )
        )
        if not allowed:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )


@contextlib.contextmanager
def database_outage(dsn: str) -> Iterator[None]:
    """The database of ``dsn`` unreachable for the block (the server itself stays up)."""
    server, name = _server_and_name(dsn)
    _allow(server, name, False)
    try:
        yield
    finally:
        _allow(server, name, True)
