"""Is one started service on time? Readiness, startup grace, heartbeat and data deadlines.

Rules (all times monotonic seconds; a service's clock starts at its spawn, ``started_at``):

- *Readiness.* A service that beats is ready at its first message (or an explicit ready
  notice). One configured ``ready = "notify"`` is ready only at an explicit notice
  (``READY=1``). One that never beats is ready ``ready_delay`` seconds after spawn, and never
  before it has been up ``startsecs`` (supervisord's minimum up-time: a process that exits
  sooner was a failed start, not a run).
- *Startup grace.* A service that should beat or notify but is not ready ``startup_grace``
  seconds after spawn is overdue ("no heartbeat within 60.0 s startup grace").
- *Heartbeat.* Once ready, any message counts as alive; ``heartbeat_timeout`` seconds without one
  is overdue ("no heartbeat for 61.2 s").
- *Data flow.* Once ready, each kind in ``data_timeout`` must arrive within its timeout of the
  previous one (or of readiness); silence is expected inside the startup grace, so a data
  deadline never falls before the grace ends ("no poiid for 10m").

``Liveness`` only answers questions; it never decides what to do about a late service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from heartwatch.core.probes import RunProbes
from heartwatch.core.units import format_duration


@dataclass(frozen=True, slots=True)
class LivenessRules:
    ready_on_message: bool
    ready_delay: float
    startup_grace: float
    heartbeat_timeout: float | None
    data_timeout: Mapping[str, float]
    ready_on_notice: bool = False
    # The up-time before a start counts as a success (an exit sooner is a failed start); 0 for
    # a watch-only service, which has no process to stay up.
    startsecs: float = 0.0

    @property
    def waits_for_word(self) -> bool:
        """Ready only when the service says something, not after a fixed delay."""
        return self.ready_on_message or self.ready_on_notice

    @property
    def ready_after(self) -> float:
        """For a service that says nothing: seconds after spawn at which it is ready."""
        return max(self.ready_delay, self.startsecs)


@dataclass(slots=True)
class Liveness:
    """The timestamps of one run of a service, and the deadlines that follow from them."""

    rules: LivenessRules
    started_at: float
    ready_at: float | None = None
    last_seen_at: float | None = None
    last_data_at: dict[str, float] = field(default_factory=dict)
    # This run's probes (``probes.py``), if the service has any: they end with the run.
    probes: RunProbes | None = None

    def receive_message(self, kind: str, now: float) -> None:
        self.last_seen_at = now
        if kind != "heartbeat":
            self.last_data_at[kind] = now

    def ready_deadline(self) -> float | None:
        """When a service that never beats becomes ready, if it has not yet."""
        if self.ready_at is not None or self.rules.waits_for_word:
            return None
        return self.started_at + self.rules.ready_after

    def next_deadline(self) -> float | None:
        """The earliest instant at which ``overdue`` or readiness could change, if any."""
        ready = self.ready_deadline()
        if ready is not None:
            return ready
        if self.ready_at is None:
            return self.started_at + self.rules.startup_grace
        deadlines = [self._heartbeat_deadline(), *self._data_deadlines().values()]
        present = [d for d in deadlines if d is not None]
        return min(present) if present else None

    def overdue(self, now: float) -> str | None:
        """The reason this service is late at ``now``, or ``None`` while it is on time."""
        late = self.lateness(now)
        return None if late is None else late[0]

    def lateness(self, now: float) -> tuple[str, float] | None:
        """Why this service is late at ``now``, and since when it has been silent (what the
        missed deadline counts from); ``None`` while it is on time."""
        if self.ready_at is None:
            if self.rules.waits_for_word and now >= self.started_at + self.rules.startup_grace:
                grace = format_duration(self.rules.startup_grace)
                word = "ready notice" if self.rules.ready_on_notice else "heartbeat"
                return f"no {word} within {grace} startup grace", self.started_at
            return None
        heartbeat = self._heartbeat_deadline()
        if heartbeat is not None and now >= heartbeat:
            base = self._heartbeat_base()
            return f"no heartbeat for {format_duration(now - base)}", base
        for kind, deadline in self._data_deadlines().items():
            if now >= deadline:
                previous = self.last_data_at.get(kind)
                if previous is None:
                    since = format_duration(now - self.ready_at)
                    return f"no {kind} since it became ready {since} ago", self.ready_at
                return f"no {kind} for {format_duration(now - previous)}", previous
        return None

    def within_startsecs(self, now: float) -> bool:
        """Has this run been up less than ``startsecs``? (Its end then was a failed start.)"""
        return now - self.started_at < self.rules.startsecs

    def set_heartbeat_timeout(self, timeout: float) -> None:
        """The service asked for another heartbeat timeout (``WATCHDOG_USEC``), for this run."""
        self.rules = replace(self.rules, heartbeat_timeout=timeout or None)

    def extend_startup(self, extra: float, now: float) -> None:
        """The service asked for more startup time (``EXTEND_TIMEOUT_USEC``): ``extra`` from now."""
        wanted = now + extra - self.started_at
        if self.ready_at is None and wanted > self.rules.startup_grace:
            self.rules = replace(self.rules, startup_grace=wanted)

    def _heartbeat_base(self) -> float:
        assert self.ready_at is not None
        seen = self.last_seen_at
        return self.ready_at if seen is None or seen < self.ready_at else seen

    def _heartbeat_deadline(self) -> float | None:
        if self.rules.heartbeat_timeout is None:
            return None
        return self._heartbeat_base() + self.rules.heartbeat_timeout

    def _data_deadlines(self) -> dict[str, float]:
        assert self.ready_at is not None
        grace_end = self.started_at + self.rules.startup_grace
        deadlines = {}
        for kind, timeout in self.rules.data_timeout.items():
            previous = self.last_data_at.get(kind, self.ready_at)
            deadlines[kind] = max(grace_end, max(previous, self.ready_at) + timeout)
        return deadlines
