"""What the core is told about each service: plain frozen values, built from the configuration.

The watchdog decides from these alone; it never sees the configuration file's schema (pydantic,
paths, commands, environments), so the core imports nothing outside itself and the standard
library, and a test can build a service in one line. ``ServiceConfig.spec()`` builds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from heartwatch.core.liveness import LivenessRules
from heartwatch.core.policy import RestartRules

__all__ = ["AutorestartMode", "QueueSpec", "RestartMode", "RestartRules", "ServiceSpec"]

RestartMode = Literal["service", "group"]  # who restarts with a failed service
AutorestartMode = Literal["always", "on-failure", "never"]  # which ends are restarted


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
    restart: RestartMode = "service"
    autorestart: AutorestartMode = "always"
    restart_rules: RestartRules = field(default_factory=RestartRules)
    queue: QueueSpec | None = None
