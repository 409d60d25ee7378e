"""The sampler driver (``daemon/sampler.py``): what it reads of a real process tree, and when
it wakes (never without a limit or an onlooker)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from heartwatch.core.limits import ResourceLimits, TreeSample
from heartwatch.daemon import sampler as sampler_module
from heartwatch.daemon.processes import RUN_ID_VARIABLE
from heartwatch.daemon.sampler import ResourceSampler, Run, TreeReader

_EMPTY = TreeSample(0.0, {}, 0)
# A group of two (the shell, a sleep) and one that left the group (setsid), all of one run.
TREE = "sleep 30 & setsid sleep 31 & wait"


@pytest.fixture
def tree() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    run_id = uuid.uuid4().hex
    popen = subprocess.Popen(
        ["sh", "-c", TREE], env={**os.environ, RUN_ID_VARIABLE: run_id}, start_new_session=True
    )
    try:
        yield popen, run_id
    finally:
        reader = TreeReader(time.monotonic)
        found = reader.read([Run("t", popen.pid, run_id, ResourceLimits())])
        for pid, _ in found["t"].processes if "t" in found else ():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        popen.wait()


def read_until(reader: TreeReader, run: Run, count: int) -> list[int]:
    """Read the tree until it has ``count`` processes, one outside the group (they take a
    moment to start, and setsid a moment to leave)."""
    deadline = time.monotonic() + 10
    while True:
        sample = reader.read([run]).get(run.service)
        pids = [pid for pid, _ in sample.processes] if sample else []
        escaped = [pid for pid in pids if _group(pid) != run.pid]
        if (len(pids) >= count and escaped) or time.monotonic() > deadline:
            return pids
        time.sleep(0.02)


def _group(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


def test_reader_finds_one_that_leaves_the_group_after_it_was_seen_in_it() -> None:
    """A process read while in the group and leaving it later (setsid) is still the run's: a
    pass that saw it in the group must not remember it as having no run id."""
    run_id = uuid.uuid4().hex
    popen = subprocess.Popen(
        ["sh", "-c", "(sleep 0.4; exec setsid sleep 31) & wait"],
        env={**os.environ, RUN_ID_VARIABLE: run_id},
        start_new_session=True,
    )
    reader = TreeReader(time.monotonic)
    run = Run("t", popen.pid, run_id, ResourceLimits())
    try:
        deadline = time.monotonic() + 10
        while len(reader.read([run]).get("t", _EMPTY).processes) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)  # the subshell is in the group now, seen there
        pids = read_until(reader, run, 2)
        escaped = [pid for pid in pids if _group(pid) != popen.pid]
        assert len(escaped) == 1, pids  # left the group, still found by its run id
    finally:
        found = reader.read([run]).get("t", _EMPTY)
        for pid, _ in found.processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        popen.wait()


def test_reader_finds_the_group_and_the_escaped(tree: tuple[subprocess.Popen[bytes], str]) -> None:
    """A run is its process group and every process with its run id, as processes.py stops it."""
    popen, run_id = tree
    reader = TreeReader(time.monotonic)
    run = Run("t", popen.pid, run_id, ResourceLimits())
    pids = read_until(reader, run, 3)
    assert len(pids) == 3 and popen.pid in pids
    escaped = [pid for pid in pids if _group(pid) != popen.pid]
    assert len(escaped) == 1  # the setsid one, found by its run id only
    sample = reader.read([run])["t"]
    assert sample.rss_bytes > 0


def test_reader_leaves_out_a_run_whose_processes_are_gone() -> None:
    """No process of the run: no sample (not a zero one)."""
    reader = TreeReader(time.monotonic)
    assert reader.read([Run("t", 2**22 + 7, uuid.uuid4().hex, ResourceLimits())]) == {}


def busy_child() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "while True: pass"],
        env={**os.environ, RUN_ID_VARIABLE: "busy"},
        start_new_session=True,
    )


def test_sampler_sleeps_without_limits_or_onlookers() -> None:
    """No limit, nobody looking: no pass at all; a look starts passes, CPU after the second."""

    async def scenario() -> None:
        child = busy_child()
        try:
            runs = [Run("busy", child.pid, "busy", ResourceLimits())]
            sampler = ResourceSampler(0.05, lambda: runs, lambda *_: None)
            await asyncio.sleep(0.3)
            assert sampler.passes == 0 and sampler.usage("busy") is None
            sampler.receive_interest()
            for _ in range(200):
                await asyncio.sleep(0.02)
                usage = sampler.usage("busy")
                if usage is not None and usage.cpu_percent is not None:
                    break
            assert usage is not None and usage.cpu_percent is not None
            assert usage.rss_bytes is not None and usage.rss_bytes > 0
            assert sampler.passes >= 2
            await sampler.close()
        finally:
            child.kill()
            child.wait()

    asyncio.run(scenario())


@pytest.mark.parametrize("inline_cost", [1.0, 0.0], ids=["on the loop", "in the thread"])
def test_sampler_reports_a_busy_tree_over_max_cpu(
    inline_cost: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A limit keeps it sampling unasked; a tree spinning over max_cpu is reported once,
    whether passes run on the loop or in the worker thread (answers taken a slot later)."""
    monkeypatch.setattr(sampler_module, "INLINE_PASS_COST", inline_cost)

    async def scenario() -> None:
        child = busy_child()
        reported: list[tuple[str, str, float | None]] = []
        try:
            limits = ResourceLimits(max_cpu_percent=10, max_cpu_for=0.2)
            runs = [Run("busy", child.pid, "busy", limits)]
            sampler = ResourceSampler(0.1, lambda: runs, lambda *a: reported.append(a))
            sampler.wake()  # as the supervisor does when a limited service starts
            for _ in range(250):
                await asyncio.sleep(0.02)
                if reported:
                    break
            await asyncio.sleep(0.3)  # more passes: no second report for the same run
            await sampler.close()
        finally:
            child.kill()
            child.wait()
        assert len(reported) == 1, reported
        service, reason, since = reported[0]
        assert service == "busy" and since is not None
        assert reason.startswith("cpu ") and reason.endswith(" % for 0.2 s over max_cpu 10 %")

    asyncio.run(scenario())


def test_a_look_after_a_pause_answers_rss_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interest lapses: sampling stops and usage is forgotten; the next look has RSS in its
    own answer (passes are known to be cheap), CPU at the pass after."""
    # Cheap whatever this host's process count: a pass here is well under a second.
    monkeypatch.setattr(sampler_module, "INLINE_PASS_COST", 1.0)

    async def scenario() -> None:
        child = busy_child()
        try:
            runs = [Run("busy", child.pid, "busy", ResourceLimits())]
            sampler = ResourceSampler(0.05, lambda: runs, lambda *_: None, interest_window=0.2)
            sampler.receive_interest()
            await asyncio.sleep(0.5)  # passes, then the window ends
            passes = sampler.passes
            assert passes >= 2 and sampler.usage("busy") is None  # nothing stale is shown
            await asyncio.sleep(0.2)
            assert sampler.passes == passes  # idle: no timer
            sampler.receive_interest()
            usage = sampler.usage("busy")
            assert usage is not None and usage.rss_bytes and usage.cpu_percent is None
            await sampler.close()
        finally:
            child.kill()
            child.wait()

    asyncio.run(scenario())
