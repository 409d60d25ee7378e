"""The resource sampler's cost: CPU per sample with 10 and 100 running services.

Goal (from the issue): sampling costs one wake-up per interval in all, and nothing when no
limit is set and nobody is looking.

Method, for 10 and 100 services, each a shell with one child (``sh -c 'sleep 600 & wait'``:
two processes, as most real services are a wrapper and a worker):

1. The reader alone, in this process: ``TreeReader.read`` over every run, CPU time per pass
   (``time.thread_time``), the first pass (it reads every process's environment once) and the
   median of the following ones. Baseline in the same run: the same facts through
   ``psutil.process_iter`` (ppid, CPU times, memory, environment), the obvious way to write it.
2. The daemon: two daemons in turn, the same services, ``sample_interval = 1s``; one with
   ``max_memory`` on every service (the sampler runs), one without limits and nobody looking
   (the sampler must sleep). Over a window (``--seconds``, 10 s; ``--quick``: 5 s) with no API
   request (a request would wake the sampler): the daemon's CPU (all threads, ``schedstat``) and
   its main thread's voluntary context switches (wake-ups). CPU per sample = the difference
   between the two, over the samples in the window.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable

import psutil

from _common import (
    Daemon,
    Workdir,
    banner,
    cpu_seconds,
    parse_args,
    print_table,
    voluntary_switches,
    wait_until,
)
from heartwatch.core.limits import ResourceLimits
from heartwatch.daemon.processes import RUN_ID_VARIABLE
from heartwatch.daemon.sampler import Run, TreeReader

TREE = ["sh", "-c", "sleep 600 & wait"]
INTERVAL = 1.0


def start_trees(count: int) -> list[tuple[subprocess.Popen[bytes], str]]:
    trees = []
    for _ in range(count):
        run_id = uuid.uuid4().hex
        popen = subprocess.Popen(
            TREE, env={**os.environ, RUN_ID_VARIABLE: run_id}, start_new_session=True
        )
        trees.append((popen, run_id))
    return trees


def end_trees(trees: list[tuple[subprocess.Popen[bytes], str]]) -> None:
    for popen, _ in trees:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


def psutil_pass(run_ids: set[str]) -> int:
    """The same facts the obvious way: every process through psutil."""
    found = 0
    for process in psutil.process_iter(["ppid", "cpu_times", "memory_info", "environ"]):
        environ = process.info.get("environ") or {}
        if environ.get(RUN_ID_VARIABLE) in run_ids:
            found += 1
    return found


def thread_cpu_ms(function: Callable[..., object], *args: object) -> float:
    start = time.thread_time()
    function(*args)
    return (time.thread_time() - start) * 1000


def measure_reader(count: int, passes: int) -> list[object]:
    trees = start_trees(count)
    try:
        time.sleep(0.5)  # the shells start their sleeps
        runs = [Run(f"s{i}", p.pid, r, ResourceLimits()) for i, (p, r) in enumerate(trees)]
        reader = TreeReader(time.monotonic)
        first = thread_cpu_ms(reader.read, runs)
        steady = [thread_cpu_ms(reader.read, runs) for _ in range(passes)]
        members = sum(len(s.processes) for s in reader.read(runs).values())
        run_ids = {r for _, r in trees}
        baseline = [thread_cpu_ms(psutil_pass, run_ids) for _ in range(max(3, passes // 4))]
        host = len([e for e in os.listdir("/proc") if e.isdigit()])
        return [
            count,
            members,
            host,
            round(first, 2),
            round(statistics.median(steady), 2),
            round(statistics.median(baseline), 2),
        ]
    finally:
        end_trees(trees)


def measure_daemon(folder: Workdir, count: int, limited: bool, seconds: float) -> list[float]:
    extra = {"max_memory": "1GB"} if limited else {}
    services = [{"name": f"s{i}", "command": TREE, **extra} for i in range(count)]
    name = f"{'limited' if limited else 'plain'}-{count}"
    daemon = Daemon(folder.path / name, services)
    # [daemon] sample_interval, beside the [daemon] keys _common writes.
    text = daemon.config_path.read_text().replace(
        'log_level = "WARNING"', f'log_level = "WARNING"\nsample_interval = {INTERVAL}'
    )
    daemon.config_path.write_text(text)
    with daemon:
        process = psutil.Process(daemon.pid)
        # Running: every shell and its sleep there (no API request: it would wake the sampler).
        if not wait_until(lambda: len(process.children(recursive=True)) >= 2 * count, 30):
            raise RuntimeError(f"{name}: the services did not all start")
        time.sleep(2.0)  # start-up settles; the limited daemon's sampler is in its rhythm
        cpu0, switches0, at0 = (
            cpu_seconds(daemon.pid),
            voluntary_switches(daemon.pid),
            time.monotonic(),
        )
        time.sleep(seconds)
        cpu1, switches1, at1 = (
            cpu_seconds(daemon.pid),
            voluntary_switches(daemon.pid),
            time.monotonic(),
        )
    elapsed = at1 - at0
    return [(cpu1 - cpu0) / elapsed * 100, (switches1 - switches0) / elapsed, elapsed]


def main() -> None:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seconds", type=float, default=None, help="daemon window")

    args = parse_args(__doc__.splitlines()[0], extra)
    banner("resource sampler", args.quick)
    seconds = args.seconds or (5.0 if args.quick else 10.0)
    passes = 20 if args.quick else 50

    print("\n1. The reader alone: CPU ms per pass (thread time)\n")
    rows = [measure_reader(count, passes) for count in (10, 100)]
    print_table(
        [
            "services",
            "their processes",
            "host processes",
            "first pass ms",
            "later passes ms (median)",
            "psutil.process_iter ms",
        ],
        rows,
    )

    print(f"\n2. The daemon, sample_interval {INTERVAL:g} s, {seconds:g} s window, no requests\n")
    table = []
    with Workdir("sampler", keep=args.keep) as folder:
        for count in (10, 100):
            plain = measure_daemon(folder, count, limited=False, seconds=seconds)
            limited = measure_daemon(folder, count, limited=True, seconds=seconds)
            samples = limited[2] / INTERVAL
            per_sample_ms = (limited[0] - plain[0]) / 100 * limited[2] / samples * 1000
            table.append(
                [
                    count,
                    round(plain[0], 3),
                    round(plain[1], 2),
                    round(limited[0], 3),
                    round(limited[1], 2),
                    round(per_sample_ms, 2),
                ]
            )
    print_table(
        [
            "services",
            "no limits: CPU %",
            "wake-ups/s",
            "max_memory on all: CPU %",
            "wake-ups/s",
            "CPU ms per sample",
        ],
        table,
    )


if __name__ == "__main__":
    main()
