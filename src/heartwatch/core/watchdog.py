"""The pipeline's brain: what state each service is in, and what must happen next.

Pure and synchronous. Inputs arrive through ``receive_*`` methods and ``tick``, each with the
monotonic ``now``; outputs are drained with ``actions_to_take()`` (for a driver to carry out)
and ``events_to_take()`` (facts, for logs and history). ``next_deadline()`` says when ``tick``
must run next; nothing here reads a clock or sleeps.

Rules / theory of operation
---------------------------

Each service has three values, each changed only through the watchdog's own steps:

- its *state* (``ServiceState``), what people see; ``_flip`` changes it, and only along
  ``events.STATE_TRANSITIONS``;
- its *phase* (``Phase``), where its process is: none, spawned, stop decided (given up on,
  waiting for its dependents to stop), stop sent, or (watch-only) on_down running;
  ``_set_phase`` changes it, only along ``events.PHASE_TRANSITIONS``;
- its *goal* (``Goal``), what should happen: stay down, be up, or be restarted (a recovery
  is under way: ``restart_pending``).

A service is *alive* while its phase says a process exists. After every input the watchdog
*reconciles*, applying three rules until nothing changes:

1. Stop: a service that is alive, not already stopping, and either unwanted, pending a restart
   or failed, is stopped once none of its dependents is alive. Dependents therefore stop first.
2. Start: a service that is wanted, not alive, not failed or exited, past its backoff, whose
   requirements are all ready and none of whose dependents is alive and going down (during a
   recovery: none alive at all), is spawned (a watch-only service
   instead runs ``on_down`` if it is pending a restart, or simply starts being watched).
   Requirements therefore start first, and each waits for the previous one to be ready.
3. Readiness and deadlines are ``Liveness``'s; when a ready service misses one, or exits, it
   *fails*.

A failure of service S consults S's ``RestartPolicy``: it gives a backoff delay or gives up
(``failed``). Unless it gave up, ``graph.recovery_set(S, mode)`` are all marked
``restart_pending``, where ``mode`` is S's ``restart`` for the failure's cause (``exit``: its
process ended; ``hang``: it is there but failing); rules 1 and 2 then stop them in reverse
order and start them in order. A process that ends within ``startsecs`` of its spawn was a
failed start, whatever its exit code, and one that says nothing is ready only after it.
A service already pending a restart is never recovered again: its failure is part of the plan.

Invariant relied on by drivers: ``receive_message`` moves a deadline *earlier* only together
with an event, so after a message a driver re-arms its timer only if events were produced. A
message from a running service only moves deadlines later, and costs a few dictionary writes.
After any other input a driver re-arms its timer unconditionally.

A service that names a queue (``queue = {…}``) is also failed when its queue holds messages and
its depth has not gone down for ``stalled_after`` (``stall.py``), even while it beats.

A change of state is a ``Transition``; a new reason in the same state ("waiting for emulator")
is a ``ReasonChanged``, never a transition from a state to itself. Runs after the first are
counted by cause: ``restarts`` are the daemon's recoveries, ``restarts_requested`` people's
starts and restarts (``run_cause`` says which began the newest run).

Every fact about a service lives in its ``ServiceRecord``, the service's own words included
(its status text, the newest data event of each kind, what its client dropped). Every
``receive_*`` raises ``UnknownService`` for a name the pipeline does not have.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Literal

from heartwatch.core.events import (
    PHASE_TRANSITIONS,
    STATE_TRANSITIONS,
    Action,
    Event,
    IllegalTransition,
    Phase,
    ReasonChanged,
    RecoveryPlanned,
    RunOnDown,
    ServiceState,
    Spawn,
    Stop,
    Transition,
    UnknownService,
    describe_exit,
)
from heartwatch.core.graph import DependencyGraph
from heartwatch.core.liveness import Liveness, LivenessRules
from heartwatch.core.policy import RestartPolicy
from heartwatch.core.probes import ProbeChanged, ProbeRole, RunProbe, RunProbes
from heartwatch.core.reconfigure import ServiceChanges, diff_services
from heartwatch.core.spec import FailureCause, ServiceSpec
from heartwatch.core.stall import QueueStall

_S = ServiceState
_P = Phase
# States from which a start needs a person's (or the daemon's) explicit word.
_HELD = frozenset({_S.FAILED, _S.EXITED})
# States in which a restart under way was given up: its cause must not label a later start.
_NOT_COMING_BACK = frozenset({_S.STOPPED, _S.EXITED, _S.FAILED})
_ALIVE = frozenset({_P.SPAWNED, _P.STOP_DECIDED, _P.STOP_SENT})

# Distinct data kinds remembered per service; further kinds are refused, so that a client
# inventing kinds cannot grow the daemon's memory.
MAX_DATA_KINDS = 64
TOO_MANY_KINDS = "too_many_kinds"  # the refusal code ``receive_message`` returns
# The reasons a reload gives (``reconfigure``).
CONFIGURATION_CHANGED = "reload: configuration changed"
REMOVED = "reload: removed from the configuration"
ADDED = "reload: added to the configuration"


# Why a run began: the first of the daemon's life, a recovery, or a person's start or restart.
RunCause = Literal["first", "recovery", "requested"]


class Goal(Enum):
    """What should become of a service: a person's wish, or a recovery under way."""

    DOWN = "down"  # not wanted: stop it, keep it stopped
    UP = "up"  # wanted running
    RESTART = "restart"  # wanted running, after a stop and start (a recovery, or asked for)


@dataclass(frozen=True, slots=True)
class DataSeen:
    """The newest data event of one kind from one service (what status shows of it)."""

    at: float  # monotonic
    sent_time: str | None  # the sender's own clock, as it sent it
    data: Any


@dataclass(slots=True)
class ServiceRecord:
    """Everything the watchdog knows about one service. Read it; do not mutate it."""

    spec: ServiceSpec
    policy: RestartPolicy
    state: ServiceState = _S.STOPPED
    reason: str = "not started"
    state_since: float = 0.0
    phase: Phase = _P.NONE
    goal: Goal = Goal.DOWN
    pending_reason: str = ""
    restart_cause: str | None = None  # why the restart under way began: the next Spawn's reason
    start_not_before: float = 0.0
    pid: int | None = None
    liveness: Liveness | None = None
    queue: QueueStall | None = None
    spawns: int = 0
    # The runs after the first, by cause: the daemon's recoveries (``restarts``) apart from
    # people's starts and restarts, which are no sign of trouble.
    run_cause: RunCause = "first"  # why the newest run began
    recovering: bool = False  # the restart under way is the daemon's recovery, not a person's
    recoveries: int = 0
    restarts_requested: int = 0
    last_exit: str | None = None
    messages: int = 0
    data_counts: dict[str, int] = field(default_factory=dict)
    last_seen_at: float | None = None
    last_data: dict[str, DataSeen] = field(default_factory=dict)
    status_text: str | None = None  # its own newest words (STATUS=, "status")
    client_dropped: int = 0  # data events its client reported dropping
    # Probe runs since the daemon started, by probe and outcome (True: passed): for metrics.
    probe_runs: dict[tuple[ProbeRole, bool], int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def rules(self) -> LivenessRules:
        """The configured liveness rules (a run's own changes are in ``liveness.rules``)."""
        return self.spec.liveness

    @property
    def wanted(self) -> bool:
        return self.goal is not Goal.DOWN

    @property
    def restart_pending(self) -> bool:
        return self.goal is Goal.RESTART

    @property
    def alive(self) -> bool:
        """A process has been spawned for it and not yet seen to exit."""
        return self.phase in _ALIVE

    @property
    def restarts(self) -> int:
        """Runs the daemon began to recover (it, or one it is recovered with, failed; for a
        watch-only service: watched afresh after its recovery); people's own starts and
        restarts are ``restarts_requested``."""
        return self.recoveries

    @property
    def ready(self) -> bool:
        """Can dependents rely on this service now? (A readiness probe that fails makes it
        not ready, without a restart.)"""
        return (
            self.liveness is not None
            and self.liveness.ready_at is not None
            and not self.restart_pending
            and self.state in (_S.RUNNING, _S.UNRESPONSIVE)
            and (self.liveness.probes is None or self.liveness.probes.ready)
        )


class Watchdog:
    """Service states, deadlines and recovery decisions for one pipeline."""

    def __init__(
        self,
        services: Sequence[ServiceSpec],
        *,
        random: Callable[[], float] = _random.random,
        now: float = 0.0,
    ) -> None:
        """``now``: when the pipeline begins, the time its services have been in ``stopped``
        since (a status's ``since_age``)."""
        self._random = random
        # Services a reload removed whose process is not gone yet, each with those that
        # relied on it then: they go down first (``reconfigure``).
        self._leaving: dict[str, tuple[str, ...]] = {}
        # What a running process required when its run began and a reload took from it (it
        # was removed, or its ``requires`` changed): those still wait for it to go down before
        # they stop, as for a dependent. Kept until its process is gone.
        self._old_requirements: dict[str, frozenset[str]] = {}
        # A new record to make once a leaving one is gone (a service added back, or changed
        # between watch-only and a command), and whether it is to start then.
        self._successors: dict[str, tuple[ServiceSpec, bool]] = {}
        # While a reload applies its changes one by one, the rules wait for all of them (a
        # change must not start what the next one restarts at once).
        self._deciding = False
        self._set_graph(services)
        self._records = {s.name: _create_record(s, random, now) for s in services}
        self._actions: list[Action] = []
        self._events: list[Event] = []

    def _set_graph(self, services: Sequence[ServiceSpec]) -> None:
        self.graph = DependencyGraph({s.name: s.requires for s in services})
        # Leaving services come last: the stop rule, walking backwards, sees them first.
        order = self.graph.start_order()
        self._order = [*order, *(name for name in self._leaving if name not in set(order))]
        # All that relies on each service, through watch-only services too (they have no
        # process whose being alive would stand for theirs): the stop and start rules wait
        # for these, not only for the direct dependents.
        self._relying = {name: tuple(self.graph.dependents(name)) for name in self._order}

    # -- outputs ---------------------------------------------------------------------------

    def actions_to_take(self) -> list[Action]:
        """Drain what a driver must do now, in order."""
        actions, self._actions = self._actions, []
        return actions

    def events_to_take(self) -> list[Event]:
        """Drain the facts recorded since the last call."""
        events, self._events = self._events, []
        return events

    @property
    def has_output(self) -> bool:
        return bool(self._actions or self._events)

    def next_deadline(self) -> float | None:
        """When ``tick`` must next run, or ``None`` if nothing is timed."""
        deadlines = [d for d in map(self._deadline_of, self._records.values()) if d is not None]
        return min(deadlines) if deadlines else None

    def records(self) -> list[ServiceRecord]:
        """All services, in start order."""
        return [self._records[name] for name in self._order]

    def record(self, name: str) -> ServiceRecord:
        """The record of ``name``; ``UnknownService`` if the pipeline has no such service."""
        record = self._records.get(name)
        if record is None:
            raise UnknownService(name)
        return record

    def __contains__(self, name: object) -> bool:
        return name in self._records

    # -- inputs: requests ------------------------------------------------------------------

    def receive_start(self, names: Iterable[str], now: float, reason: str) -> None:
        """Want ``names`` (and what they require) running; clears ``failed`` and ``exited``."""
        names = self._configured(names)
        for name in names:
            for member in (name, *self.graph.requirements(name)):
                self._want(self._records[member], reason, now)
        self._take_dependents_along(now)
        self._reconcile(now)

    def _take_dependents_along(self, now: float) -> None:
        """A service whose restart is under way starts again only once what relies on it is
        down (and stops, if it still runs, only then); so what relies on it and is wanted
        again (a person's start after a stop, before that stop went out) goes down and comes
        back with it, as in a restart. Kept running, it would hold that restart forever."""
        for record in self.records():
            if not record.restart_pending:
                continue
            for name in self.graph.dependents(record.name):
                dependent = self._records[name]
                if dependent.restart_pending or not dependent.wanted or dependent.state in _HELD:
                    continue
                dependent.goal = Goal.RESTART
                dependent.recovering = record.recovering
                dependent.pending_reason = f"with {record.name}: {record.pending_reason}"
                if dependent.phase is not _P.NONE or dependent.state is not _S.STOPPED:
                    self._flip(dependent, _S.RESTARTING, dependent.pending_reason, now)

    def _known(self, names: Iterable[str]) -> list[str]:
        """``names``, each checked before any is acted on: all or nothing."""
        names = list(names)
        for name in names:
            self.record(name)
        return names

    def _configured(self, names: Iterable[str]) -> list[str]:
        """``names`` as ``_known``, less those whose new record waits for the old one to go
        (each is started when it begins); one a reload removed cannot be started."""
        names = self._known(names)
        for name in names:
            if name in self._leaving and name not in self._successors:
                raise UnknownService(name)
        for name in names:
            if name in self._successors:
                self._successors[name] = (self._successors[name][0], True)
        return [name for name in names if name not in self._successors]

    def _want(self, record: ServiceRecord, reason: str, now: float) -> None:
        """A person (or the daemon) wants this service up, whatever it is doing now.

        A leaving record (removed, or replaced under its name) is never wanted again: asked
        back, its stop would be cancelled and it would run on with its old settings. Its
        successor is to start instead, once it begins."""
        if record.name in self._leaving:
            successor = self._successors.get(record.name)
            if successor is not None:
                self._successors[record.name] = (successor[0], True)
            return
        if record.goal is Goal.DOWN:
            record.goal = Goal.UP
            record.recovering = False
        record.start_not_before = now  # a person does not wait out an old backoff
        if record.phase is _P.STOP_DECIDED:
            # Its stop was decided (it failed) but has not gone out yet, waiting for
            # dependents: it must still go, then start afresh.
            record.policy.reset()
            record.goal = Goal.RESTART
            record.recovering = False
            record.pending_reason = reason
            self._flip(record, _S.RESTARTING, reason, now)
        elif record.state in _HELD or record.state is _S.STOPPED:
            record.policy.reset()
            if record.state in _HELD:
                self._flip(record, _S.STOPPED, reason, now)
        elif record.state is _S.STOPPING and record.phase is _P.SPAWNED:
            assert record.liveness is not None
            # Asked back before its stop signal went out: it simply keeps running.
            ready = record.liveness.ready_at is not None
            self._flip(record, _S.RUNNING if ready else _S.STARTING, reason, now)

    def receive_stop(self, names: Iterable[str], now: float, reason: str) -> None:
        """Want ``names`` (and what requires them) stopped; dependents stop first."""
        for name in self._known(names):
            if name in self._successors:  # its new record is not to start when it begins
                self._successors[name] = (self._successors[name][0], False)
            for member in (name, *self.graph.dependents(name)):
                record = self._records[member]
                record.goal = Goal.DOWN
                record.recovering = False  # whatever was under way, its next run is asked for
                record.pending_reason = reason
                if record.alive:
                    self._flip(record, _S.STOPPING, reason, now)  # its stop may wait for others
                elif record.state is not _S.STOPPED:
                    self._flip(record, _S.STOPPED, reason, now)
        self._reconcile(now)

    def receive_restart(self, name: str, now: float, reason: str) -> None:
        """Restart ``name`` and its dependents now, as a person asked: no backoff, no count."""
        if not self._configured([name]):
            return  # its new record starts once the old one is gone
        record = self.record(name)
        record.policy.reset()
        record.start_not_before = now
        for member in self.graph.requirements(name):
            self._want(self._records[member], reason, now)
        if record.state in _HELD:
            self._flip(record, _S.STOPPED, reason, now)
        members = self.graph.recovery_set(name, "service")
        self._plan_recovery(record, members, reason, now, requested=True)
        self._take_dependents_along(now)
        self._reconcile(now)

    # -- inputs: a new configuration ---------------------------------------------------------

    def reconfigure(self, services: Sequence[ServiceSpec], now: float) -> ServiceChanges:
        """Run ``services`` from now on, as a difference (a reload; ``core/reconfigure.py``).

        Unchanged services are not touched: process, deadlines, counters, history go on.
        Changed ones take their new spec and, if wanted (or held: the change may be the fix),
        restart as ``receive_restart`` does, dependents along; a watch-only one is watched
        afresh. Removed ones stop, what relied on them first, and their record is dropped
        once their process is gone. Added ones start, unless ``autostart`` is false.

        A service that changes between watch-only and a command, or is added back while its
        old run is still going, is a removal and an addition under one name: the old record
        leaves as a removed one does (its dependents restart), then a new one begins.

        What is compared with ``services`` is the configuration in force: a leaving record
        stands for nothing, its successor (not begun yet) for its name. So reloads in a row
        while an old run stops are differences of configurations, as one alone is: a successor
        a reload takes away again is dropped (``removed``), one it changes takes the new spec."""
        self._deciding = True
        try:
            changes = self._apply_changes(services, now)
        finally:
            self._deciding = False
        self._reconcile(now)
        return changes

    def _apply_changes(self, services: Sequence[ServiceSpec], now: float) -> ServiceChanges:
        current = {}
        for name in self._order:
            if name not in self._leaving:
                current[name] = self._records[name].spec
            elif name in self._successors:
                current[name] = self._successors[name][0]
        new = {spec.name: spec for spec in services}
        changes = diff_services(current, new)
        for name in changes.removed:
            # A successor not begun is simply not to be; its old run is leaving already.
            if self._successors.pop(name, None) is None:
                self._leaving[name] = tuple(self._relying.get(name, ()))
        replaced = []  # changed between watch-only and a command: removed, then added
        for spec in services:
            record = self._records.get(spec.name)
            if spec.name in self._successors:  # waiting for its old run to go: newest spec
                self._successors[spec.name] = (spec, self._successors[spec.name][1])
            elif spec.name in self._leaving:  # removed before, back before its process is gone
                self._successors[spec.name] = (spec, spec.autostart)
            elif record is None:
                self._records[spec.name] = _create_record(spec, self._random, now)
            elif spec.name in changes.changed and record.spec.watch_only != spec.watch_only:
                self._successors[spec.name] = (spec, record.wanted or record.state in _HELD)
                self._leaving[spec.name] = tuple(self._relying.get(spec.name, ()))
                replaced.append(spec.name)
            elif spec.name in changes.changed:
                self._replace_spec(record, spec)
        required_then = {
            name: self.graph.requirements(name) for name, r in self._records.items() if r.alive
        }
        self._set_graph(services)
        for name, required in required_then.items():
            now_required = set() if name in self._leaving else self.graph.requirements(name)
            if taken := required - now_required:
                self._old_requirements[name] = self._old_requirements.get(name, frozenset()) | taken
        for name in changes.removed:
            self._remove(self._records[name], now)
        pending = {name for name in changes.unchanged if self._records[name].restart_pending}
        for name in replaced:
            record = self._records[name]
            self._remove(record, now)
            dependents = self.graph.dependents(name)
            if dependents:
                self._plan_recovery(record, dependents, CONFIGURATION_CHANGED, now, requested=True)
        for name in changes.changed:
            record = self._records[name]
            if name in self._leaving or not (record.wanted or record.state in _HELD):
                # Stopped: it starts, when asked, with its new settings; or its successor
                # takes them when its old run is gone.
                continue
            if record.spec.watch_only:
                self._rewatch(record, now)
            else:
                self.receive_restart(name, now, CONFIGURATION_CHANGED)
        along = {
            name
            for name in changes.unchanged
            if name not in pending and self._records[name].restart_pending
        }
        started = [name for name in changes.added if new[name].autostart]
        if started:
            self.receive_start(started, now, ADDED)
        return replace(
            changes,
            unchanged=tuple(name for name in changes.unchanged if name not in along),
            restarted=tuple(name for name in changes.unchanged if name in along),
        )

    def _replace_spec(self, record: ServiceRecord, spec: ServiceSpec) -> None:
        record.spec = spec
        record.policy = RestartPolicy(spec.restart_rules, random=self._random)
        record.queue = QueueStall(spec.queue.stalled_after) if spec.queue is not None else None

    def _remove(self, record: ServiceRecord, now: float) -> None:
        record.goal = Goal.DOWN
        record.recovering = False
        record.pending_reason = REMOVED
        if record.alive:
            self._flip(record, _S.STOPPING, REMOVED, now)

    def _rewatch(self, record: ServiceRecord, now: float) -> None:
        """A changed watch-only service being watched: a new run by its new rules (probes,
        deadlines, readiness from now), without its ``on_down``, which is for its failures;
        its dependents go on."""
        if record.phase is not _P.NONE or record.liveness is None or record.restart_pending:
            return  # not watched now, or its recovery is under way: it takes the new rules then
        record.liveness = None  # the start rule begins the new run
        self._flip(record, _S.RESTARTING, CONFIGURATION_CHANGED, now)

    def _drop_gone(self, now: float) -> bool:
        """Forget the removed services whose process (or ``on_down``) is gone; begin their
        successors. Whether anything was done."""
        gone = [
            name
            for name in self._leaving
            if self._records[name].phase is _P.NONE and self._records[name].liveness is None
        ]
        for name in gone:
            record = self._records.pop(name)
            if record.state is not _S.STOPPED:
                self._flip(record, _S.STOPPED, REMOVED, now)
            del self._leaving[name]
            successor = self._successors.pop(name, None)
            if successor is None:
                self._order.remove(name)
                self._relying.pop(name, None)
                continue
            spec, start = successor
            self._records[name] = _create_record(spec, self._random, now)
            if start:
                for member in (name, *self.graph.requirements(name)):
                    self._want(self._records[member], ADDED, now)
        return bool(gone)

    # -- inputs: what processes did ----------------------------------------------------------

    def receive_message(
        self,
        name: str,
        kind: str,
        now: float,
        sent_time: str | None = None,
        data: Any = None,
    ) -> str | None:
        """A message of ``kind`` (``"heartbeat"`` or a data kind) from ``name``, with a data
        event's ``sent_time`` and payload; returns why it was refused (``TOO_MANY_KINDS``), or
        ``None``.

        This is the hot path: for a running service it only records timestamps.
        """
        record = self._records.get(name)
        if record is None:
            raise UnknownService(name)
        if kind != "heartbeat":
            last_data = record.last_data
            if kind not in last_data and len(last_data) >= MAX_DATA_KINDS:
                return TOO_MANY_KINDS
            last_data[kind] = DataSeen(now, sent_time, data)
            record.data_counts[kind] = record.data_counts.get(kind, 0) + 1
        record.messages += 1
        record.last_seen_at = now
        liveness = record.liveness
        if liveness is not None:
            liveness.receive_message(kind, now)
            if record.state is not _S.RUNNING:
                self._receive_message_slow(record, now)
        return None

    def receive_status(self, name: str, text: str, now: float) -> None:
        """The service's own words about itself (``STATUS=``, ``"status"``, a run started)."""
        self.record(name).status_text = text

    def receive_dropped(self, name: str, count: int, now: float) -> None:
        """The service's client reports having dropped ``count`` data events."""
        self.record(name).client_dropped += count

    def receive_ready(self, name: str, now: float) -> None:
        """The service said it is ready (for example ``READY=1``)."""
        record = self.record(name)
        if record.state is _S.STARTING and record.liveness is not None:
            self._become_ready(record, now, "said it is ready")
            self._reconcile(now)
        elif self._late_starter(record):
            # Left unresponsive (autorestart = "never") before it was ever ready: ready now.
            self._become_ready(record, now, "said it is ready")
            self._reconcile(now)

    def receive_failure_report(self, name: str, reason: str, now: float) -> None:
        """The service says it failed (``fail`` message, non-zero exit ping, watchdog trigger)."""
        record = self.record(name)
        if record.state in (_S.STARTING, _S.RUNNING) and not record.restart_pending:
            self._receive_late(record, f"reported failure: {reason}", now)
            self._reconcile(now)

    def receive_limit_exceeded(
        self, name: str, reason: str, now: float, since: float | None = None
    ) -> None:
        """The service's process tree is over ``max_memory`` or ``max_cpu`` (``core/limits.py``
        says ``reason``; ``since``: when a CPU stretch began). A failure like a missed
        deadline: the process is still there but not well (a "hang" for ``restart``'s cause)."""
        record = self.record(name)
        running = record.state in (_S.STARTING, _S.RUNNING) and record.alive
        if running and not record.restart_pending:
            self._receive_late(record, reason, now, silent_since=since)
            self._reconcile(now)

    def receive_heartbeat_timeout(self, name: str, timeout: float, now: float) -> None:
        """The service set its own heartbeat timeout (``WATCHDOG_USEC``) for this run."""
        record = self.record(name)
        if record.liveness is not None:
            record.liveness.set_heartbeat_timeout(timeout)

    def receive_extend_startup(self, name: str, extra: float, now: float) -> None:
        """The service needs ``extra`` more seconds to become ready (``EXTEND_TIMEOUT_USEC``)."""
        record = self.record(name)
        if record.liveness is not None and record.state is _S.STARTING:
            record.liveness.extend_startup(extra, now)

    def receive_queue_depth(self, name: str, depth: int, now: float) -> None:
        """A reading of the service's queue: ``depth`` messages ready."""
        queue = self.record(name).queue
        if queue is not None:
            queue.receive_depth(depth, now)

    def receive_queue_problem(self, name: str, problem: str, now: float) -> None:
        """The queue could not be read (broker down): no verdict on the consumer until it can."""
        queue = self.record(name).queue
        if queue is not None:
            queue.receive_broker_problem(problem)

    def receive_spawned(self, name: str, pid: int, now: float) -> None:
        """The driver started the process asked for by ``Spawn``.

        Only now is a service that needs no word from itself ready ("ready at start"): a
        command that cannot start was never running, and nothing that requires it may start
        on the strength of it."""
        record = self.record(name)
        record.pid = pid
        record.restart_cause = None  # that restart has happened
        liveness = record.liveness
        if (
            record.state is _S.STARTING
            and liveness is not None
            and liveness.ready_at is None
            and not record.rules.waits_for_word
            and record.rules.ready_after <= 0
        ):
            self._become_ready(record, now, "ready at start")
        self._reconcile(now)

    def receive_spawn_failed(self, name: str, error: str, now: float) -> None:
        """The driver could not start the process (no such executable, missing ``cwd``, ...):
        a failed start, like a crash at once (backoff, the crash-loop limit)."""
        record = self.record(name)
        self._receive_down(record, f"cannot start: {error}", now, crashed=True, started=False)

    def receive_exit(
        self, name: str, returncode: int, now: float, last_words: str | None = None
    ) -> None:
        """The service's process ended with ``returncode`` (negative: killed by that signal);
        ``last_words``: the last line it wrote on stderr, which usually says why
        (``exit code 1: ModuleNotFoundError: No module named 'heartwatch'``)."""
        record = self.record(name)
        how = describe_exit(returncode) + (f": {last_words}" if last_words else "")
        self._receive_down(record, how, now, crashed=returncode != 0)

    def receive_on_down_done(self, name: str, outcome: str, now: float) -> None:
        """A watch-only service's ``on_down`` finished; watch it come back, with its grace."""
        record = self.record(name)
        self._set_phase(record, _P.NONE)
        if record.goal is Goal.RESTART:
            record.goal = Goal.UP
        if record.wanted and record.state not in _HELD:
            self._begin_run(record, now, f"on_down done ({outcome})")
        self._reconcile(now)

    def receive_probe_result(
        self, name: str, role: ProbeRole, run: int, passed: bool, result: str, now: float
    ) -> None:
        """A run of ``name``'s ``role`` probe for its run number ``run`` ended: ``passed``, in
        ``result``'s words ("exited 1: error: device offline", "timed out after 5 s").

        A result for a run that is over is ignored. A change of verdict is a ``ProbeChanged``;
        what it does: startup passed releases the run (its grace and deadlines count from
        now), startup exhausted is a failed start, liveness failing a failure, readiness
        decides ``ready`` (failing: not ready, no restart)."""
        record = self.record(name)
        liveness = record.liveness
        probes = liveness.probes if liveness is not None else None
        if liveness is None or probes is None or probes.run != run or not self._probing(record):
            return
        record.probe_runs[role, passed] = record.probe_runs.get((role, passed), 0) + 1
        probe = probes.receive_result(role, passed, result, now)
        if probe is None or probe.passing is None:
            return  # no new verdict: the driver re-arms its timer for the next run
        verdict = probe.describe_verdict()
        self._events.append(ProbeChanged(name, role, probe.passing, verdict, result, now))
        if role == "startup":
            if probe.passing:
                liveness.extend_startup(record.rules.startup_grace, now)  # grace from now
                if liveness.ready_at is not None:
                    liveness.ready_at = now  # its deadlines count from here, not the hold
                    self._become_ready(record, now, verdict)
            else:
                liveness.ready_at = None  # never ready: no healthy run for the restart policy
                self._receive_late(record, probe.describe_failure(), now, liveness.started_at)
        elif role == "liveness":
            if not probe.passing and record.state in (_S.STARTING, _S.RUNNING):
                self._receive_late(record, probe.describe_failure(), now, probe.failing_since)
            elif (
                probe.passing
                and record.state is _S.UNRESPONSIVE
                and record.ready
                and liveness.overdue(now) is None
            ):
                # Left unresponsive (autorestart = "never"): well again by its own probe.
                self._flip(record, _S.RUNNING, verdict, now)
        elif record.state is _S.STARTING:  # readiness, before the run was first ready
            if probe.passing and liveness.ready_at is not None:
                self._become_ready(record, now, verdict)
            elif not probe.passing:
                self._flip(record, _S.STARTING, f"not ready: {verdict}", now)
        self._reconcile(now)  # readiness decides what dependents may do

    def _probing(self, record: ServiceRecord) -> bool:
        """Do its probes run now? While its run is wanted and watched; never once it is over,
        being stopped or restarted."""
        return (
            record.goal is Goal.UP
            and record.liveness is not None
            and record.state in (_S.STARTING, _S.RUNNING, _S.UNRESPONSIVE)
            and (record.spec.watch_only or record.phase is _P.SPAWNED)
        )

    def probe_wanted(self, name: str, run: int) -> bool:
        """Is a probe run of ``name``'s run number ``run`` still of use? (A driver ends the
        checks of a run that is over.)"""
        record = self._records.get(name)
        if record is None or record.liveness is None or record.liveness.probes is None:
            return False
        return record.liveness.probes.run == run and self._probing(record)

    def _start_due_probes(self, record: ServiceRecord, probes: RunProbes, now: float) -> None:
        if self._probing(record):
            for role in probes.start_due(now):
                self._actions.append(RunProbe(record.name, role, probes.run))

    def tick(self, now: float) -> None:
        """Apply every deadline due at ``now``."""
        for record in self.records():
            liveness = record.liveness
            if liveness is None or record.restart_pending:
                continue
            probes = liveness.probes
            if probes is not None:
                self._start_due_probes(record, probes, now)
                if probes.holding:
                    continue  # before its startup probe passes, no other rule applies
            ready_deadline = liveness.ready_deadline()
            if ready_deadline is not None and now >= ready_deadline and record.state is _S.STARTING:
                self._become_ready(record, now, _ready_reason(record.rules))
            if record.state in (_S.STARTING, _S.RUNNING):
                late = liveness.lateness(now)
                if late is None and record.queue is not None and record.state is _S.RUNNING:
                    stalled = record.queue.stalled(now)
                    if stalled is not None:
                        late = stalled, record.queue.progress_at or now
                if late is not None:
                    self._receive_late(record, late[0], now, silent_since=late[1])
        self._reconcile(now)

    # -- failure and recovery --------------------------------------------------------------

    def _receive_message_slow(self, record: ServiceRecord, now: float) -> None:
        liveness = record.liveness
        assert liveness is not None
        if record.state is _S.STARTING:
            if liveness.rules.ready_on_message and liveness.ready_at is None:
                self._become_ready(record, now, "first heartbeat")
                self._reconcile(now)
        elif self._late_starter(record):
            # Left unresponsive (autorestart = "never") before it was ever ready: its startup
            # grace, long past, must not hold it there, nor may it run without being ready.
            if liveness.rules.ready_on_message:
                self._become_ready(record, now, "first heartbeat")
                self._reconcile(now)
            elif not liveness.rules.waits_for_word:  # ready a delay after its spawn
                ready_at = liveness.ready_deadline()
                if ready_at is not None and now < ready_at:
                    self._flip(record, _S.STARTING, "messages resumed", now)
                else:
                    self._become_ready(record, now, "messages resumed")
                    self._reconcile(now)
            # ready = "notify": ready only at its word (``receive_ready``)
        elif (
            record.state is _S.UNRESPONSIVE
            and not record.restart_pending
            and liveness.overdue(now) is None
        ):
            self._flip(record, _S.RUNNING, "messages resumed", now)

    @staticmethod
    def _late_starter(record: ServiceRecord) -> bool:
        """Unresponsive before it was ever ready, and left running (autorestart = "never")."""
        return (
            record.state is _S.UNRESPONSIVE
            and not record.restart_pending
            and record.liveness is not None
            and record.liveness.ready_at is None
        )

    def _receive_late(
        self, record: ServiceRecord, reason: str, now: float, silent_since: float | None = None
    ) -> None:
        self._flip(record, _S.UNRESPONSIVE, reason, now, failure=True, down_since=silent_since)
        if record.spec.autorestart == "never":
            return  # stays unresponsive, watched, until messages resume
        self._receive_failure(record, reason, now, cause="hang")

    def _receive_down(
        self, record: ServiceRecord, how: str, now: float, crashed: bool, started: bool = True
    ) -> None:
        """Its process is gone (``how``); ``started``: it had started (else it never could)."""
        self._set_phase(record, _P.NONE)
        self._old_requirements.pop(record.name, None)
        record.pid = None
        record.last_exit = how
        expected = record.restart_pending or not record.wanted or record.state in _HELD
        if expected:
            # A pending restart stays pending until the start rule spawns it again, so that
            # the rule still waits for the dependents to be down first.
            if not record.wanted:
                self._flip(record, _S.STOPPED, f"{record.pending_reason}; {how}", now)
        elif record.state in (_S.STARTING, _S.RUNNING, _S.UNRESPONSIVE):
            reason = how
            liveness = record.liveness
            if started and liveness is not None and liveness.within_startsecs(now):
                # supervisord's rule: ended before it was up startsecs, it never really
                # started, whatever its exit code; so a quick exit 0 is no success either.
                reason = f"exited within startsecs {liveness.rules.startsecs:g} s: {how}"
                crashed = True
            policy = record.spec.autorestart
            if policy == "never" or (policy == "on-failure" and not crashed):
                self._flip(record, _S.EXITED, reason, now, failure=crashed)
            else:
                self._receive_failure(record, reason, now, cause="exit")
        record.liveness = None  # that run is over, however it ended
        if record.wanted and record.state is _S.STOPPING:
            # Asked back while its stop was under way: it is down now and comes back.
            self._flip(record, _S.RESTARTING, f"{how}; start requested", now)
        self._reconcile(now)

    def _receive_failure(
        self, record: ServiceRecord, reason: str, now: float, cause: FailureCause = "hang"
    ) -> None:
        """Decide on a failed service: give up, or plan its recovery after a backoff.

        ``cause``: "exit" when its process ended, "hang" for every failure of a process that
        is still there (deadlines, stalls, probes, limits): ``restart`` may differ by cause."""
        liveness = record.liveness
        healthy_since = liveness.ready_at if liveness is not None else None
        decision = record.policy.receive_failure(now, healthy_since)
        if decision.delay is None:
            record.liveness = None
            if record.alive:
                self._set_phase(record, _P.STOP_DECIDED)
            window = record.spec.restart_rules.window
            count = decision.restarts_in_window
            restarts = "1 restart" if count == 1 else f"{count} restarts"
            self._flip(
                record,
                _S.FAILED,
                f"gave up after {restarts} in {window:g} s: {reason}",
                now,
                failure=True,
            )
            # Its dependents cannot work without it: stop them, and let them wait for it.
            dependents = self.graph.dependents(record.name)
            if dependents:
                self._plan_recovery(record, dependents, f"{record.name} failed", now)
            return
        record.start_not_before = now + decision.delay
        mode = record.spec.restart_mode(cause)
        members = self.graph.recovery_set(record.name, mode)
        self._plan_recovery(record, members, reason, now, failure=True, group=mode == "group")

    def _plan_recovery(
        self,
        trigger: ServiceRecord,
        members: set[str],
        reason: str,
        now: float,
        *,
        failure: bool = False,
        requested: bool = False,
        group: bool = False,
    ) -> None:
        """Mark ``members`` for a restart; ``failure``: because ``trigger`` itself failed;
        ``requested``: a person asked for it (else it is the daemon's recovery)."""
        chosen = []
        for name in self.graph.sort(members):
            record = self._records[name]
            if record is not trigger and (not record.wanted or record.state in _HELD):
                continue  # a stopped, exited or failed bystander stays as it is
            record.goal = Goal.RESTART
            record.recovering = not requested
            record.pending_reason = (
                reason if record is trigger else f"with {trigger.name}: {reason}"
            )
            chosen.append(name)
            if record.phase is not _P.NONE or record.state is not _S.STOPPED:
                self._flip(
                    record,
                    _S.RESTARTING,
                    record.pending_reason,
                    now,
                    failure=failure and record is trigger,
                )
        if len(chosen) > 1 or group:  # a group recovery is said even when alone
            self._events.append(RecoveryPlanned(trigger.name, tuple(chosen), reason, now))

    # -- reconciliation --------------------------------------------------------------------

    def _reconcile(self, now: float) -> None:
        if self._deciding:
            return
        changed = True
        while changed:
            changed = False
            for name in reversed(self._order):
                changed |= self._apply_stop_rule(self._records[name], now)
            for name in self._order:
                changed |= self._apply_start_rule(self._records[name], now)
            if self._leaving:
                changed |= self._drop_gone(now)

    def _apply_stop_rule(self, record: ServiceRecord, now: float) -> bool:
        if record.spec.watch_only:
            if not record.wanted and record.liveness is not None and record.phase is _P.NONE:
                record.liveness = None
                self._flip(record, _S.STOPPED, record.pending_reason, now)
                return True
            return False
        must_stop = record.restart_pending or not record.wanted or record.state is _S.FAILED
        if not must_stop or record.phase not in (_P.SPAWNED, _P.STOP_DECIDED):
            return False
        if any(self._records[d].alive for d in self._relying[record.name]):
            return False
        if record.name in self._leaving and any(
            d in self._records and self._records[d].alive and _going_down(self._records[d])
            for d in self._leaving[record.name]
        ):
            return False  # removed: what relied on it goes down first
        if self._old_requirements and self._old_dependent_alive(record):
            return False  # a process whose run began requiring it goes down first
        self._set_phase(record, _P.STOP_SENT)
        record.liveness = None
        reason = record.reason if record.state is _S.FAILED else record.pending_reason
        if not record.wanted:
            self._flip(record, _S.STOPPING, reason, now)
        self._actions.append(Stop(record.name, reason))
        return True

    def _old_dependent_alive(self, record: ServiceRecord) -> bool:
        """A process that required ``record`` when its run began, and no longer does by the
        configuration, is still alive; unless ``record`` relies on it now (or did when it was
        removed): the other way round, each would wait for the other forever."""
        return any(
            record.name in required
            and name != record.name
            and self._records[name].alive
            and record.name not in self._relying.get(name, ())
            and record.name not in self._leaving.get(name, ())
            for name, required in self._old_requirements.items()
        )

    def _apply_start_rule(self, record: ServiceRecord, now: float) -> bool:
        if (
            not record.wanted
            or record.phase is not _P.NONE
            or record.state in _HELD
            or (record.liveness is not None and not record.restart_pending)
        ):
            return False
        if any(
            dependent.alive and (record.restart_pending or _going_down(dependent))
            for dependent in map(self._records.__getitem__, self._relying[record.name])
        ):
            return False  # start again only once dependents that go down are down
        if now < record.start_not_before:
            if record.state is not _S.BACKOFF:
                wait = record.start_not_before - now
                self._flip(record, _S.BACKOFF, f"next start in {wait:.1f} s ({record.reason})", now)
                return True
            return False
        waiting_for = [
            name
            if self._records[name].state not in _HELD
            else f"{name} ({self._records[name].state})"
            for name in self.graph.requires(record.name)
            if not self._records[name].ready
        ]
        if waiting_for:
            # A finished backoff must leave BACKOFF, whose deadline would otherwise stay due.
            state = _S.RESTARTING if record.state is _S.BACKOFF else record.state
            self._flip(record, state, "waiting for " + ", ".join(waiting_for), now)
            return False
        if record.spec.watch_only and record.restart_pending and record.spec.has_on_down:
            if record.state is _S.BACKOFF:
                # Its backoff is over and its recovery runs now: no longer waiting.
                self._flip(record, _S.RESTARTING, f"on_down: {record.pending_reason}", now)
            self._set_phase(record, _P.ON_DOWN)
            self._actions.append(RunOnDown(record.name, record.pending_reason))
            return True
        record.goal = Goal.UP
        if not record.spec.watch_only:
            self._set_phase(record, _P.SPAWNED)
            why = record.restart_cause or ("started again" if record.spawns else "started")
            self._actions.append(Spawn(record.name, why))
        self._begin_run(record, now, "spawned" if not record.spec.watch_only else "watching")
        return True

    def _begin_run(self, record: ServiceRecord, now: float, reason: str) -> None:
        if record.spawns:
            record.run_cause = "recovery" if record.recovering else "requested"
            if record.recovering:
                record.recoveries += 1
            else:
                record.restarts_requested += 1
        record.recovering = False
        record.spawns += 1  # a process spawned, or a watch-only service watched afresh
        record.liveness = Liveness(record.rules, started_at=now)
        if record.spec.probes:
            record.liveness.probes = RunProbes(record.spec.probes, record.spawns, now)
        if record.queue is not None:
            record.queue.reset(now)
        self._flip(record, _S.STARTING, reason, now)
        # A process is ready at start once it exists (``receive_spawned``); a watch-only
        # service, at once.
        ready_now = not record.rules.waits_for_word and record.rules.ready_after <= 0
        if ready_now and record.spec.watch_only:
            self._become_ready(record, now, "ready at start")

    def _become_ready(self, record: ServiceRecord, now: float, reason: str) -> None:
        """Ready as its liveness rules say (a first message, at start, after a delay); it is
        running once its probes agree too (startup passed, readiness passing)."""
        liveness = record.liveness
        assert liveness is not None
        if liveness.ready_at is None:
            liveness.ready_at = now
        probes = liveness.probes
        if probes is None or (not probes.holding and probes.ready):
            self._flip(record, _S.RUNNING, reason, now)

    def _flip(
        self,
        record: ServiceRecord,
        new: ServiceState,
        reason: str,
        now: float,
        *,
        failure: bool = False,
        down_since: float | None = None,
    ) -> None:
        if record.state is new and record.reason == reason:
            return
        old = record.state
        if old is new:
            # Only the reason changed ("waiting for emulator"): news, not a transition.
            record.reason = reason
            self._events.append(ReasonChanged(record.name, new, reason, now))
            return
        if new not in STATE_TRANSITIONS[old]:
            raise IllegalTransition(f"{record.name}: {old} -> {new} ({reason})")
        record.state_since = now
        record.state, record.reason = new, reason
        if new is _S.RESTARTING:
            # The first reason of a restart is its cause; later ones ("waiting for ...") only
            # say what it waits on. The next spawn carries the cause.
            if record.restart_cause is None:
                record.restart_cause = reason
        elif new in _NOT_COMING_BACK:
            record.restart_cause = None
        self._events.append(Transition(record.name, old, new, reason, now, failure, down_since))

    def _set_phase(self, record: ServiceRecord, new: Phase) -> None:
        old = record.phase
        if new is not old and new not in PHASE_TRANSITIONS[old]:
            raise IllegalTransition(f"{record.name}: phase {old} -> {new}")
        record.phase = new

    def _deadline_of(self, record: ServiceRecord) -> float | None:
        probes = record.liveness.probes if record.liveness is not None else None
        if probes is None:
            return self._run_deadline(record)
        probe_at = probes.next_run_at() if self._probing(record) else None
        if probes.holding:
            return probe_at  # nothing else is timed before startup passes
        deadline = self._run_deadline(record)
        if probe_at is None or (deadline is not None and deadline < probe_at):
            return deadline
        return probe_at

    def _run_deadline(self, record: ServiceRecord) -> float | None:
        """The next deadline of the run's own rules (readiness, heartbeats, data, backoff)."""
        if record.state is _S.BACKOFF:
            return record.start_not_before
        if record.liveness is None or record.restart_pending:
            return None
        if record.state not in (_S.STARTING, _S.RUNNING):
            return None
        deadline = record.liveness.next_deadline()
        if record.queue is not None and record.state is _S.RUNNING:
            stall = record.queue.deadline()
            if stall is not None and (deadline is None or stall < deadline):
                return stall
        return deadline


def _ready_reason(rules: LivenessRules) -> str:
    """Why a service that says nothing became ready: its ``ready`` delay, or ``startsecs``."""
    if rules.ready_delay >= rules.startsecs:
        return f"ready after {rules.ready_delay:g} s"
    return f"up for startsecs {rules.startsecs:g} s"


def _going_down(record: ServiceRecord) -> bool:
    """Its process is being stopped, or is about to be."""
    return record.phase is _P.STOP_SENT or record.goal is not Goal.UP or record.state is _S.FAILED


def _create_record(spec: ServiceSpec, random: Callable[[], float], now: float) -> ServiceRecord:
    policy = RestartPolicy(spec.restart_rules, random=random)
    queue = QueueStall(spec.queue.stalled_after) if spec.queue is not None else None
    # Said at once, so that a service left down on purpose does not look forgotten.
    reason = "not started" if spec.autostart else "not started (autostart = false)"
    return ServiceRecord(spec=spec, policy=policy, queue=queue, state_since=now, reason=reason)
