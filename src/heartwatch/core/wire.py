"""The heartbeat wire format: framing a byte stream into lines, and decoding one message.

A message is a JSON object::

    {"type": "heartbeat", "service": "collector", "time": "2026-11-21 10:00:00"}
    {"type": "poiid", "time": "...", "dat": {...}}

``type`` is ``"heartbeat"`` or any other word, which makes it a data event of that kind, except
two words with a meaning of their own: ``"start"`` (a run began, as a cron wrapper says) and
``"fail"`` (the service reports its own failure, with an optional ``"reason"``). ``service`` is
optional (the daemon's ``default_service`` applies). ``time`` is the sender's clock: it is kept,
but never trusted for deadlines. The payload is ``data``, or ``dat`` as the original client
sends it. A heartbeat may also carry ``"ready": true`` (startup done), ``"status": "…"`` (free
text) and ``"dropped": N`` (events the client had to drop while it could not send).

Framing: newline-delimited JSON on a persistent connection; or, as the original client does,
one JSON object per connection with no newline, ended by the close (``receive_eof``). Lines
longer than the limit are dropped whole (counted) and the stream carries on at the next newline.
Nothing here does I/O.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

try:  # orjson decodes a small message about six times faster than the standard library
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - platforms without an orjson wheel
    from json import loads as _loads  # type: ignore[assignment]

MAX_LINE_BYTES = 64 * 1024
# A data kind is a word of these (``poiid``, ``row.written``, ``batch:done``), at most 64 long.
KIND_CHARACTERS = "A-Za-z0-9_.:-"
_WORD = re.compile(f"[{KIND_CHARACTERS}]{{1,64}}")


class WireError(ValueError):
    """A message could not be used; ``code`` names the fault for counting."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


# Types that are not data events.
HEARTBEAT, START, FAIL = "heartbeat", "start", "fail"
CONTROL_KINDS = frozenset({HEARTBEAT, START, FAIL})
_PLAIN_KEYS = frozenset({"type", "service", "time", "data", "dat"})


def is_data_kind(word: object) -> bool:
    """Whether ``word`` names a data kind: a word of ``KIND_CHARACTERS``, not a control type."""
    return type(word) is str and word not in CONTROL_KINDS and _WORD.fullmatch(word) is not None


class Message(NamedTuple):
    """One decoded message. A tuple: immutable, and cheap to build on the hot path."""

    kind: str
    service: str | None = None
    sent_time: str | None = None
    data: Any = None
    ready: bool = False
    status: str | None = None
    dropped: int = 0
    reason: str | None = None


def parse_message(raw: bytes | str) -> Message:
    """Decode one JSON message; raise ``WireError`` saying what is wrong with it."""
    try:
        obj = _loads(raw)
    except ValueError as error:  # UnicodeDecodeError included
        # Asked of the input, not read from the parser's message (whose words may change).
        if not _is_utf8(raw):
            raise WireError("encoding", "not UTF-8") from None
        raise WireError("json", f"not JSON ({error})") from None
    if type(obj) is not dict:
        raise WireError("shape", f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind != HEARTBEAT and (type(kind) is not str or not _WORD.fullmatch(kind)):
        raise WireError("type", f"'type' must be 'heartbeat' or a word, not {kind!r:.80}")
    service = obj.get("service")
    # Only the type and length are checked here: routing refuses names it does not know.
    if service is not None and (type(service) is not str or not 0 < len(service) <= 64):
        raise WireError("service", f"'service' must be a service name, not {service!r:.80}")
    sent = obj.get("time")
    data = obj["data"] if "data" in obj else obj.get("dat")
    message = Message(kind, service, sent if type(sent) is str else None, data)
    if kind in CONTROL_KINDS and not _PLAIN_KEYS.issuperset(obj):
        return _with_control_fields(message, obj)
    return message


def _is_utf8(raw: bytes | str) -> bool:
    try:
        raw.decode() if isinstance(raw, bytes) else raw.encode()
    except UnicodeError:
        return False
    return True


def _with_control_fields(message: Message, obj: dict[str, Any]) -> Message:
    status, dropped, reason = obj.get("status"), obj.get("dropped"), obj.get("reason")
    return message._replace(
        ready=obj.get("ready") is True,
        status=status[:500] if type(status) is str else None,
        dropped=dropped if type(dropped) is int and dropped > 0 else 0,
        reason=reason[:500] if type(reason) is str else None,
    )


def read_token(raw: bytes) -> str | None:
    """The ``token`` of a message, if it has one; for senders on other machines only."""
    try:
        obj = _loads(raw)
    except ValueError:
        return None
    token = obj.get("token") if type(obj) is dict else None
    return token if type(token) is str else None


class LineDecoder:
    """Split a byte stream into lines of at most ``max_line`` bytes.

    ``receive_data`` returns the complete lines (without the newline, trailing ``\\r`` and
    blank lines dropped); ``receive_eof`` returns an unterminated last line, if any, which is
    how the original one-object-per-connection framing ends. ``oversized`` counts dropped lines.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_line = max_line
        self.oversized = 0
        self._tail = b""
        self._discarding = False  # inside an oversized line: drop until the next newline

    def receive_data(self, data: bytes) -> list[bytes]:
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return []
            data = data[end + 1 :]
            self._discarding = False
        buffer = self._tail + data if self._tail else data
        lines = buffer.split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > self.max_line:
            self._tail = b""
            self._discarding = True
            self.oversized += 1
        if len(buffer) > self.max_line:  # only then can a complete line be too long
            kept = [line for line in lines if len(line) <= self.max_line]
            self.oversized += len(lines) - len(kept)
            lines = kept
        return [line.rstrip(b"\r") for line in lines if line.strip()]

    def receive_eof(self) -> bytes | None:
        tail, self._tail = self._tail, b""
        self._discarding = False
        return tail if tail.strip() else None
