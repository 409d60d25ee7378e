"""What the watchdog speaks: service states, the actions it asks for, the facts it records.

States are enum members; actions are imperative (``Spawn``, ``Stop``, ``RunOnDown``) and are
carried out by a driver; events are facts (``Transition``, ``ReasonChanged``,
``RecoveryPlanned``) and are kept, logged and shown. Which state may follow which, and which
process phase may follow which, are tables here (``STATE_TRANSITIONS``,
``PHASE_TRANSITIONS``): the watchdog refuses any other change (``IllegalTransition``), and the
property tests check every change they provoke, and that each state goes only with the phases
``STATE_PHASES`` lists.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import StrEnum

from heartwatch.core.probes import ProbeChanged, RunProbe


class ServiceState(StrEnum):
    STOPPED = "stopped"  # not running and not wanted (or waiting for its requirements)
    STARTING = "starting"  # spawned, inside its startup grace, not ready yet
    RUNNING = "running"  # ready and on time
    UNRESPONSIVE = "unresponsive"  # a heartbeat or data deadline was missed
    RESTARTING = "restarting"  # being stopped (or waiting) to be started again
    STOPPING = "stopping"  # stop signal sent because it is no longer wanted
    BACKOFF = "backoff"  # down, waiting out a backoff delay before the next start
    EXITED = "exited"  # ended, and no restart is wanted
    FAILED = "failed"  # gave up: too many restarts inside the window


class Phase(StrEnum):
    """Where the service's process is, as the watchdog sees it (one value, not five flags).

    A watch-only service has no process: its phase is ``NONE``, or ``ON_DOWN`` while its
    ``on_down`` command runs."""

    NONE = "none"  # no process: never spawned, or seen to exit (or its spawn failed)
    SPAWNED = "spawned"  # Spawn asked for, and not yet asked to stop: its run is watched
    STOP_DECIDED = "stop decided"  # given up on: must stop once its dependents are down
    STOP_SENT = "stop sent"  # Stop went out; waiting for the exit
    ON_DOWN = "on_down"  # a watch-only service's on_down command runs


_S = ServiceState
# Which state may follow which (``Watchdog._flip``); a change of reason alone is always legal
# (it is a ``ReasonChanged``, not a ``Transition``).
# Read as: from the key, to any of the values. Causes are many (a tick, an exit, a person), and
# the reason says which, so the table is keyed by states alone.
STATE_TRANSITIONS: dict[ServiceState, frozenset[ServiceState]] = {
    _S.STOPPED: frozenset({_S.STARTING, _S.RESTARTING, _S.STOPPING}),
    _S.STARTING: frozenset(
        {_S.RUNNING, _S.UNRESPONSIVE, _S.RESTARTING, _S.STOPPING, _S.STOPPED, _S.EXITED}
        | {_S.FAILED}
    ),
    _S.RUNNING: frozenset(
        {_S.UNRESPONSIVE, _S.RESTARTING, _S.STOPPING, _S.STOPPED, _S.EXITED, _S.FAILED}
    ),
    _S.UNRESPONSIVE: frozenset(
        {_S.RUNNING, _S.STARTING, _S.RESTARTING, _S.STOPPING, _S.STOPPED, _S.EXITED} | {_S.FAILED}
    ),
    _S.RESTARTING: frozenset({_S.STARTING, _S.BACKOFF, _S.STOPPING, _S.STOPPED}),
    _S.STOPPING: frozenset({_S.STOPPED, _S.RESTARTING, _S.STARTING, _S.RUNNING}),
    _S.BACKOFF: frozenset({_S.STARTING, _S.RESTARTING, _S.STOPPED}),
    _S.EXITED: frozenset({_S.STOPPED}),
    _S.FAILED: frozenset({_S.STOPPED, _S.RESTARTING, _S.STOPPING}),
}

_P = Phase
# Which phase may follow which (``Watchdog._set_phase``).
PHASE_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    _P.NONE: frozenset({_P.SPAWNED, _P.ON_DOWN}),
    _P.SPAWNED: frozenset({_P.STOP_DECIDED, _P.STOP_SENT, _P.NONE}),
    _P.STOP_DECIDED: frozenset({_P.STOP_SENT, _P.NONE}),
    _P.STOP_SENT: frozenset({_P.NONE}),
    _P.ON_DOWN: frozenset({_P.NONE}),
}


# Which phases a state goes with once an input has been handled (inside one, a service passes
# through others: spawned while still stopped, say). Watch-only services are NONE or ON_DOWN.
STATE_PHASES: dict[ServiceState, frozenset[Phase]] = {
    # a watch-only service's on_down may still run; a given-up process asked back may still exit
    _S.STOPPED: frozenset({_P.NONE, _P.ON_DOWN, _P.STOP_SENT}),
    _S.STARTING: frozenset({_P.NONE, _P.SPAWNED}),
    _S.RUNNING: frozenset({_P.NONE, _P.SPAWNED}),
    _S.UNRESPONSIVE: frozenset({_P.NONE, _P.SPAWNED}),
    _S.RESTARTING: frozenset({_P.NONE, _P.ON_DOWN, _P.SPAWNED, _P.STOP_DECIDED, _P.STOP_SENT}),
    _S.STOPPING: frozenset({_P.SPAWNED, _P.STOP_DECIDED, _P.STOP_SENT}),
    _S.BACKOFF: frozenset({_P.NONE}),
    _S.EXITED: frozenset({_P.NONE}),
    _S.FAILED: frozenset({_P.NONE, _P.STOP_DECIDED, _P.STOP_SENT}),
}


class IllegalTransition(RuntimeError):
    """The watchdog tried a change its tables do not allow: a bug in the watchdog."""


class UnknownService(KeyError):
    """An input named a service the pipeline does not have; every ``receive_*`` raises it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no service {self.name!r}"


@dataclass(frozen=True, slots=True)
class Spawn:
    """Start the service's command; ``reason``: why this run (the cause of a restart)."""

    service: str
    reason: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the service's process group (stop signal, then SIGKILL after the timeout)."""

    service: str
    reason: str


@dataclass(frozen=True, slots=True)
class RunOnDown:
    """Run a watch-only service's ``on_down`` command as its recovery."""

    service: str
    reason: str


Action = Spawn | Stop | RunOnDown | RunProbe  # RunProbe: an active check (``probes.py``)


@dataclass(frozen=True, slots=True)
class Transition:
    """A service changed state, at monotonic time ``at``, for ``reason``.

    ``failure`` marks the transitions by which the service itself failed (it hung, crashed,
    could not start, or was given up on), as opposed to what people or its requirements asked
    of it: alerts are raised on these, never on a stop, a restart asked for, or the daemon's
    own start and stop.

    ``down_since``, on the transition by which a missed deadline is found, is the last sign
    of life that deadline counts from (the last message, the last event of the late kind, the
    spawn, the queue's last progress): an outage began then, not when it was noticed.
    """

    service: str
    old: ServiceState
    new: ServiceState
    reason: str
    at: float
    failure: bool = False
    down_since: float | None = None


@dataclass(frozen=True, slots=True)
class ReasonChanged:
    """A service stayed in ``state`` with a new ``reason`` (``restarting``: "waiting for
    emulator"): news about the same state, not a transition, so it opens and closes nothing."""

    service: str
    state: ServiceState
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class RecoveryPlanned:
    """``trigger`` failed; ``members`` (in start order) will be stopped and started again."""

    trigger: str
    members: tuple[str, ...]
    reason: str
    at: float


Event = Transition | ReasonChanged | RecoveryPlanned | ProbeChanged  # ProbeChanged: ``probes.py``


def describe_exit(returncode: int) -> str:
    """A process's return code as people say it: ``exit code 1``, ``killed by SIGKILL``."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}"
