"""The services' CPU and memory: one timer reads every running process tree, all at once.

A run's processes are what ``processes.py`` stops and kills: its process group (the main
process leads it) and every process carrying its ``HEARTWATCH_RUN_ID``, which also finds
those that left the group. Each pass lists ``/proc`` once for all services: a process's group
is a system call; its run id is read from its environment once in its life (kept by pid,
dropped when the pid is gone); only the services' own processes have their ``stat`` read
(CPU counters, RSS). ``/proc`` is read directly, as ``processes.py`` does, rather than through
psutil's process objects: about 15 µs a member instead of 50 µs, and a scan of every process
through ``psutil.process_iter`` is 30 ms on a host of 500 processes (``bench/sampler.py``).

The decisions (usage over an interval, limits) are ``core/limits.py``'s; this driver owns the
time: one wake-up per ``[daemon] sample_interval`` for all services together, and none at all
while no running service has a limit and nobody looked at status, metrics or the dashboard in
the last ``INTEREST_WINDOW`` seconds. The first look after such a pause makes a pass at once
(in that very answer if passes are known to be cheap, so it has RSS); CPU needs two passes, so
it reads ``None`` until the next one.
A pass runs on the event loop while it is cheap (``INLINE_PASS_COST``), else in a worker thread
whose answer is taken at the next wake-up (so that its end does not wake the loop again).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from loguru import logger

from heartwatch.core.limits import (
    ProcessKey,
    ProcessTimes,
    ResourceLimits,
    ResourceWatch,
    TreeSample,
)
from heartwatch.core.throttle import LogThrottle
from heartwatch.daemon.processes import RUN_ID_VARIABLE

# A pass cheaper than this runs on the event loop; a dearer one in a worker thread, so that the
# loop is never held longer, its answer taken at the next wake-up (one interval later, which
# the verdicts and usage shown then wait: one wake-up per interval in all, either way).
# Measured (bench/sampler.py): 0.5 ms for 10 services of two processes each, 4-7 ms for 100,
# on a host of 150-330 processes.
INLINE_PASS_COST = 0.002

# A look at status, metrics or the dashboard keeps every tree sampled this long: beyond a
# Prometheus scrape interval (1 min by default), so a scraper never finds CPU unknown.
INTEREST_WINDOW = 120.0

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_RUN_ID_PREFIX = RUN_ID_VARIABLE.encode() + b"="


@dataclass(frozen=True, slots=True)
class Run:
    """One running service process, as the sampler needs it."""

    service: str
    pid: int  # the main process, leader of its process group
    run_id: str
    limits: ResourceLimits


@dataclass(frozen=True, slots=True)
class Usage:
    """A service's latest usage, for status and metrics."""

    cpu_percent: float | None  # of one core, over the last interval; None before two samples
    rss_bytes: int | None


ExceededCallback = Callable[[str, str, float | None], None]  # service, reason, since


class ResourceSampler:
    """Samples the trees of ``runs()`` and reports a limit exceeded to ``on_exceeded``."""

    def __init__(
        self,
        interval: float,
        runs: Callable[[], list[Run]],
        on_exceeded: ExceededCallback,
        interest_window: float = INTEREST_WINDOW,
    ) -> None:
        self.interval = interval
        self.interest_window = interest_window
        self._runs = runs
        self._on_exceeded = on_exceeded
        self._loop = asyncio.get_running_loop()
        self._watches: dict[str, tuple[str, ResourceWatch]] = {}  # service -> (run id, watch)
        self._interest_until = float("-inf")
        self._timer: asyncio.Handle | None = None
        self._next_at: float | None = None
        self._passing = False  # a pass's answer is being handled (its verdicts may look again)
        self._reader = TreeReader(self._loop.time)
        self._executor: ThreadPoolExecutor | None = None  # made at the first dear pass
        self._future: Future[dict[str, TreeSample]] | None = None  # a pass in the thread
        self._future_runs: list[Run] | None = None  # what it reads; None: answer not wanted
        self._closed = False
        self._log_throttle = LogThrottle(300.0)
        # CPU seconds the last pass took; the first one (unknown, and it reads every
        # process's environment once) goes to a thread.
        self._pass_cost = float("inf")
        self.passes = 0  # for tests and the benchmark

    def usage(self, service: str) -> Usage | None:
        """The service's latest usage; ``None`` if it is not being sampled."""
        entry = self._watches.get(service)
        if entry is None:
            return None
        watch = entry[1]
        return Usage(watch.cpu_percent, watch.rss_bytes)

    def receive_interest(self) -> None:
        """Someone looked at status, metrics or the dashboard: sample every tree for a while.

        After a pause, a pass known to be cheap is made here and now, so that the answer being
        made already has RSS (CPU needs the next one); else it is made at once, in turn."""
        now = self._loop.time()
        self._interest_until = now + self.interest_window
        if self._idle and not self._thread_busy and self._pass_cost < INLINE_PASS_COST:
            self._next_at = now
            self._sample()
        else:
            self.wake()

    def wake(self) -> None:
        """Sample now if the sampler is idle (a service with limits started, or interest)."""
        if self._idle:
            self._next_at = self._loop.time()
            self._timer = self._loop.call_soon(self._on_timer)

    @property
    def _idle(self) -> bool:
        """No pass under way or due: nothing will sample unless woken."""
        return self._timer is None and not self._passing and not self._closed

    @property
    def _thread_busy(self) -> bool:
        return self._future is not None and not self._future.done()

    async def close(self) -> None:
        """No more passes; one running in the thread ends on its own (it only reads)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._future_runs = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _on_timer(self) -> None:
        self._timer = None
        self._sample()

    def _sample(self) -> None:
        """Start a pass over what needs sampling now, or go idle if nothing does."""
        looking = self._loop.time() < self._interest_until
        runs = [run for run in self._runs() if looking or run.limits.any]
        # Only what is still sampled keeps a usage: nothing shown outlives its sampling.
        sampled = {run.service for run in runs}
        for service in [s for s in self._watches if s not in sampled]:
            del self._watches[service]
        if not runs:
            self._future_runs = None  # a pass still in the thread: its answer is not wanted
            self._next_at = None
            return  # idle: no timer until a limited service starts or someone looks
        # While an answer is handled (its verdicts may lead to a look at status), no second
        # pass starts: one pass at a time, one timer.
        self._passing = True
        try:
            self._take_thread_answer()
            if self._thread_busy:
                pass  # a dear pass still reading: this slot is skipped
            elif self._pass_cost < INLINE_PASS_COST:
                self._receive_samples(runs, self._read(runs))  # cheap: here and now
            else:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="sampler")
                self._future_runs = runs
                self._future = self._executor.submit(self._read, runs)
        finally:
            self._passing = False
        self._arm()

    def _take_thread_answer(self) -> None:
        """The samples of a pass made in the thread since the last wake-up, if it is done."""
        future, runs = self._future, self._future_runs
        if future is None or not future.done():
            return
        self._future = self._future_runs = None
        if runs is not None and not future.cancelled():
            self._receive_samples(runs, future.result())

    def _read(self, runs: list[Run]) -> dict[str, TreeSample]:
        """One pass of the reader, its cost measured (it decides where the next one runs)."""
        started = time.thread_time()
        try:
            samples = self._reader.read(runs)
        except Exception as error:  # an unreadable /proc must not end the sampling
            if self._log_throttle.admit("read", time.monotonic()) is not None:
                logger.opt(exception=error).error("cannot read the services' processes")
            samples = {}
        self._pass_cost = time.thread_time() - started
        self.passes += 1
        return samples

    def _receive_samples(self, runs: list[Run], samples: dict[str, TreeSample]) -> None:
        current = self._runs()
        still_running = {(run.service, run.run_id) for run in current}
        for run in runs:
            sample = samples.get(run.service)
            if sample is None or (run.service, run.run_id) not in still_running:
                continue  # its run ended during the pass: a new run starts a new watch
            entry = self._watches.get(run.service)
            if entry is None or entry[0] != run.run_id or entry[1].limits != run.limits:
                entry = (run.run_id, ResourceWatch(run.limits, self.interval))
                self._watches[run.service] = entry
            watch = entry[1]
            verdict = watch.receive_sample(sample)
            if verdict is not None:
                logger.debug("{}: {}", run.service, verdict)  # the transition says it
                self._on_exceeded(run.service, verdict, watch.over_since())

    def _arm(self) -> None:
        if self._timer is not None or self._closed:
            return
        now = self._loop.time()
        # Fixed slots, so that a slow pass does not stretch the interval; a missed slot is
        # skipped, not caught up.
        next_at = (self._next_at if self._next_at is not None else now) + self.interval
        if next_at <= now:
            next_at = now + self.interval
        self._next_at = next_at
        self._timer = self._loop.call_at(next_at, self._on_timer)


class TreeReader:
    """Reads runs' process trees from ``/proc``. One pass at a time (the driver sees to it)."""

    def __init__(self, clock: Callable[[], float], proc: str = "/proc") -> None:
        self._clock = clock  # the loop's monotonic clock (safe to read from a thread)
        self._proc = proc
        self._run_ids: dict[int, str | None] = {}  # pid -> the run id in its environment
        self._own_pid = os.getpid()

    def read(self, runs: list[Run]) -> dict[str, TreeSample]:
        """Each run's tree, by service (a run whose main process is gone is left out)."""
        by_group = {run.pid: run for run in runs}
        by_run_id = {run.run_id: run for run in runs}
        members: dict[str, list[int]] = {run.service: [] for run in runs}
        seen: dict[int, str | None] = {}
        for entry in os.listdir(self._proc):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid == self._own_pid:
                continue
            run = by_group.get(_group_of(pid))
            if run is not None:
                # In a run's group: its environment is not read, and nothing is remembered
                # for it, so that once it leaves the group (setsid) it is read then.
                members[run.service].append(pid)
                if pid in self._run_ids:
                    seen[pid] = self._run_ids[pid]
                continue
            run_id = self._run_ids[pid] if pid in self._run_ids else self._run_id_of(pid)
            seen[pid] = run_id
            run = by_run_id.get(run_id) if run_id is not None else None
            if run is not None:
                members[run.service].append(pid)
        self._run_ids = seen  # pids gone are forgotten (their numbers may come back)
        at = self._clock()
        samples = {}
        for run in runs:
            processes, rss = self._read_members(members[run.service])
            if processes:
                samples[run.service] = TreeSample(at, processes, rss)
        return samples

    def _run_id_of(self, pid: int) -> str | None:
        try:
            with open(f"{self._proc}/{pid}/environ", "rb") as file:
                environ = file.read()
        except OSError:
            return None  # gone, or not ours to read (another user's: not one of our runs)
        for assignment in environ.split(b"\0"):
            if assignment.startswith(_RUN_ID_PREFIX):
                return assignment[len(_RUN_ID_PREFIX) :].decode(errors="replace")
        return None

    def _read_members(self, pids: list[int]) -> tuple[dict[ProcessKey, ProcessTimes], int]:
        processes: dict[ProcessKey, ProcessTimes] = {}
        rss = 0
        for pid in pids:
            try:
                with open(f"{self._proc}/{pid}/stat", "rb") as file:
                    fields = file.read().rsplit(b")", 1)[1].split()
                # after the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13)
                # cstime(14) ... starttime(19) vsize(20) rss(21)
                key = (pid, int(fields[19]))
                processes[key] = ProcessTimes(
                    ppid=int(fields[1]),
                    own=(int(fields[11]) + int(fields[12])) / _TICKS,
                    reaped=(int(fields[13]) + int(fields[14])) / _TICKS,
                )
                rss += int(fields[21]) * _PAGE
            except (OSError, IndexError, ValueError):
                continue  # gone since the listing
        return processes, rss


def _group_of(pid: int) -> int:
    """The process group of ``pid``; -1 (no group) if it is gone."""
    try:
        return os.getpgid(pid)
    except OSError:
        return -1
