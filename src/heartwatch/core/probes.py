"""Active probes: one probe's schedule and verdicts for one run of a service. Pure.

A probe is a check the daemon runs itself (a command, an HTTP request, a TCP connect), for
the parts of a pipeline that cannot beat: an emulator, ``adb``, ``frida-server``. The driver
(``daemon/probes.py``) runs each check and reports its result; everything else is decided
here, from the results and the ``now`` they arrive at.

Rules / theory of operation (Kubernetes' probes, for one run of one service):

- *Schedule.* A probe first runs ``initial_delay`` after the run began, then every ``period``
  from the start of its previous run; a run that takes longer than ``period`` is followed at
  once by the next. At most one run of a probe is under way at a time (``receive_started``
  clears ``next_run_at`` until its result arrives), so a hung check is never piled up on.
- *Verdict.* ``passing`` is ``None`` until a verdict is reached, then ``True`` after
  ``success_threshold`` passes in a row and ``False`` after ``failure_threshold`` failures in
  a row; in between it keeps its value. Only a change of verdict is news (``ProbeChanged``):
  a journal entry and a log line, not every run.
- *Roles.* A ``startup`` probe holds the others (``RunProbes.holding``): they are not
  scheduled until it has passed once, after which it never runs again in that run. Its
  ``failure_threshold`` failures are a failed start. ``readiness`` decides whether dependents
  may rely on the service (``RunProbes.ready``); ``liveness`` failing is a failure.

What a verdict does to the service (a failed start, a restart, not ready) is the watchdog's
(``watchdog.receive_probe_result``); this module only keeps time and counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

ProbeRole = Literal["startup", "readiness", "liveness"]
ROLES: tuple[ProbeRole, ...] = ("startup", "readiness", "liveness")

# The defaults are Kubernetes', but for the timeout: its 1 s is too short for `adb shell`
# on a busy host (a healthy emulator answers `getprop` in 0.1-0.8 s, more under load).
DEFAULT_PERIOD = 10.0
DEFAULT_TIMEOUT = 5.0
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_SUCCESS_THRESHOLD = 1
OUTPUT_LIMIT = 4096  # bytes of a check's output kept as its reason


@dataclass(frozen=True, slots=True)
class ExecCheck:
    """Run ``argv`` (no shell); exit code 0 passes."""

    argv: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HttpCheck:
    """GET ``url``; passes on ``status`` (``None``: any 2xx or 3xx, as Kubernetes)."""

    url: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class TcpCheck:
    """Connect to ``host:port``; a connection passes."""

    host: str
    port: int


Check = ExecCheck | HttpCheck | TcpCheck


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One configured probe: what to check, how often, and when the verdict changes.

    ``label`` is how people see it (the command as written, ``GET <url>``, ``tcp host:port``);
    ``expect``, a regular expression the output (exec) or body (http) must contain."""

    role: ProbeRole
    check: Check
    label: str
    period: float = DEFAULT_PERIOD
    timeout: float = DEFAULT_TIMEOUT
    initial_delay: float = 0.0
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD
    expect: str | None = None


@dataclass(frozen=True, slots=True)
class RunProbe:
    """Run ``service``'s ``role`` probe once, for the service's run number ``run``.

    An action, carried out by the driver, which answers with ``receive_probe_result`` (the
    same ``run``: a result of a run that is over is ignored)."""

    service: str
    role: ProbeRole
    run: int


@dataclass(frozen=True, slots=True)
class ProbeChanged:
    """The verdict of ``service``'s ``role`` probe changed to ``passing``, at ``at``.

    ``reason`` is what people read ("readiness probe `adb ...` failed 3 times: exited 1:
    error: device offline"); ``result`` the last run's own words ("exited 1: ...")."""

    service: str
    role: ProbeRole
    passing: bool
    reason: str
    result: str
    at: float


@dataclass(slots=True)
class Probe:
    """One probe's schedule and counts in one run of its service."""

    spec: ProbeSpec
    next_run_at: float | None  # None: a run is under way, or it is held or done
    passing: bool | None = None
    result: str | None = None  # the last run's own words ("exited 1: error: device offline")
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    running_since: float | None = None
    last_run_at: float | None = None  # when the last result arrived
    failing_since: float | None = None  # the start of the first run of the failing streak

    def due(self, now: float) -> bool:
        return self.next_run_at is not None and now >= self.next_run_at

    def receive_started(self, now: float) -> None:
        self.running_since = now
        self.next_run_at = None

    def receive_result(self, passed: bool, result: str, now: float) -> bool:
        """Count one result; return whether the verdict changed."""
        started = self.running_since if self.running_since is not None else now
        self.running_since = None
        self.last_run_at = now
        self.result = result
        self.next_run_at = max(started + self.spec.period, now)
        if passed:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            self.failing_since = None
        else:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            if self.failing_since is None:
                self.failing_since = started
        verdict = self.passing
        if passed and self.consecutive_successes >= self.spec.success_threshold:
            verdict = True
        elif not passed and self.consecutive_failures >= self.spec.failure_threshold:
            verdict = False
        changed = verdict is not self.passing
        self.passing = verdict
        return changed

    def describe_verdict(self) -> str:
        """The verdict as people read it: "readiness probe `x` passed", "... failed 3 times: y"."""
        head = f"{self.spec.role} probe `{self.spec.label}`"
        if self.passing:
            return f"{head} passed"
        return f"{head} {self._failed()}: {self.result}"

    def describe_failure(self) -> str:
        """Why the service failed by this probe: a liveness probe's own words ("probe `x`
        exited 1: error: device offline"); a startup probe's exhaustion ("startup probe `x`
        failed 30 times: exited 1: ...")."""
        if self.spec.role == "liveness":
            return f"probe `{self.spec.label}` {self.result}"
        return f"{self.spec.role} probe `{self.spec.label}` {self._failed()}: {self.result}"

    def _failed(self) -> str:
        count = self.consecutive_failures
        return "failed" if count == 1 else f"failed {count} times"


class RunProbes:
    """The probes of one run of one service (``run``: the watchdog's number for that run)."""

    def __init__(self, specs: Iterable[ProbeSpec], run: int, started_at: float) -> None:
        self.run = run
        self.started_at = started_at
        self.probes: dict[ProbeRole, Probe] = {}
        specs = list(specs)
        held = any(spec.role == "startup" for spec in specs)
        for spec in specs:
            first = started_at + spec.initial_delay
            waits = held and spec.role != "startup"  # scheduled once startup has passed
            self.probes[spec.role] = Probe(spec, None if waits else first)

    @property
    def holding(self) -> bool:
        """A startup probe has not passed yet: nothing else of the run is judged."""
        startup = self.probes.get("startup")
        return startup is not None and startup.passing is not True

    @property
    def ready(self) -> bool:
        """What readiness says: no readiness probe, or it passes."""
        readiness = self.probes.get("readiness")
        return readiness is None or readiness.passing is True

    def next_run_at(self) -> float | None:
        """When the next probe run is due, if any is scheduled."""
        times = [p.next_run_at for p in self.probes.values() if p.next_run_at is not None]
        return min(times) if times else None

    def start_due(self, now: float) -> list[ProbeRole]:
        """The probes due at ``now``, each marked as running (so not due again until its
        result arrives)."""
        due = [role for role, probe in self.probes.items() if probe.due(now)]
        for role in due:
            self.probes[role].receive_started(now)
        return due

    def receive_result(
        self, role: ProbeRole, passed: bool, result: str, now: float
    ) -> Probe | None:
        """Count one result of ``role``; return the probe if its verdict changed."""
        probe = self.probes.get(role)
        if probe is None or probe.running_since is None:
            return None  # not asked for in this run: nothing to count
        changed = probe.receive_result(passed, result, now)
        if role == "startup" and probe.passing is not None:
            probe.next_run_at = None  # passed: done for this run; failed: the run is over
            if probe.passing:
                for other in self.probes.values():
                    if other is not probe:
                        other.next_run_at = max(self.started_at + other.spec.initial_delay, now)
        return probe if changed else None
