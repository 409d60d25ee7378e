"""What happened, as people read it: numbered entries with wall-clock times. Pure.

The watchdog's events (``events.py``) carry monotonic times and live in the core; the journal
is their public form, plus what only the daemon knows (a process's exit code, an alert sent,
the daemon itself starting). Every entry gets the next id and is handed to each listener in
the order they subscribed: the history store, the alerts, the event websockets. Listeners are
plain callables run in the caller's thread; one that raises is reported to ``on_error``, never
allowed to stop the others. The journal keeps nothing: the history store does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

# "note": a new reason in the same state (``ReasonChanged``), which is not a transition.
# "probe": a probe's verdict changed (``ProbeChanged``: passing, or failing, and why).
# "reload": a configuration applied (what it added, changed, removed) or refused, and why.
EntryKind = Literal[
    "transition", "note", "recovery", "exit", "restart", "alert", "daemon", "probe", "reload"
]

# The daemon's own entries (kind "daemon") begin with these: the history reads a run of the
# daemon from one "started" to its "stopping" (a killed daemon writes none).
DAEMON_STARTED = "heartwatch started"
DAEMON_STOPPING = "heartwatch stopping"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: int
    at: float  # Unix time, seconds
    kind: EntryKind
    service: str | None  # None: about the daemon itself
    reason: str
    state: str | None = None  # a transition's new state
    previous: str | None = None  # a transition's old state
    detail: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "kind": self.kind,
            "service": self.service,
            "reason": self.reason,
            "state": self.state,
            "previous": self.previous,
            "detail": dict(self.detail) if self.detail is not None else None,
        }


Listener = Callable[[JournalEntry], None]


class Journal:
    """Hands out ids, tells the listeners (the history keeps the entries, not the journal)."""

    def __init__(self, *, first_id: int = 1, on_error: Callable[[Exception], None]) -> None:
        self._next_id = first_id
        self._listeners: list[Listener] = []
        self._on_error = on_error

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every new entry; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def append(
        self,
        kind: EntryKind,
        service: str | None,
        reason: str,
        at: float,
        *,
        state: str | None = None,
        previous: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> JournalEntry:
        entry = JournalEntry(self._next_id, at, kind, service, reason, state, previous, detail)
        self._next_id += 1
        for listener in list(self._listeners):
            try:
                listener(entry)
            except Exception as error:  # one listener's bug must not silence the others
                self._on_error(error)
        return entry
