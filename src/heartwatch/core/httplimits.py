"""What an HTTP request may cost before it is answered: sizes of its head, and the waiting room.

Pure (no sockets, no clock): the daemon's HTTP protocol (``daemon/http_guard.py``) asks these
questions and carries out the answers.

- ``check_head``: a request line or headers beyond the limits get 414 or 431, before the app
  sees them. The limits are nginx's (``large_client_header_buffers 4 8k``) and the websocket
  handshake's (``websockets``: 8 KiB a line), so a request that passes here passes there too.
- ``WaitingRoom``: connections that have not finished sending their request, oldest first.
  Beyond its capacity the oldest is turned away, not the newcomer: a crowd of slow clients
  cannot keep a prompt one out, it only shortens their own wait.
- ``refusal_response``: the bytes of an answer that closes the connection (JSON, like every
  other error of the API).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_LINE = 8190  # a request line or a header line, without its CRLF
MAX_HEADERS = 100
MAX_HEAD = 32 * 1024  # request line and headers together


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str  # stable, as in docs/api.md
    message: str


def request_timeout(seconds: float) -> Refusal:
    return Refusal(408, "request_timeout", f"the request did not arrive within {seconds:g} s")


def too_many_waiting(capacity: int) -> Refusal:
    return Refusal(
        503,
        "busy",
        f"more than {capacity} connections were still sending their request; "
        "this one waited longest",
    )


def too_many_connections(capacity: int) -> Refusal:
    return Refusal(503, "busy", f"{capacity} connections are open already, the most allowed")


def too_many_websockets(capacity: int) -> Refusal:
    return Refusal(503, "busy", f"{capacity} websockets are open already, the most allowed")


def head_too_large(size: int, *, ended: bool = True) -> Refusal:
    size_text = f"{size} bytes" if ended else f"{size} bytes and not ended"
    return Refusal(431, "headers_too_large", f"request head of {size_text}, at most {MAX_HEAD}")


def line_too_long(size: int, *, ended: bool = True) -> Refusal:
    size_text = f"{size} bytes" if ended else f"{size} bytes and not ended"
    return Refusal(414, "uri_too_long", f"request line of {size_text}, at most {MAX_LINE}")


def malformed(detail: str) -> Refusal:
    return Refusal(400, "invalid_request", f"malformed HTTP request: {detail[:200]}")


def check_head(
    method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> Refusal | None:
    """A refusal for a parsed request head beyond the limits, else ``None``."""
    line = len(method) + 1 + len(target) + len(b" HTTP/1.1")
    if line > MAX_LINE:
        return line_too_long(line)
    total = line
    count = 0
    for name, value in headers:
        size = len(name) + 2 + len(value)  # "name: value", as the websocket handshake sees it
        if size > MAX_LINE:
            return Refusal(
                431, "headers_too_large", f"a header line of {size} bytes, at most {MAX_LINE}"
            )
        total += size + 2
        count += 1
    if count > MAX_HEADERS:
        return Refusal(431, "headers_too_large", f"{count} headers, at most {MAX_HEADERS}")
    if total > MAX_HEAD:
        return head_too_large(total)
    return None


def incomplete_head_refusal(buffered: bytes) -> Refusal:
    """The refusal for a head that grew beyond ``MAX_HEAD`` before it ended: a request line
    still without its end is too long a line, anything else too large a head."""
    if b"\n" not in buffered[: MAX_LINE + 2]:
        return line_too_long(len(buffered), ended=False)
    return head_too_large(len(buffered), ended=False)


def refusal_response(refusal: Refusal) -> bytes:
    """A complete HTTP/1.1 answer after which the server closes the connection."""
    body = json.dumps({"code": refusal.code, "message": refusal.message}).encode()
    phrase = HTTPStatus(refusal.status).phrase
    head = (
        f"HTTP/1.1 {refusal.status} {phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class WaitingRoom(Generic[T]):
    """Members in order of arrival, at most ``capacity``; O(1) to enter, leave and evict."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._members: OrderedDict[T, None] = OrderedDict()

    def enter(self, member: T) -> T | None:
        """Let ``member`` in (at the back, if it was in already); return whom it pushed out."""
        self._members.pop(member, None)
        evicted = None
        if len(self._members) >= self.capacity:
            evicted, _ = self._members.popitem(last=False)
        self._members[member] = None
        return evicted

    def leave(self, member: T) -> None:
        self._members.pop(member, None)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, member: object) -> bool:
        return member in self._members


class StormWatch:
    """Says when a crowd of connections has left, so that the memory it used can be given back.

    A crowd is at least ``crowd`` connections open at once; it has left when at most
    ``fraction`` of that peak is still open. Giving memory back costs the loop a full garbage
    collection (tens of milliseconds), so it happens at most once per ``interval``: a storm that
    ends sooner is settled when the interval is over.
    """

    def __init__(self, crowd: int = 100, fraction: float = 0.25, interval: float = 30.0) -> None:
        self.crowd = crowd
        self.fraction = fraction
        self.interval = interval
        self.open = 0
        self.peak = 0
        self._settled_at: float | None = None
        self._due = False  # a settle is scheduled

    def opened(self) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)

    def closed(self, now: float) -> float | None:
        """One connection fewer; the delay after which to settle, if now is the time to plan it."""
        self.open = max(0, self.open - 1)
        if self._due or self.peak < self.crowd or self.open > self.peak * self.fraction:
            return None
        self._due = True
        if self._settled_at is None:
            return 0.0
        return max(0.0, self._settled_at + self.interval - now)

    def settled(self, now: float) -> None:
        self._due = False
        self._settled_at = now
        self.peak = self.open
