"""Resource limits of one run of a service: its process tree's memory and CPU, from samples.

Pure: a driver reads the tree (``daemon/sampler.py``) and hands a ``TreeSample`` with the
monotonic time it was taken; ``ResourceWatch.receive_sample`` answers the usage to show and,
once, the verdict if a limit is exceeded (the watchdog's ``receive_limit_exceeded`` reason).

Rules / theory of operation
---------------------------

- **Memory.** The tree's RSS is the sum of its processes' RSS (pages two processes share
  count for each, as ``ps`` sums them). Over ``max_memory`` in one sample is a verdict:
  ``memory 2.1 GB over max_memory 2 GB``. Memory is not a rate: one reading is the fact.
- **CPU.** A process's counters only grow, so the tree's CPU between two samples is the
  growth of each process seen in both (its own time, plus the time of the children it
  reaped: a shell loop's short-lived commands count), plus the whole time of the processes
  that are new. A process gone since the earlier sample whose parent is still there (or whose
  parent is gone too, and so on up to one that is still there) was most likely reaped by it:
  its time then reappears in the survivor's reaped time, so what it had at the earlier sample
  is taken off (else it would count twice). What a process gone without such an ancestor
  used in its last interval is not seen, nor what an orphan reaped by init had: the rule errs
  on the side of not restarting (a property test holds it to never more than was used).
- The percentage is of one core (a tree busy on two cores reads 200 %). Over ``percent`` in
  every sample interval for ``for`` seconds in a row is a verdict, with the average over that
  stretch: ``cpu 99 % for 5 min over max_cpu 95 %``. One interval at or under ``percent``
  starts the count again. So ``for`` is met in whole sample intervals (within a quarter
  interval: a timer's samples come a little early or late).
- A watch is for one run: the driver makes a new one for each new process. It gives its
  verdict once; the run is being stopped after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from heartwatch.core.units import format_duration, format_size_over


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """A service's limits (``max_memory``, ``max_cpu``); ``None``: no such limit."""

    max_memory: int | None = None  # bytes of RSS, the whole tree
    max_cpu_percent: float | None = None  # of one core
    max_cpu_for: float = 60.0  # seconds over it, in a row

    @property
    def any(self) -> bool:
        return self.max_memory is not None or self.max_cpu_percent is not None


# A process is its pid and its start time (in clock ticks since boot): pids are reused.
ProcessKey = tuple[int, int]


@dataclass(frozen=True, slots=True)
class ProcessTimes:
    """One process's CPU counters at a sample, in seconds."""

    ppid: int
    own: float  # user + system time of the process itself
    reaped: float  # user + system time of the children it waited for


@dataclass(frozen=True, slots=True)
class TreeSample:
    """A run's whole process tree, read at the monotonic time ``at``."""

    at: float
    processes: Mapping[ProcessKey, ProcessTimes]
    rss_bytes: int


def cpu_seconds_between(earlier: TreeSample, later: TreeSample) -> float:
    """CPU time the tree used from ``earlier`` to ``later`` (never negative)."""
    before, after = earlier.processes, later.processes
    used = 0.0
    for key, times in after.items():
        total = times.own + times.reaped
        previous = before.get(key)
        if previous is None:
            used += total  # new since the earlier sample: all of it is in the interval
        else:
            used += max(0.0, total - previous.own - previous.reaped)
    surviving = {pid for pid, _ in after.keys() & before.keys()}
    gone = {pid: times for (pid, start), times in before.items() if (pid, start) not in after}
    for times in gone.values():
        if _reaped_into(times.ppid, gone, surviving):
            used -= times.own + times.reaped  # counted again in a survivor's reaped time
    return max(0.0, used)


def _reaped_into(ppid: int, gone: Mapping[int, ProcessTimes], surviving: set[int]) -> bool:
    """Does a gone process's time end in a surviving process's reaped time? Its parent
    survived, or its parent is gone too and (reaped in turn) leads to one that did."""
    seen: set[int] = set()
    while ppid in gone and ppid not in seen:  # a pid cycle cannot happen; bounded anyway
        seen.add(ppid)
        ppid = gone[ppid].ppid
    return ppid in surviving


class ResourceWatch:
    """One run's usage (what status shows) and its limits' verdict."""

    def __init__(self, limits: ResourceLimits, interval: float) -> None:
        self.limits = limits
        # Samples come from a timer, each a little early or late: a stretch within a quarter
        # interval of ``for`` meets it (else jitter would cost a whole interval more).
        self._slack = interval / 4
        self.rss_bytes: int | None = None
        self.cpu_percent: float | None = None  # over the last interval; None before two samples
        self.exceeded: str | None = None  # the verdict, once given
        self._last: TreeSample | None = None
        self._over_since: float | None = None  # start of the run of intervals over max_cpu
        self._over_cpu_seconds = 0.0  # CPU used during that run

    def receive_sample(self, sample: TreeSample) -> str | None:
        """Take a reading; return the verdict the first time a limit is exceeded, else None."""
        last, self._last = self._last, sample
        self.rss_bytes = sample.rss_bytes
        if last is not None and sample.at > last.at:
            used = cpu_seconds_between(last, sample)
            self.cpu_percent = round(100.0 * used / (sample.at - last.at), 1)
            self._receive_cpu(last.at, sample.at, used)
        if self.exceeded is not None:
            return None
        verdict = self._memory_verdict() or self._cpu_verdict(sample.at)
        self.exceeded = verdict
        return verdict

    def over_since(self) -> float | None:
        """When the CPU began to be over ``max_cpu`` without a break (monotonic), if it is."""
        return self._over_since

    def _receive_cpu(self, start: float, end: float, used: float) -> None:
        limit = self.limits.max_cpu_percent
        if limit is None:
            return
        if 100.0 * used / (end - start) > limit:
            if self._over_since is None:
                self._over_since, self._over_cpu_seconds = start, 0.0
            self._over_cpu_seconds += used
        else:
            self._over_since = None

    def _memory_verdict(self) -> str | None:
        limit = self.limits.max_memory
        if limit is None or self.rss_bytes is None or self.rss_bytes <= limit:
            return None
        size, limit_text = format_size_over(self.rss_bytes, limit)
        return f"memory {size} over max_memory {limit_text}"

    def _cpu_verdict(self, now: float) -> str | None:
        limit, since = self.limits.max_cpu_percent, self._over_since
        if limit is None or since is None:
            return None
        stretch, needed = now - since, self.limits.max_cpu_for
        if stretch < needed - self._slack:
            return None
        average = 100.0 * self._over_cpu_seconds / stretch
        # Whole percents, unless that would read as the limit itself (95.3 over 95: "95.3").
        shown = f"{average:.0f}" if round(average) > limit else f"{average:.1f}"
        return f"cpu {shown} % for {format_duration(needed)} over max_cpu {limit:g} %"
