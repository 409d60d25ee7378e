"""One message, delivered or refused within a timeout: for ``heartwatch beat`` and ``exec``."""

from __future__ import annotations

import json
import socket

TYPE_CHECKING = False  # typing is not imported: ``heartwatch beat`` pays for every module
if TYPE_CHECKING:
    from typing import Any


def send_once(address: tuple[str, int], message: dict[str, Any], timeout: float = 2.0) -> None:
    """Connect, send ``message`` as one JSON line, close; raise ``OSError`` if that fails."""
    line = json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(line)
        sock.shutdown(socket.SHUT_WR)
