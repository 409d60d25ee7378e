"""A fleet host's own state, from how long its agent has been silent. Pure.

Rules / theory of operation
---------------------------

The hub times hosts by its own clock (when it received their last message), never by theirs.

1. Any message from a host makes it **live** (``receive_message``).
2. A sweep (``swept``) moves a silent host only toward worse states: **stale** once silent for
   ``stale_after``, **unreachable** once silent for ``unreachable_after``. A sweep never makes
   a host better: only a message does (so a sweep that read an old ``last_seen`` cannot undo
   the message that came meanwhile; the driver also writes only if ``last_seen`` is unchanged).
3. Start grace: a hub that started less than ``start_grace`` ago makes no host unreachable
   (hosts known from the database had no chance to speak to it yet; a restarted hub must not
   flood). At most stale; once the grace is over the next sweep says what is true.
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

    def due(self, silent_for: float, hub_age: float) -> HostState:
        """What ``silent_for`` seconds of silence make a host, ``hub_age`` seconds after this
        hub started (rule 3: no unreachable within the grace)."""
        if silent_for >= self.unreachable_after and hub_age >= self.start_grace:
            return HostState.UNREACHABLE
        if silent_for >= self.stale_after:
            return HostState.STALE
        return HostState.LIVE

    def swept(self, state: HostState, silent_for: float, hub_age: float) -> HostState:
        """The state a sweep leaves a host in that is ``state`` now (rule 2: never better)."""
        due = self.due(silent_for, hub_age)
        return due if _RANK[due] > _RANK[state] else state

    def next_sweep_in(self, silent_for: float, hub_age: float) -> float:
        """Seconds until a sweep may change a host silent for ``silent_for`` (the driver sleeps
        at most this, so changes are seen on time, not on a tick)."""
        waits = [self.stale_after - silent_for, self.unreachable_after - silent_for]
        if silent_for >= self.unreachable_after:
            waits.append(self.start_grace - hub_age)
        positive = [wait for wait in waits if wait > 0]
        return min(positive, default=float("inf"))


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
