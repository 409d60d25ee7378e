"""The asyncio driver around the watchdog: feeds it inputs, carries out its actions, keeps time.

It owns one timer, armed with ``loop.call_at`` at the watchdog's ``next_deadline()``: detection
happens at the deadline, not on a tick. A message from a running service never re-arms the timer
(deadlines only move later then); when the timer fires early, ``tick`` finds nothing due and the
timer is re-armed at the new deadline. So the cost of watching is one wake-up per timeout period
per service at most, whatever the message rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Callable, Coroutine
from typing import Any

from loguru import logger

from heartwatch.config import Config, ServiceConfig
from heartwatch.core.events import (
    Action,
    Event,
    Phase,
    ReasonChanged,
    RecoveryPlanned,
    RunOnDown,
    Spawn,
    Stop,
    Transition,
    UnknownService,
    describe_exit,
)
from heartwatch.core.journal import Journal
from heartwatch.core.probes import ProbeChanged, RunProbe
from heartwatch.core.reconfigure import ServiceChanges
from heartwatch.core.sdnotify import Notice
from heartwatch.core.watchdog import Watchdog
from heartwatch.core.wire import CONTROL_KINDS, FAIL, HEARTBEAT, START, Message
from heartwatch.daemon.identity import IdentityError, RunAs, resolve_run_as
from heartwatch.daemon.ingest import IngestStats
from heartwatch.daemon.loopclock import LoopClock
from heartwatch.daemon.oserrors import describe_os_error
from heartwatch.daemon.output import RotatingOutput
from heartwatch.daemon.probes import ProbeRunner
from heartwatch.daemon.processes import (
    Child,
    ProcessRunner,
    SpawnError,
    cannot_start_line,
    run_id_of,
)
from heartwatch.daemon.queue_watch import QueueWatcher
from heartwatch.daemon.sampler import ResourceSampler, Run, Usage
from heartwatch.daemon.statedir import STATE_ID_VARIABLE, StateDir
from heartwatch.daemon.systemd import SYSTEMD_VARIABLES
from heartwatch.daemon.tasks import TaskSet


class DaemonStopping(RuntimeError):
    """A start or restart asked for while the daemon shuts down."""


# How long shut-down waits for what it SIGKILLed to be gone (its stop budget was spent): then
# it goes on regardless, saying what is left; it never hangs.
KILLED_WAIT = 5.0

# The daemon's own secrets: a service gets them only if its own ``env`` gives them.
SECRET_VARIABLES = frozenset({"HEARTWATCH_TOKEN", "HEARTWATCH_INGEST_TOKEN"})


class NotRunning(RuntimeError):
    """A signal for a service that has no process to receive it; the message says why."""


class Supervisor:
    def __init__(
        self,
        config: Config,
        state_dir: StateDir,
        *,
        tcp_address: tuple[str, int],
        journal: Journal | None = None,
    ) -> None:
        self.config = config
        self.state_dir = state_dir
        self.tcp_address = tcp_address
        self.services = config.services_by_name()
        self._loop = asyncio.get_running_loop()
        # Stopped since now, not since the loop's clock began (a "stopped for 17 min" at start).
        self.watchdog = Watchdog(
            [service.spec() for service in config.service], now=self._loop.time()
        )
        self.default_service = config.server.default_service
        self.journal = journal or Journal(on_error=log_listener_error)
        self.notify_address: str | None = None  # NOTIFY_SOCKET given to children
        self.closing = False  # shutting down: starts and restarts are refused
        self._on_down_processes: set[asyncio.subprocess.Process] = set()
        self.stats = IngestStats()  # what arrived and what was refused, by transport
        self.clock = LoopClock(self._loop)  # loop time for decisions, Unix time for people
        self._runner = ProcessRunner(self._receive_exit)
        self._probes = ProbeRunner(self._receive_probe_result)  # probe checks under way
        # CPU and RSS of every run's tree: its own timer, idle without limits or onlookers.
        self.sampler = ResourceSampler(
            config.daemon.sample_interval, self._sampled_runs, self._receive_limit_exceeded
        )
        self._outputs: dict[str, RotatingOutput] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # Stops and on_down runs under way: shut-down waits for them (``_all_down``).
        self._tasks = TaskSet("supervisor", on_idle=self._check_idle)
        self._queue_tasks = TaskSet("queue watch")  # run until shut-down cancels them
        self._queue_watches: dict[str, asyncio.Task[None]] = {}  # by service (a reload ends one)
        # The configuration each running process was started with: it is stopped by it (its
        # stop_signal, stop_timeout) even after a reload changed or removed its service.
        self._launched: dict[str, ServiceConfig] = {}
        # service -> Unix time its stop signal went out: the exit that ends the stop says so
        # (the history draws stop sent -> gone for each recovery).
        self._stop_sent_at: dict[str, float] = {}
        self._idle = asyncio.Event()

    # -- inputs ----------------------------------------------------------------------------

    def receive_message(self, message: Message, transport: str) -> str | None:
        """Feed one decoded message; return why it was refused, or ``None``. The hot path."""
        name = message.service or self.default_service
        if name is None:
            return "unknown_service"
        kind = message.kind
        now = self._loop.time()
        try:
            if kind == HEARTBEAT:
                self.watchdog.receive_message(name, HEARTBEAT, now)
                if message.ready or message.status is not None or message.dropped:
                    self._receive_control(name, message, now)
            elif kind in CONTROL_KINDS:
                self.watchdog.receive_message(name, HEARTBEAT, now)  # saying anything is alive
                self._receive_control(name, message, now)
            else:
                refused = self.watchdog.receive_message(
                    name, kind, now, message.sent_time, message.data
                )
                if refused is not None:
                    return refused
        except UnknownService:
            return "unknown_service"
        if self.watchdog.has_output:
            self._pump()
        return None

    def _receive_control(self, name: str, message: Message, now: float) -> None:
        """The rarer parts of a message: status, readiness, dropped counts, start and fail."""
        watchdog = self.watchdog
        if message.status is not None:
            watchdog.receive_status(name, message.status, now)
        if message.dropped:
            watchdog.receive_dropped(name, message.dropped, now)
            logger.warning("{}: its client dropped {} data events", name, message.dropped)
        if message.ready:
            watchdog.receive_ready(name, now)
        if message.kind == START:
            watchdog.receive_status(name, "run started", now)
        elif message.kind == FAIL:
            watchdog.receive_failure_report(name, message.reason or "fail", now)
        self._pump()

    def receive_notice(self, name: str, notice: Notice) -> None:
        """An sd_notify datagram from inside ``name``'s process tree."""
        self.stats.messages["notify"] += 1
        now = self._loop.time()
        watchdog = self.watchdog
        watchdog.receive_message(name, HEARTBEAT, now)  # any notice is a sign of life
        for kind in notice.events:
            self.receive_message(Message(kind, service=name), "notify")
        if notice.status is not None:
            watchdog.receive_status(name, notice.status, now)
        if notice.stopping:
            watchdog.receive_status(name, "stopping", now)
        if notice.watchdog_timeout is not None:
            watchdog.receive_heartbeat_timeout(name, notice.watchdog_timeout, now)
        if notice.extend_timeout is not None:
            watchdog.receive_extend_startup(name, notice.extend_timeout, now)
        if notice.ready:
            watchdog.receive_ready(name, now)
        if notice.trigger:
            watchdog.receive_failure_report(name, "WATCHDOG=trigger", now)
        self._pump()

    def watch_queues(self) -> None:
        """Start reading the depth of every queue a service names."""
        for service in self.services.values():
            self._watch_queue(service)

    def _watch_queue(self, service: ServiceConfig) -> None:
        if service.queue is not None and not self._queue_tasks.closed:
            watcher = QueueWatcher(
                service.name, service.queue, self._receive_depth, self._receive_queue_problem
            )
            task = self._queue_tasks.start(watcher.run(), name=f"queue watch {service.name}")
            self._queue_watches[service.name] = task

    def _unwatch_queue(self, name: str) -> None:
        task = self._queue_watches.pop(name, None)
        if task is not None:
            task.cancel()

    def reconfigure(self, config: Config) -> ServiceChanges:
        """Run ``config``'s services from now on, as a difference (``Watchdog.reconfigure``).

        ``config`` is what is in force from now on (the reload driver keeps in it the settings
        only a daemon restart applies). A removed service keeps the configuration it was
        started with, and its output file, until its process is gone."""
        self._refuse_if_closing()
        services = config.services_by_name()
        specs = [service.spec() for service in services.values()]
        changes = self.watchdog.reconfigure(specs, self._loop.time())
        self.config, self.services = config, services
        self.default_service = config.server.default_service
        for name in (*changes.removed, *changes.changed):
            self._unwatch_queue(name)
        for name in (*changes.added, *changes.changed):
            self._watch_queue(services[name])
        self._pump()
        for name in changes.removed:
            self._forget_if_gone(name)
        return changes

    def _forget_if_gone(self, name: str) -> None:
        """A removed service whose process is gone: its output closed, nothing kept."""
        if name not in self.services and name not in self.watchdog:
            output = self._outputs.pop(name, None)
            if output is not None:
                output.close()

    def _receive_depth(self, name: str, depth: int) -> None:
        self.watchdog.receive_queue_depth(name, depth, self._loop.time())
        self._pump()

    def _receive_queue_problem(self, name: str, problem: str) -> None:
        self.watchdog.receive_queue_problem(name, problem, self._loop.time())
        self._pump()

    def identify(self, pid: int) -> str | None:
        """The service whose process tree ``pid`` belongs to, or ``None``."""
        run_id = run_id_of(pid)
        return None if run_id is None else self._runner.service_of_run(run_id)

    def start(self, names: list[str] | None = None, reason: str = "start requested") -> None:
        self._refuse_if_closing()
        self.watchdog.receive_start(names or list(self.services), self._loop.time(), reason)
        self._pump()

    def start_autostart(self, reason: str = "daemon started") -> None:
        """Start the services with ``autostart`` (the rest wait for a person's ``start``, or
        start as the requirement of one that starts: requirements always start first)."""
        self._refuse_if_closing()
        names = [r.name for r in self.watchdog.records() if r.spec.autostart]
        self.watchdog.receive_start(names, self._loop.time(), reason)
        self._pump()

    def clear_output(self, name: str) -> int:
        """Empty ``name``'s captured output file and remove its backups (supervisorctl's
        ``clear``); return the bytes removed. Raises ``OSError``."""
        return self._output(name).clear()

    def stop(self, names: list[str] | None = None, reason: str = "stop requested") -> None:
        """Stop ``names``; by default every record, those a reload removed that still stop
        among them (shut-down must leave nothing running)."""
        if names is None:
            names = [record.name for record in self.watchdog.records()]
        self.watchdog.receive_stop(names, self._loop.time(), reason)
        self._pump()

    def restart(self, name: str, reason: str = "restart requested") -> None:
        self._refuse_if_closing()
        self.watchdog.receive_restart(name, self._loop.time(), reason)
        self._pump()

    def signal(self, name: str, sig: int, *, group: bool = False) -> None:
        """Send ``sig`` to the service's running process (or its group); ``NotRunning`` if it
        has none (stopped, watch-only, or its process already exited and is being reaped)."""
        child = self._runner.children.get(name)
        if child is None or child.returncode is not None:
            if self.watchdog.record(name).spec.watch_only:  # (a removed one is still there)
                raise NotRunning(f"{name} is watch-only: heartwatch runs no process for it")
            state = self.watchdog.record(name).state.value
            raise NotRunning(f"{name} is {state}: it has no process to signal")
        try:
            self._runner.send_signal(child, sig, group=group)
        except ProcessLookupError:
            raise NotRunning(f"{name}: its process has just exited") from None

    def _refuse_if_closing(self) -> None:
        if self.closing:
            raise DaemonStopping("the daemon is stopping: nothing is started any more")

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop every service in reverse dependency order and wait until all are down: at
        most ``timeout``, then SIGKILL what is left and wait at most ``KILLED_WAIT`` more."""
        self.closing = True
        await self._queue_tasks.close()
        await self._probes.close()
        self.stop(reason="daemon stopping")
        try:
            await asyncio.wait_for(self._all_down(), timeout)
        except TimeoutError:
            self.kill_all()
            try:
                await asyncio.wait_for(self._all_down(), KILLED_WAIT)
            except TimeoutError:
                logger.error(
                    "still not down {:g} s after SIGKILL, going on without them: {}",
                    KILLED_WAIT,
                    ", ".join(self._runner.children) or f"{len(self._tasks)} task(s)",
                )
        if self._timer is not None:
            self._timer.cancel()
        await self.sampler.close()
        await self._tasks.close()  # nothing is left by now; cancelled if it were
        for output in self._outputs.values():
            output.close()

    def kill_all(self) -> None:
        """SIGKILL every child, its descendants and any on_down command now (a second Ctrl-C)."""
        for child in list(self._runner.children.values()):
            self._runner.kill_now(child)
        for process in list(self._on_down_processes):
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    def now(self) -> float:
        """The monotonic clock the watchdog runs on."""
        return self._loop.time()

    def totals(self) -> dict[str, tuple[int, dict[str, int]]]:
        """Per service: messages so far, and data events so far per kind (for history)."""
        return {r.name: (r.messages, r.data_counts) for r in self.watchdog.records()}

    def child(self, name: str) -> Child | None:
        return self._runner.children.get(name)

    # -- the loop between watchdog and world -------------------------------------------------

    def _pump(self) -> None:
        watchdog = self.watchdog
        try:
            while watchdog.has_output:
                for event in watchdog.events_to_take():
                    self._record(event)
                for action in watchdog.actions_to_take():
                    try:
                        self._execute(action)
                    except Exception:  # one action's failure must not stop the others
                        logger.opt(exception=True).error("cannot carry out {}", action)
            if len(self._probes):  # a check whose service's run is over ends now
                self._probes.cancel_unless(watchdog.probe_wanted)
        finally:
            self._arm_timer()  # whatever happened, deadlines keep being watched
        if not self._runner.children and not self._tasks:
            self._idle.set()
        else:
            self._idle.clear()

    def _arm_timer(self) -> None:
        deadline = self.watchdog.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        self.watchdog.tick(self._loop.time())
        self._pump()

    def _execute(self, action: Action) -> None:
        if isinstance(action, Spawn):
            service = self.services.get(action.service)
            if service is None:  # never by the watchdog's rules; if it were, said truthfully
                self.watchdog.receive_spawn_failed(
                    action.service, "not in the configuration in force", self._loop.time()
                )
                raise UnknownService(action.service)
            self._spawn(service, action.reason)
        elif isinstance(action, Stop):
            self._stop(action)
        elif isinstance(action, RunOnDown):
            self._start_task(self._run_on_down(action))
        elif isinstance(action, RunProbe):
            self._run_probe(action)

    def _run_probe(self, action: RunProbe) -> None:
        """One check of a probe, as its service runs: its environment, folder, user, umask."""
        service = self.services[action.service]
        probes = self.watchdog.record(action.service).spec.probes
        spec = next(probe for probe in probes if probe.role == action.role)
        cwd = self.config.resolve(service.cwd) if service.cwd else self.config.base_dir
        try:
            run_as = resolve_run_as(service.user, service.group)
        except IdentityError as error:  # never as the daemon instead: a failed check
            result = f"cannot run as the service does: {error}"
            self.watchdog.receive_probe_result(
                action.service, action.role, action.run, False, result, self._loop.time()
            )
            return
        env = self._child_env(service, run_as)
        self._probes.start(action, spec, cwd, env, (run_as, service.umask))

    def _receive_probe_result(self, action: RunProbe, passed: bool, result: str) -> None:
        try:
            self.watchdog.receive_probe_result(
                action.service, action.role, action.run, passed, result, self._loop.time()
            )
        except UnknownService:
            return  # removed by a reload while its check ran
        self._pump()

    def _spawn(self, service: ServiceConfig, why: str) -> None:
        assert service.command is not None
        now = self._loop.time()
        output = self._output(service.name)
        output.timestamps = service.output_timestamps  # as configured now (a reload may change)
        try:
            try:
                run_as = resolve_run_as(service.user, service.group)
            except IdentityError as error:
                output.write(cannot_start_line(str(error)))
                raise SpawnError(str(error)) from None
            child = self._runner.spawn(
                service.name,
                service.command,
                cwd=self.config.resolve(service.cwd) if service.cwd else self.config.base_dir,
                env=self._child_env(service, run_as),
                output=output,
                run_as=run_as,
                umask=service.umask,
            )
        except (SpawnError, OSError, ValueError, subprocess.SubprocessError) as error:
            # One plain line; the watchdog counts it as a failed start (backoff, crash loop).
            reason = describe_os_error(error) if isinstance(error, OSError) else str(error)
            logger.error("{}: cannot start: {}", service.name, reason)
            self.watchdog.receive_spawn_failed(service.name, reason, now)
            return
        self.state_dir.record_child(service.name, child.pid, child.create_time)
        self._launched[service.name] = service
        logger.info("{}: started pid {}", service.name, child.pid)
        record = self.watchdog.record(service.name)
        if record.run_cause != "first":
            self.journal.append(
                "restart",
                service.name,
                why,
                self.wall_time(now),
                detail={
                    "pid": child.pid,
                    "cause": record.run_cause,  # "recovery" or "requested"
                    "restarts": record.restarts,
                    "restarts_requested": record.restarts_requested,
                },
            )
        self.watchdog.receive_spawned(service.name, child.pid, now)
        if record.spec.limits.any:
            self.sampler.wake()

    def _stop(self, action: Stop) -> None:
        child = self._runner.children.get(action.service)
        if child is None:
            return
        service = self._launched.get(action.service) or self.services[action.service]
        # The signal goes out in this loop turn; the waiting and escalating happen in a task.
        self._runner.begin_stop(child, service.stop_signal)
        self._stop_sent_at[action.service] = self.wall_time()
        logger.info("{}: stopping pid {} ({})", action.service, child.pid, action.reason)
        self._start_task(self._runner.finish_stop(child, service.stop_signal, service.stop_timeout))

    async def _run_on_down(self, action: RunOnDown) -> None:
        service = self.services[action.service]
        assert service.on_down is not None
        logger.warning(
            "{}: running on_down {!r} ({})", service.name, service.on_down, action.reason
        )
        output = self._output(service.name)
        output.write(f"[heartwatch] on_down: {service.on_down}\n".encode())
        process = await asyncio.create_subprocess_shell(
            service.on_down,
            cwd=self.config.base_dir,
            env=self._child_env(service),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self._on_down_processes.add(process)
        try:
            captured, _ = await asyncio.wait_for(process.communicate(), service.on_down_timeout)
            output.write(captured)
            outcome = f"exit code {process.returncode}"
        except TimeoutError:
            process.kill()
            await process.wait()
            outcome = f"killed after {service.on_down_timeout:g} s"
        finally:
            self._on_down_processes.discard(process)
        log = logger.info if outcome == "exit code 0" else logger.error
        log("{}: on_down finished: {}", service.name, outcome)
        self.watchdog.receive_on_down_done(service.name, outcome, self._loop.time())
        self._pump()
        self._forget_if_gone(service.name)

    def _receive_exit(self, service: str, returncode: int, last_words: str | None) -> None:
        """A run is gone; ``last_words``: its last stderr line, part of the reason everywhere
        (journal, status, alerts, log) through the watchdog's reason."""
        record = self.watchdog.record(service)
        pid = record.pid
        how = describe_exit(returncode) + (f": {last_words}" if last_words else "")
        detail: dict[str, Any] = {"pid": pid, "returncode": returncode}
        stop_sent = self._stop_sent_at.pop(service, None)
        if record.phase is Phase.STOP_SENT:
            detail["stopped"] = True  # the end of a stop it was sent: no failure of its own
            if stop_sent is not None:
                detail["stop_sent"] = stop_sent
        if last_words:
            detail["stderr"] = last_words
        self.journal.append("exit", service, how, self.wall_time(), detail=detail)
        self.state_dir.forget_child(service, pid or -1)
        self._launched.pop(service, None)
        self.watchdog.receive_exit(service, returncode, self._loop.time(), last_words)
        self._pump()
        self._forget_if_gone(service)

    def wall_time(self, at: float | None = None) -> float:
        """Unix time of the monotonic ``at`` (default: now), for people and history."""
        return self.clock.wall_time(at)

    def _record(self, event: Event) -> None:
        at = self.wall_time(event.at)
        if isinstance(event, Transition):
            self.journal.append(
                "transition",
                event.service,
                event.reason,
                at,
                state=event.new.value,
                previous=event.old.value,
                detail=_transition_detail(event, self.wall_time),
            )
        elif isinstance(event, ReasonChanged):
            # The same state with a new reason: a note, kept apart from the transitions.
            self.journal.append("note", event.service, event.reason, at, state=event.state.value)
        elif isinstance(event, ProbeChanged):
            detail = {"probe": event.role, "passing": event.passing, "result": event.result}
            self.journal.append("probe", event.service, event.reason, at, detail=detail)
            log = logger.info if event.passing else logger.warning
            log("{}: {}", event.service, event.reason)
        else:
            self.journal.append(
                "recovery",
                event.trigger,
                event.reason,
                at,
                detail={"members": list(event.members)},
            )
        if isinstance(event, Transition):
            level = "WARNING" if event.new in ("unresponsive", "failed", "backoff") else "INFO"
            logger.log(
                level, "{}: {} -> {} ({})", event.service, event.old, event.new, event.reason
            )
        elif isinstance(event, ReasonChanged):
            level = "WARNING" if event.state in ("unresponsive", "failed", "backoff") else "INFO"
            logger.log(level, "{}: {} ({})", event.service, event.state, event.reason)
        elif isinstance(event, RecoveryPlanned):
            logger.warning(
                "recovering {} because {}: {}",
                ", ".join(event.members),
                event.trigger,
                event.reason,
            )

    # -- helpers ---------------------------------------------------------------------------

    def _child_env(self, service: ServiceConfig, run_as: RunAs | None = None) -> dict[str, str]:
        """The daemon's environment (less its secrets and systemd's variables), the user's
        HOME, USER and LOGNAME when it runs as another, ``env_file``, ``env``, then ours."""
        host, port = self.tcp_address
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k not in SYSTEMD_VARIABLES and k not in SECRET_VARIABLES
        }
        env = {
            **inherited,
            **(run_as.environment if run_as is not None else {}),
            **service.environment,
            "HEARTWATCH_SERVICE": service.name,
            "HEARTWATCH_ADDR": f"{host}:{port}",
            STATE_ID_VARIABLE: self.state_dir.state_id,
        }
        if self.notify_address is not None:
            env["NOTIFY_SOCKET"] = self.notify_address
        return env

    def _sampled_runs(self) -> list[Run]:
        """The runs whose trees the sampler reads: every process not being stopped."""
        runs = []
        for name, child in self._runner.children.items():
            if not child.stopping and name in self.watchdog:
                limits = self.watchdog.record(name).spec.limits
                runs.append(Run(name, child.pid, child.run_id, limits))
        return runs

    def _receive_limit_exceeded(self, name: str, reason: str, since: float | None) -> None:
        if name in self.watchdog:  # not removed by a reload meanwhile
            self.watchdog.receive_limit_exceeded(name, reason, self._loop.time(), since)
            self._pump()

    def resource_usage(self, name: str) -> Usage | None:
        """The CPU and RSS of ``name``'s process tree, if it is sampled (status, metrics)."""
        return self.sampler.usage(name)

    def output_write_errors(self, name: str) -> int:
        """Writes of ``name``'s output that were lost (a full disk): for status and metrics."""
        output = self._outputs.get(name)
        return 0 if output is None else output.write_errors

    def _output(self, name: str) -> RotatingOutput:
        output = self._outputs.get(name)
        if output is None:
            daemon = self.config.daemon
            service = self.services.get(name)
            output = RotatingOutput(
                self.config.resolve(daemon.log_dir) / f"{name}.log",
                daemon.output_max_bytes,
                daemon.output_backups,
                timestamps=service is not None and service.output_timestamps,
            )
            self._outputs[name] = output
        return output

    def _start_task(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._tasks.start(coroutine)
        self._idle.clear()

    def _check_idle(self) -> None:
        if not self._runner.children and not self._tasks:
            self._idle.set()

    async def _all_down(self) -> None:
        while self._runner.children or self._tasks:
            self._idle.clear()
            await self._idle.wait()


def _transition_detail(
    event: Transition, wall_time: Callable[[float], float]
) -> dict[str, Any] | None:
    """``failure``, and ``down_since`` (Unix time of the last sign of life): alerts count
    downtime from it."""
    detail: dict[str, Any] = {"failure": True} if event.failure else {}
    if event.down_since is not None:
        detail["down_since"] = wall_time(event.down_since)
    return detail or None


def log_listener_error(error: Exception) -> None:
    logger.opt(exception=error).error("a journal listener failed")
