"""Where a client sends: from arguments, or from what the supervisor puts in the environment."""

from __future__ import annotations

import os
import socket

from heartwatch.core.addresses import DEFAULT_HEARTBEAT_ADDRESS, is_loopback, parse_address


def resolve_target(
    service: str | None, address: str | tuple[str, int] | None
) -> tuple[str | None, tuple[str, int] | None, str | None]:
    """Return ``(service, (ip, port), problem)``; ``problem`` says why there is no address.

    Name resolution happens here, once, so that sending never waits on DNS.
    """
    service = service or os.environ.get("HEARTWATCH_SERVICE") or None
    if address is None:
        address = os.environ.get("HEARTWATCH_ADDR") or DEFAULT_HEARTBEAT_ADDRESS
    try:
        address = parse_address(address)
    except ValueError as error:
        return service, None, f"bad heartwatch address: {error}"
    try:
        infos = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)
    except OSError as error:
        return service, None, f"cannot resolve {address[0]!r}: {error}"
    ip, port = infos[0][4][:2]
    return service, (str(ip), int(port)), None


def token_for(address: tuple[str, int] | None, token: str | None) -> str | None:
    """The token to send: the one given, else ``HEARTWATCH_INGEST_TOKEN`` or
    ``HEARTWATCH_TOKEN``, and only to a daemon on another machine (loopback needs none, and a
    secret sent where it is not needed is a secret exposed for nothing)."""
    if address is None or is_loopback(address[0]):
        return None
    return (
        token
        or os.environ.get("HEARTWATCH_INGEST_TOKEN")
        or os.environ.get("HEARTWATCH_TOKEN")
        or None
    )
