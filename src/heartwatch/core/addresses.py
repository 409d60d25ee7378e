"""Addresses as people write them, and which ones stay on this machine. Pure.

One home for both, because the daemon (what it binds, who may ingest without a token), the
configuration (what needs a token) and the clients (whether to send the token) must agree:
``::ffff:127.0.0.1`` (how a socket bound to ``::`` reports an IPv4 loopback peer) is loopback
for all of them.
"""

from __future__ import annotations

import functools
import ipaddress

LOCALHOST = "127.0.0.1"
DEFAULT_HEARTBEAT_ADDRESS = (LOCALHOST, 5005)  # [server] tcp
DEFAULT_HTTP_ADDRESS = (LOCALHOST, 8765)  # [server] http


def parse_address(value: object) -> tuple[str, int]:
    """``"host:port"`` (or ``"[::1]:port"``, or a bare port, or ``(host, port)`` as a program
    gives it) to ``(host, port)``; raise ``ValueError`` for anything else, a port beyond
    0-65535 included."""
    if isinstance(value, int) and not isinstance(value, bool):
        host, port_text = LOCALHOST, str(value)
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        host, port = value
        port_text = str(port) if isinstance(port, int) and not isinstance(port, bool) else "?"
    elif isinstance(value, str):
        host, sep, port_text = value.rpartition(":")
        if not sep:
            host, port_text = LOCALHOST, value
        host = host.strip("[]") or LOCALHOST
    else:
        raise ValueError('expected an address such as "127.0.0.1:5005"')
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r} is not host:port with a port from 0 to 65535")
    return host, int(port_text)


@functools.lru_cache(maxsize=1024)
def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback  # ::ffff:127.0.0.1, from a socket bound to ::
    return address.is_loopback
