"""A fleet host's own state, from how long its agent has been silent. Pure.

Rules / theory of operation
---------------------------

The hub times hosts by its own clock (when it received their last message), never by theirs.

1. Any message from a host makes it **live** (``receive_message``).
2. A sweep (``swept``) moves a silent host only toward worse states: **stale** once silent for
   ``stale_after``, **unreachable** once silent for ``unreachable_after``. A sweep never makes
   a host better: only a message does (so a sweep that read an old ``last_seen`` cannot undo
   the message that came meanwhile; the driver also writes only if ``last_seen`` is unchanged).
3. Grace: a host is judged only by a hub that could have heard it. A hub *hears* while it
   is connected to the broker, its database takes its writes, and what it received is
   committed promptly (no message waiting ``stale_after`` or longer: ``HostRules.hears``).
   Silence measured while the hub was deaf (a database outage, an ingest stalled or behind,
   a broker never reached) is the hub's, not the host's: the heartbeats wait in the queue.
   So no host is made unreachable while the hub is deaf, nor within ``start_grace`` of the
   moment it began hearing again (``Hearing``: the hub's start, the broker reached, the
   database back, the backlog written); at most stale. A restarted hub, or one whose
   database blinked, must not flood. Once the grace is over the next sweep says what is true.
4. Alerts follow the state changes, so each is said once (the driver writes each change once,
   atomically, and only the hub whose write changed the row alerts): **unreachable** when a
   host becomes unreachable (once per outage: it stays unreachable until a message), **back**
   when a message comes from an unreachable host. Stale alone says nothing (a late heartbeat
   is not an outage).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from heartwatch.core.units import format_duration


class HostState(StrEnum):
    LIVE = "live"
    STALE = "stale"
    UNREACHABLE = "unreachable"


HostAlertKind = Literal["unreachable", "back"]

_RANK = {HostState.LIVE: 0, HostState.STALE: 1, HostState.UNREACHABLE: 2}


@dataclass(frozen=True, slots=True)
class HostRules:
    """The silences that make a host stale, then unreachable; the hub's start grace."""

    stale_after: float
    unreachable_after: float
    start_grace: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.stale_after < self.unreachable_after:
            raise ValueError("0 < stale_after < unreachable_after is required")
        if self.start_grace < 0:
            raise ValueError("start_grace cannot be negative")

    def due(self, silent_for: float, heard_for: float | None) -> HostState:
        """What ``silent_for`` seconds of silence make a host, ``heard_for`` seconds after this
        hub began hearing (None: it cannot hear now); rule 3: no unreachable within the grace."""
        if (
            silent_for >= self.unreachable_after
            and heard_for is not None
            and heard_for >= self.start_grace
        ):
            return HostState.UNREACHABLE
        if silent_for >= self.stale_after:
            return HostState.STALE
        return HostState.LIVE

    def swept(self, state: HostState, silent_for: float, heard_for: float | None) -> HostState:
        """The state a sweep leaves a host in that is ``state`` now (rule 2: never better)."""
        due = self.due(silent_for, heard_for)
        return due if _RANK[due] > _RANK[state] else state

    def next_sweep_in(self, silent_for: float, heard_for: float | None) -> float:
        """Seconds until a sweep may change a host silent for ``silent_for`` (the driver sleeps
        at most this, so changes are seen on time, not on a tick); while the hub is deaf, only
        stale can fall due."""
        waits = [self.stale_after - silent_for]
        if heard_for is not None:
            waits.append(self.unreachable_after - silent_for)
            if silent_for >= self.unreachable_after:
                waits.append(self.start_grace - heard_for)
        positive = [wait for wait in waits if wait > 0]
        return min(positive, default=float("inf"))

    def hears(self, ears: Ears) -> bool:
        """Whether a hub in this condition hears its hosts (rule 3)."""
        return ears.broker and ears.database and ears.backlog < self.stale_after


@dataclass(frozen=True, slots=True)
class Ears:
    """What a hub knows of its own hearing at one moment."""

    broker: bool = True  # connected to the broker now
    database: bool = True  # its last write (and read) went through
    backlog: float = 0.0  # seconds the oldest message received but not committed has waited


class Hearing:
    """Since when a hub has heard its hosts without a break (rule 3), from its ``Ears`` at
    each sweep; ``since`` is None while it is deaf."""

    def __init__(self, rules: HostRules, since: float | None) -> None:
        self.rules = rules
        self.since = since

    def observe(self, now: float, ears: Ears) -> float | None:
        """Seconds it has heard for at ``now`` (None: deaf now; hearing again restarts it)."""
        if not self.rules.hears(ears):
            self.since = None
            return None
        if self.since is None:
            self.since = now
        return now - self.since


def receive_message(state: HostState) -> tuple[HostState, HostAlertKind | None]:
    """A message from a host in ``state``: it is live, and back if it was unreachable."""
    return HostState.LIVE, "back" if state is HostState.UNREACHABLE else None


def host_alert(previous: HostState, new: HostState) -> HostAlertKind | None:
    """The alert a change from ``previous`` to ``new`` calls for (rule 4), if any."""
    if new is HostState.UNREACHABLE and previous is not HostState.UNREACHABLE:
        return "unreachable"
    if previous is HostState.UNREACHABLE and new is HostState.LIVE:
        return "back"
    return None


def host_alert_text(host: str, kind: HostAlertKind, silent_for: float | None) -> str:
    """What the alert says, naming the host (``silent_for``: how long it had said nothing)."""
    if kind == "unreachable":
        quiet = f" (no message for {format_duration(silent_for)})" if silent_for else ""
        return f"host {host} is unreachable{quiet}; its services are unknown, their alerts held"
    return f"host {host} is reachable again"
