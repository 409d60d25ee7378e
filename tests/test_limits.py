"""Resource limits (``core/limits.py``): usage from samples, the memory and CPU verdicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartwatch.config import ConfigError, config_warnings, parse_config
from heartwatch.core.events import ServiceState, Spawn, Stop, Transition
from heartwatch.core.limits import (
    ProcessTimes,
    ResourceLimits,
    ResourceWatch,
    TreeSample,
    cpu_seconds_between,
)
from heartwatch.core.units import format_size, format_size_over, parse_size
from heartwatch.core.watchdog import Watchdog

GB = 1024**3
MAIN = (100, 5000)  # pid, start time in ticks


def sample(at: float, cpu: float = 0.0, rss: int = 0, **more: ProcessTimes) -> TreeSample:
    """A tree of one main process that used ``cpu`` seconds so far (plus ``more``)."""
    processes = {MAIN: ProcessTimes(ppid=1, own=cpu, reaped=0.0)}
    processes.update({(int(pid[1:]), 1): times for pid, times in more.items()})
    return TreeSample(at, processes, rss)


def test_cpu_between_counts_the_growth_of_each_process() -> None:
    """Each process seen twice adds what its counters grew by; a new one all it used."""
    child = ProcessTimes(ppid=100, own=0.5, reaped=0.0)
    assert cpu_seconds_between(sample(0, 1.0), sample(5, 3.0, p7=child)) == pytest.approx(2.5)


def test_cpu_between_counts_a_child_reaped_by_its_parent_once() -> None:
    """A child gone into its parent's reaped time is not counted a second time."""
    earlier = TreeSample(
        0,
        {MAIN: ProcessTimes(1, 1.0, 0.0), (7, 1): ProcessTimes(ppid=100, own=2.0, reaped=0.0)},
        0,
    )
    # The child used 1 s more, then exited; its 3 s are now in the parent's reaped time.
    later = TreeSample(5, {MAIN: ProcessTimes(1, 1.5, 3.0)}, 0)
    assert cpu_seconds_between(earlier, later) == pytest.approx(1.5)


def test_cpu_between_never_counts_a_reused_pid_as_growth() -> None:
    """A pid back with another start time is another process: its counters start at zero."""
    earlier = TreeSample(0, {(100, 1): ProcessTimes(1, 50.0, 0.0)}, 0)
    later = TreeSample(5, {(100, 2): ProcessTimes(1, 0.2, 0.0)}, 0)
    assert cpu_seconds_between(earlier, later) == pytest.approx(0.2)


def test_cpu_between_is_never_negative() -> None:
    """Counters that seem to go back (a process gone, its parent not reaping) give zero."""
    earlier = TreeSample(
        0, {MAIN: ProcessTimes(1, 1.0, 0.0), (7, 1): ProcessTimes(100, 9.0, 0.0)}, 0
    )
    assert cpu_seconds_between(earlier, TreeSample(5, {MAIN: ProcessTimes(1, 1.0, 0.0)}, 0)) == 0


def test_usage_cpu_is_unknown_until_two_samples() -> None:
    """RSS is known at the first sample; CPU needs an interval."""
    watch = ResourceWatch(ResourceLimits(), interval=5)
    assert watch.receive_sample(sample(0, 0.0, rss=4096)) is None
    assert (watch.rss_bytes, watch.cpu_percent) == (4096, None)
    watch.receive_sample(sample(5, 2.5, rss=8192))
    assert (watch.rss_bytes, watch.cpu_percent) == (8192, 50.0)


def test_memory_over_its_limit_is_a_verdict_with_both_sizes() -> None:
    """One sample over max_memory says so, in one style of sizes."""
    watch = ResourceWatch(ResourceLimits(max_memory=2 * GB), interval=5)
    assert watch.receive_sample(sample(0, rss=2 * GB)) is None  # at the limit is not over
    verdict = watch.receive_sample(sample(5, rss=int(2.1 * GB)))
    assert verdict == "memory 2.1 GB over max_memory 2 GB"


def test_a_verdict_is_given_once_per_run() -> None:
    """The run is being stopped after a verdict: later samples say nothing more."""
    watch = ResourceWatch(ResourceLimits(max_memory=1024), interval=5)
    assert watch.receive_sample(sample(0, rss=4096)) is not None
    assert watch.receive_sample(sample(5, rss=8192)) is None
    assert watch.exceeded == "memory 4 KB over max_memory 1 KB"
    assert watch.rss_bytes == 8192  # usage is still shown


def spin(watch: ResourceWatch, percents: list[float], interval: float = 5.0) -> list[str | None]:
    """Feed one sample per interval, the tree using ``percents`` of a core in each."""
    verdicts, used = [], 0.0
    watch.receive_sample(sample(0.0, 0.0))
    for index, percent in enumerate(percents, start=1):
        used += percent / 100 * interval
        verdicts.append(watch.receive_sample(sample(index * interval, used)))
    return verdicts


def test_cpu_over_its_limit_for_the_whole_stretch_is_a_verdict() -> None:
    """Over percent in every interval for ``for``: a verdict with the average and ``for``."""
    watch = ResourceWatch(ResourceLimits(max_cpu_percent=95, max_cpu_for=300), interval=5)
    verdicts = spin(watch, [99.0] * 60)
    assert verdicts[:59] == [None] * 59
    assert verdicts[59] == "cpu 99 % for 5 min over max_cpu 95 %"
    assert watch.over_since() == 0.0


def test_one_interval_under_the_limit_starts_the_count_again() -> None:
    """``for`` means in a row: a quiet interval resets it."""
    watch = ResourceWatch(ResourceLimits(max_cpu_percent=95, max_cpu_for=20), interval=5)
    verdicts = spin(watch, [99, 99, 99, 50, 99, 99, 99, 99])
    assert verdicts == [None] * 7 + ["cpu 99 % for 20.0 s over max_cpu 95 %"]
    assert watch.over_since() == 20.0


def test_cpu_just_over_the_limit_never_reads_as_the_limit() -> None:
    """95.3 % over 95 % says 95.3, not "95 % over max_cpu 95 %"."""
    watch = ResourceWatch(ResourceLimits(max_cpu_percent=95, max_cpu_for=10), interval=5)
    assert spin(watch, [95.3, 95.3]) == [None, "cpu 95.3 % for 10.0 s over max_cpu 95 %"]


def test_cpu_at_the_limit_is_not_over_it() -> None:
    """Exactly ``percent`` is allowed."""
    watch = ResourceWatch(ResourceLimits(max_cpu_percent=50, max_cpu_for=10), interval=5)
    assert spin(watch, [50.0] * 10) == [None] * 10


def test_cpu_beyond_one_core_counts_every_core() -> None:
    """A tree busy on two cores is at 200 %: a limit above 100 % can be met."""
    watch = ResourceWatch(ResourceLimits(max_cpu_percent=150, max_cpu_for=10), interval=5)
    assert spin(watch, [200.0, 200.0]) == [None, "cpu 200 % for 10.0 s over max_cpu 150 %"]
    assert watch.cpu_percent == 200.0


def test_a_sample_a_little_early_still_meets_for() -> None:
    """Timer jitter: a stretch within a quarter interval of ``for`` meets it."""
    watch = ResourceWatch(ResourceLimits(max_cpu_percent=90, max_cpu_for=10), interval=5)
    watch.receive_sample(sample(0.0, 0.0))
    assert watch.receive_sample(sample(5.0, 5.0)) is None
    assert watch.receive_sample(sample(9.1, 9.1)) == "cpu 100 % for 10.0 s over max_cpu 90 %"


def test_no_limits_no_verdicts() -> None:
    """A watch without limits only measures."""
    watch = ResourceWatch(ResourceLimits(), interval=1)
    assert not watch.limits.any
    assert spin(watch, [400.0] * 5, interval=1) == [None] * 5
    assert watch.receive_sample(sample(10, rss=100 * GB)) is None


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1024, "1 KB"),
        (1536, "1.5 KB"),
        (640 * 1024**2, "640 MB"),
        (int(2.1 * GB), "2.1 GB"),
        (2 * GB, "2 GB"),
        (int(99.96 * 1024), "100 KB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    """Sizes in one style: powers of 1024, one decimal below 100, no ``.0``."""
    assert format_size(size) == text


@pytest.mark.parametrize("text", ["2GB", "512 KiB", "10MB", "1.5GB"])
def test_format_size_reads_back_as_written(text: str) -> None:
    """What ``format_size`` writes, ``parse_size`` reads as the same size."""
    size = parse_size(text)
    assert parse_size(format_size(size)) == size


def test_format_size_over_never_reads_as_its_limit() -> None:
    """Just over the limit gets the decimals that tell the two apart."""
    assert format_size_over(int(2.04 * GB), 2 * GB) == ("2.04 GB", "2 GB")
    assert format_size_over(2 * GB + 5, 2 * GB) == (f"{2 * GB + 5} B", f"{2 * GB} B")
    assert format_size_over(int(2.1 * GB), 2 * GB) == ("2.1 GB", "2 GB")


def limited_pair(**worker: Any) -> Watchdog:
    """An emulator and a worker requiring it, both running by 10 s (ready once started)."""
    config = parse_config(
        {
            "service": [
                {"name": "emulator", "command": "emu"},
                {"name": "worker", "command": "work", "requires": ["emulator"], **worker},
            ]
        }
    )
    wd = Watchdog([s.spec() for s in config.service], random=lambda: 0.5)
    wd.receive_start(["worker"], 0.0, "daemon started")
    for now in (0.0, 5.0, 10.0):  # the emulator, then (once it is ready) the worker
        for action in wd.actions_to_take():
            assert isinstance(action, Spawn)
            wd.receive_spawned(action.service, 100, now)
        wd.tick(now)
    assert wd.record("worker").state is ServiceState.RUNNING
    wd.events_to_take()
    return wd


def test_limit_exceeded_is_a_failure_with_its_reason() -> None:
    """The reason is the transition's and the restart's; it is a hang: restart rules apply."""
    wd = limited_pair(max_memory="1GB")
    wd.receive_limit_exceeded("worker", "memory 1.2 GB over max_memory 1 GB", 20.0)
    transitions = [e for e in wd.events_to_take() if isinstance(e, Transition)]
    assert (transitions[0].new, transitions[0].reason, transitions[0].failure) == (
        ServiceState.UNRESPONSIVE,
        "memory 1.2 GB over max_memory 1 GB",
        True,
    )
    assert wd.actions_to_take() == [Stop("worker", "memory 1.2 GB over max_memory 1 GB")]
    wd.receive_exit("worker", -15, 20.5)
    (spawn,) = wd.actions_to_take()
    assert spawn == Spawn("worker", "memory 1.2 GB over max_memory 1 GB")
    assert wd.record("emulator").spawns == 1  # restart = "service": the worker alone


def test_limit_exceeded_follows_the_restart_rule_for_hangs() -> None:
    """``restart = { hang = "group" }``: the requirement restarts too."""
    wd = limited_pair(max_cpu={"percent": 90, "for": "10s"}, restart={"hang": "group"})
    wd.receive_limit_exceeded("worker", "cpu 99 % for 10.0 s over max_cpu 90 %", 30.0, since=18.0)
    transition = next(e for e in wd.events_to_take() if isinstance(e, Transition))
    assert transition.down_since == 18.0  # an incident begins when the spinning did
    assert wd.record("emulator").restart_pending


def test_limit_exceeded_is_ignored_once_a_restart_is_under_way() -> None:
    """A second verdict about a run being stopped changes nothing."""
    wd = limited_pair(max_memory="1GB")
    wd.receive_limit_exceeded("worker", "memory 1.2 GB over max_memory 1 GB", 20.0)
    wd.events_to_take(), wd.actions_to_take()
    wd.receive_limit_exceeded("worker", "memory 1.3 GB over max_memory 1 GB", 21.0)
    assert not wd.has_output
    assert wd.record("worker").reason == "memory 1.2 GB over max_memory 1 GB"


def test_limits_reach_the_spec() -> None:
    """``max_memory`` and ``max_cpu`` become the spec's ``ResourceLimits``."""
    config = parse_config(
        {
            "service": [
                {"name": "a", "command": "x", "max_memory": "2GB"},
                {"name": "b", "command": "x", "max_cpu": {"percent": 95, "for": "5m"}},
                {"name": "c", "command": "x", "max_cpu": {"percent": 150}},
            ]
        }
    )
    a, b, c = (s.spec().limits for s in config.service)
    assert a == ResourceLimits(max_memory=2 * GB)
    assert b == ResourceLimits(max_cpu_percent=95, max_cpu_for=300)
    assert c == ResourceLimits(max_cpu_percent=150, max_cpu_for=60)
    assert not config.service[0].spec().limits.max_cpu_percent


@pytest.mark.parametrize(
    ("service", "daemon", "problem"),
    [
        (
            {"max_cpu": {"percent": 95, "fro": "5m"}},
            {},
            "service[0] (w).max_cpu.fro: unknown key `fro`",
        ),
        ({"max_cpu": {"for": "5m"}}, {}, "service[0] (w).max_cpu.percent: required, and missing"),
        (
            {"max_cpu": {"percent": 95, "for": "soon"}},
            {},
            "service[0] (w).max_cpu.for: 'soon' is not a duration",
        ),
        ({"max_cpu": 95}, {}, "service[0] (w).max_cpu: expected a table"),
        ({"max_memory": "2 GX"}, {}, "service[0] (w).max_memory: '2 GX' is not a size"),
        ({"max_memory": 0}, {}, "service[0] (w).max_memory: Input should be greater than 0"),
        (
            {"command": None, "max_memory": "1GB"},
            {},
            "service[0] (w).max_memory: max_memory needs a command",
        ),
        (
            {"max_cpu": {"percent": 90, "for": "2s"}},
            {"sample_interval": "10s"},
            "service[0] (w).max_cpu.for: shorter than daemon.sample_interval (10.0 s)",
        ),
        ({}, {"sample_interval": 0}, "daemon.sample_interval: Input should be greater than"),
    ],
)
def test_limit_problems_name_their_key(
    service: dict[str, Any], daemon: dict[str, Any], problem: str
) -> None:
    """Bad limits are refused at their key path."""
    entry = {"name": "w", "command": "work", **service}
    if entry["command"] is None:
        del entry["command"]
    with pytest.raises(ConfigError) as raised:
        parse_config({"daemon": daemon, "service": [entry]})
    assert any(str(p).startswith(problem) for p in raised.value.problems), raised.value.problems


def test_a_max_cpu_no_machine_core_count_reaches_is_warned_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``heartwatch check`` warns of a percent this machine's cores cannot exceed."""
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    config = parse_config(
        {
            "service": [
                {"name": "a", "command": "sh", "max_cpu": {"percent": 200}},
                {"name": "b", "command": "sh", "max_cpu": {"percent": 150}},
            ]
        }
    )
    assert [str(w) for w in config_warnings(config, environ={"PATH": "/usr/bin:/bin"})] == [
        "service[0] (a).max_cpu.percent: 200 % can never be exceeded on this machine's 2 cores "
        "(at most 200 %)"
    ]


# -- a property test of cpu_seconds_between over simulated process trees --------------------


@dataclass
class _Process:
    pid: int
    ppid: int
    own: float = 0.0
    reaped: float = 0.0


class _Tree:
    """A run's processes as the kernel keeps their counters: an exit is reaped at once, by
    its parent if that is alive in the run (its time goes into the parent's reaped time),
    else by init (its time leaves the run); its children are re-parented to init."""

    def __init__(self) -> None:
        self.alive = {100: _Process(100, ppid=1)}
        self._next_pid = 101

    def sample(self, at: float) -> TreeSample:
        processes = {
            (p.pid, p.pid): ProcessTimes(p.ppid, p.own, p.reaped) for p in self.alive.values()
        }
        return TreeSample(at, processes, 0)

    def pick(self, index: int, main: bool = True) -> _Process | None:
        candidates = [p for p in self.alive.values() if main or p.pid != 100]
        return candidates[index % len(candidates)] if candidates else None

    def spawn(self, parent: _Process) -> None:
        self.alive[self._next_pid] = _Process(self._next_pid, ppid=parent.pid)
        self._next_pid += 1  # never reused here: reuse has its own test

    def exit(self, process: _Process) -> bool:
        """End it; True if its time stays visible (reaped by its parent, no orphans left)."""
        del self.alive[process.pid]
        orphans = [p for p in self.alive.values() if p.ppid == process.pid]
        for orphan in orphans:
            orphan.ppid = 1
        parent = self.alive.get(process.ppid)
        if parent is not None:
            parent.reaped += process.own + process.reaped
        return parent is not None and not orphans


_OPERATION = st.tuples(
    st.sampled_from(["run", "run", "spawn", "exit"]),
    st.integers(0, 50),
    st.floats(0.0, 2.0, allow_nan=False),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_OPERATION, max_size=12), min_size=1, max_size=8))
def test_cpu_between_never_counts_more_than_was_used(intervals: list[list[Any]]) -> None:
    """Over any tree's life: never more than the CPU really used in the interval, never
    negative, and exactly that when every exit was reaped by its parent without orphans."""
    tree = _Tree()
    earlier = tree.sample(0.0)
    for number, operations in enumerate(intervals, start=1):
        used, exact = 0.0, True
        for kind, index, amount in operations:
            if kind == "run":
                process = tree.pick(index)
                assert process is not None
                process.own += amount
                used += amount
            elif kind == "spawn":
                parent = tree.pick(index)
                assert parent is not None
                tree.spawn(parent)
            else:
                process = tree.pick(index, main=False)  # the main process ends the run
                if process is not None:
                    exact &= tree.exit(process)
        later = tree.sample(float(number))
        counted = cpu_seconds_between(earlier, later)
        assert 0.0 <= counted <= used + 1e-9
        if exact:
            assert counted == pytest.approx(used, abs=1e-9)
        earlier = later
