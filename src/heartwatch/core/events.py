"""What the watchdog speaks: service states, the actions it asks for, the facts it records.

States are enum members; actions are imperative (``Spawn``, ``Stop``, ``RunOnDown``) and are
carried out by a driver; events are facts (``Transition``, ``RecoveryPlanned``) and are kept,
logged and shown.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import StrEnum


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


@dataclass(frozen=True, slots=True)
class Spawn:
    """Start the service's command."""

    service: str


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


Action = Spawn | Stop | RunOnDown


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
class RecoveryPlanned:
    """``trigger`` failed; ``members`` (in start order) will be stopped and started again."""

    trigger: str
    members: tuple[str, ...]
    reason: str
    at: float


Event = Transition | RecoveryPlanned


def describe_exit(returncode: int) -> str:
    """A process's return code as people say it: ``exit code 1``, ``killed by SIGKILL``."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"killed by {name}"
