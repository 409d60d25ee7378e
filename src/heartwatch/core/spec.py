"""What the core is told about each service: plain frozen values, built from the configuration.

The watchdog decides from these alone; it never sees the configuration file's schema (pydantic,
paths, commands, environments), so the core imports nothing outside itself and the standard
library, and a test can build a service in one line. ``ServiceConfig.spec()`` builds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from heartwatch.core.limits import ResourceLimits
from heartwatch.core.liveness import LivenessRules
from heartwatch.core.policy import RestartRules
from heartwatch.core.probes import ProbeSpec

__all__ = [
    "AutorestartMode",
    "FailureCause",
    "QueueSpec",
    "ResourceLimits",
    "RestartByCause",
    "RestartMode",
    "RestartRules",
    "ServiceSpec",
]

RestartMode = Literal["service", "group"]  # who restarts with a failed service
AutorestartMode = Literal["always", "on-failure", "never"]  # which ends are restarted
# What a failure was: "exit", its process ended (a crash, a failed start); "hang", it is still
# there but not doing its work (a missed heartbeat or data deadline, a queue stall, a failing
# liveness probe, a resource limit, its own failure report).
FailureCause = Literal["hang", "exit"]


@dataclass(frozen=True, slots=True)
class RestartByCause:
    """``restart = { hang = "group", exit = "service" }``: who restarts, by what the failure was.

    The usual need: a hung app may have hung because of the emulator under it (restart both),
    while a crash is the app's own (restart it alone)."""

    hang: RestartMode = "service"
    exit: RestartMode = "service"


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """The queue a consumer is watched on (``stall.QueueStall``)."""

    name: str
    stalled_after: float


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service, as the watchdog needs it."""

    name: str
    liveness: LivenessRules
    requires: tuple[str, ...] = ()
    watch_only: bool = False  # no command: it runs elsewhere and is only watched
    has_on_down: bool = False  # a watch-only service's recovery command exists
    restart: RestartMode | RestartByCause = "service"
    autorestart: AutorestartMode = "always"
    restart_rules: RestartRules = field(default_factory=RestartRules)
    queue: QueueSpec | None = None
    limits: ResourceLimits = field(default_factory=ResourceLimits)  # max_memory, max_cpu
    probes: tuple[ProbeSpec, ...] = ()  # startup, readiness, liveness: at most one each
    autostart: bool = True  # started when the daemon starts (else by a person, or as a need)
    # ``instances = N`` makes ``name@0`` ... ``name@N-1``: the ``[[service]]`` name and the number.
    instance_of: str | None = None
    instance: int | None = None
    # A digest of everything the service is run with, the driver's settings too (command, env,
    # cwd, ...): two specs differ whenever the configuration of the service does, which is
    # what a reload restarts it for (``core/reconfigure.py``).
    revision: str = ""

    def restart_mode(self, cause: FailureCause) -> RestartMode:
        """Who restarts with this service after a failure of that ``cause``."""
        if isinstance(self.restart, RestartByCause):
            return self.restart.hang if cause == "hang" else self.restart.exit
        return self.restart
