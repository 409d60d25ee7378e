"""The systemd notify protocol (sd_notify), decoded: what a ``NOTIFY_SOCKET`` datagram says.

A datagram is newline-separated ``KEY=VALUE`` assignments. Honoured: ``READY=1``,
``WATCHDOG=1`` (alive), ``STATUS=…``, ``STOPPING=1``, ``WATCHDOG_USEC=…`` (a new heartbeat
timeout), ``EXTEND_TIMEOUT_USEC=…`` (more startup time), ``WATCHDOG=trigger`` (the service
asks to be treated as failed), and heartwatch's own ``X_HEARTWATCH_EVENT=<kind>`` (a data
event, named as a message's ``type`` is). Unknown keys are ignored, as systemd does. Pure: no
sockets here.
"""

from __future__ import annotations

from dataclasses import dataclass

from heartwatch.core.wire import is_data_kind

MAX_DATAGRAM = 4096


@dataclass(frozen=True, slots=True)
class Notice:
    """What one datagram asked for; fields left ``None``/``False`` were not mentioned."""

    ready: bool = False
    alive: bool = False
    stopping: bool = False
    status: str | None = None
    watchdog_timeout: float | None = None  # seconds, from WATCHDOG_USEC
    extend_timeout: float | None = None  # seconds, from EXTEND_TIMEOUT_USEC
    trigger: bool = False
    events: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self == Notice()


class NoticeError(ValueError):
    """The datagram is not sd_notify text."""


def parse_notice(datagram: bytes) -> Notice:
    """Decode one datagram; raise ``NoticeError`` when it is not UTF-8 ``KEY=VALUE`` lines."""
    try:
        text = datagram.decode()
    except UnicodeDecodeError:
        raise NoticeError("not UTF-8") from None
    assignments: dict[str, str] = {}
    events: list[str] = []
    for line in text.split("\n"):
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise NoticeError(f"not KEY=VALUE: {line[:60]!r}")
        if key == "X_HEARTWATCH_EVENT" and value:
            if not is_data_kind(value):  # the same words as a message's type, or refused
                raise NoticeError(f"X_HEARTWATCH_EVENT: {value[:60]!r} is not a data kind")
            events.append(value)
        else:
            assignments[key] = value  # the last assignment of a key wins, as in systemd
    get = assignments.get
    return Notice(
        ready=get("READY") == "1",
        alive=get("WATCHDOG") == "1",
        stopping=get("STOPPING") == "1",
        status=assignments["STATUS"][:500] if "STATUS" in assignments else None,
        watchdog_timeout=_microseconds(get("WATCHDOG_USEC")),
        extend_timeout=_microseconds(get("EXTEND_TIMEOUT_USEC")),
        trigger=get("WATCHDOG") == "trigger",
        events=tuple(events),
    )


def _microseconds(value: str | None) -> float | None:
    return int(value) / 1_000_000 if value is not None and value.isdigit() else None
