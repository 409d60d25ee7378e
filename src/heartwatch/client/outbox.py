"""What a heartbeat client has to say, independent of any socket: the sans-I/O core.

Heartbeats are *coalesced*: while nothing can be sent, any number of ``beat()`` calls leave one
pending beat, because only the newest matters. The status text and readiness are kept the same
way (newest wins). Data events are facts and are queued, up to a bound; beyond it the oldest are
dropped and counted, and the count rides on the next heartbeat (``"dropped": N``) so the daemon
learns what was lost. ``take_lines()`` hands the driver everything due, in order, as one bytes
object of newline-terminated JSON lines.

No clock is read here: the driver (``sync.py``, ``aio.py``) hands in the wall clock and the
local-time formatting (``wallclock.py``), so a test gives its own.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

# Every heartbeat line starts so: json.dumps keeps "type" first, as it is written first.
_HEARTBEAT_PREFIX = b'{"type":"heartbeat"'


def _message(kind: str, service: str | None, token: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": kind}
    if service is not None:
        message["service"] = service
    if token is not None:
        message["token"] = token
    return message


def _encode(message: dict[str, Any]) -> bytes:
    return _dumps(message) + b"\n"


def _dumps_stdlib(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode()


try:  # about ten times faster; any payload orjson cannot encode falls back to str()
    import orjson

    def _dumps(message: dict[str, Any]) -> bytes:
        return orjson.dumps(message, default=str)

except ImportError:  # pragma: no cover - platforms without an orjson wheel
    _dumps = _dumps_stdlib


class Outbox:
    """``token``: sent in every message (needed only by a daemon on another machine).

    ``clock``: the wall clock, epoch seconds (an event's default time); ``local_second``: a
    whole second as local ``YYYY-MM-DD HH:MM:SS``, as the original client writes times.
    """

    def __init__(
        self,
        service: str | None,
        max_events: int = 1000,
        token: str | None = None,
        *,
        clock: Callable[[], float],
        local_second: Callable[[int], str],
    ) -> None:
        self.service = service
        self.token = token
        self.max_events = max_events
        self._clock = clock
        self._local_second = local_second
        self._stamped: tuple[int, str] = (-1, "")  # the last second formatted: once a second
        # A plain heartbeat is the same bytes every time: encoded once.
        self._plain_beat = _encode(_message("heartbeat", service, token))
        self.dropped = 0  # events lost to the bound, not yet reported
        self.dropped_total = 0
        self._beat = False
        self._ready = False
        self._status: str | None = None
        self._events: deque[bytes] = deque()

    @property
    def has_lines(self) -> bool:
        return self._beat or bool(self._events)

    def beat(self) -> None:
        self._beat = True

    def ready(self) -> None:
        self._ready = self._beat = True

    def status(self, text: str) -> None:
        self._status = text
        self._beat = True

    def event(self, kind: str, data: Any = None, sent_at: float | None = None) -> None:
        """Queue a data event; ``sent_at`` (epoch seconds) defaults to now."""
        message = _message(kind, self.service, self.token)
        message["time"] = self._format_time(self._clock() if sent_at is None else sent_at)
        if data is not None:
            message["data"] = data
        try:
            line = _encode(message)
        except (TypeError, ValueError, OverflowError):
            try:  # what orjson refuses (non-str keys, huge ints), the standard library may take
                line = _dumps_stdlib(message) + b"\n"
            except (TypeError, ValueError, OverflowError, RecursionError):
                self._count_dropped(1)  # never raise into the application
                return
        if len(self._events) >= self.max_events:
            self._events.popleft()
            self._count_dropped(1)
        self._events.append(line)

    def take_lines(self) -> bytes:
        """Everything due now, events first (older facts), then one heartbeat."""
        parts = list(self._events)
        self._events.clear()
        if self._beat:
            parts.append(self._take_beat())
        return b"".join(parts)

    def put_back(self, unsent: bytes, starts_line: bool) -> None:
        """A connection died with ``unsent`` not handed to the kernel: keep what can be kept.

        Whole event lines go back to the front of the queue, in order; heartbeats become one
        pending beat. A line of which some bytes already went out (``starts_line`` false) is
        lost: the daemon discards the fragment, and a lost event is counted.
        """
        lines = unsent.split(b"\n")[:-1]
        if not starts_line and lines and not lines.pop(0).startswith(_HEARTBEAT_PREFIX):
            self._count_dropped(1)
        events = [line + b"\n" for line in lines if not line.startswith(_HEARTBEAT_PREFIX)]
        if len(events) < len(lines):
            self._beat = True
        self._events.extendleft(reversed(events))
        if len(self._events) > self.max_events:
            excess = len(self._events) - self.max_events
            for _ in range(excess):
                self._events.popleft()
            self._count_dropped(excess)

    def _count_dropped(self, count: int) -> None:
        self.dropped += count
        self.dropped_total += count

    def _take_beat(self) -> bytes:
        self._beat = False
        if not (self._ready or self._status is not None or self.dropped):
            return self._plain_beat
        message = _message("heartbeat", self.service, self.token)
        if self._ready:
            message["ready"] = True
        if self._status is not None:
            message["status"] = self._status
        if self.dropped:
            message["dropped"] = self.dropped
        self._ready, self._status, self.dropped = False, None, 0
        return _encode(message)

    def _format_time(self, epoch: float) -> str:
        """Local time as the original client writes it, with milliseconds (the second
        formatted once a second)."""
        second = int(epoch)
        if second != self._stamped[0]:
            self._stamped = (second, self._local_second(second))
        return f"{self._stamped[1]}.{int(epoch % 1 * 1000):03d}"
