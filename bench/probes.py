"""Probe cost: the daemon's CPU and wake-ups with 100 services probed every 10 s, beside the same
100 services without probes, in the same run.

Method. Two daemons run one after the other, each with 100 services that run ``sleep`` (no
heartbeats: they are ready at start and never beat, so any cost is the probes'):

- *probed*: each service has a liveness probe ``exec = "true"`` every 10 s (``--period``);
- *plain*: the same services without probes.

Once every service is ``running`` and a full period has passed (the first checks are done),
the bench measures over a window of ``--seconds`` (60 s; ``--quick``: 20 s, two periods):

- CPU time of the daemon, all threads: ``utime + stime`` from ``/proc/<pid>/stat`` (clock
  ticks) and the nanosecond ``schedstat`` sum (``_common.cpu_seconds``); the checks' own
  processes are not counted (they are children, not the daemon), their CPU is shown apart;
- wake-ups: voluntary context switches of the daemon's main thread (the event loop), from
  ``/proc/<pid>/status``; each is one sleep that ended;
- threads of the daemon at the end (a check must not leave one behind);
- checks run in the window (each probe's consecutive successes, from the API, before and
  after).

Expected: about 10 checks a second for 100 probes every 10 s; the plain daemon wakes for
nothing at all (no beats, no deadlines: ready at start, nothing timed).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import Any

import psutil

from _common import (
    Daemon,
    Workdir,
    banner,
    cpu_seconds,
    parse_args,
    print_table,
    rss_mb,
    wait_until,
)

SERVICES = 100
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    at: float
    cpu: float  # schedstat, all threads, seconds
    ticks_cpu: float  # utime + stime from /proc/<pid>/stat, seconds
    children_cpu: float  # cutime + cstime: the checks it reaped
    switches: int  # voluntary context switches of the main thread


def stat_cpu(pid: int) -> tuple[float, float]:
    """``utime + stime`` and ``cutime + cstime`` of ``pid``, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # after the command: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime) / TICKS, (cutime + cstime) / TICKS


def main_thread_switches(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise RuntimeError("no voluntary_ctxt_switches in /proc/<pid>/status")


def sample(pid: int) -> Sample:
    ticks, children = stat_cpu(pid)
    return Sample(time.monotonic(), cpu_seconds(pid), ticks, children, main_thread_switches(pid))


def checks_so_far(daemon: Daemon) -> int:
    total = 0
    for status in daemon.services():
        probe = status.get("probes", {}).get("liveness")
        if probe is not None:
            total += int(probe["consecutive_successes"]) + int(probe["consecutive_failures"])
    return total


def services(period: float | None) -> list[dict[str, Any]]:
    result = []
    for i in range(SERVICES):
        service: dict[str, Any] = {
            "name": f"probed-{i}",
            "command": "sleep 3600",
            "stop_timeout": "2s",
            "startsecs": 0,
        }
        if period is not None:
            service["liveness"] = {"exec": "true", "period": f"{period:g}s", "timeout": "5s"}
        result.append(service)
    return result


@dataclass
class Result:
    label: str
    cpu_pct: float
    ticks_pct: float
    children_pct: float
    wakeups: float
    checks: float
    threads: int
    rss: float
    states: set[str]


def measure(folder: Any, label: str, period: float | None, window: float) -> Result:
    folder.mkdir()
    with Daemon(folder, services(period)) as daemon:
        running = wait_until(
            lambda: all(s["state"] == "running" for s in daemon.services()), 60.0, 0.5
        )
        if not running:
            raise SystemExit(f"{label}: the services did not all reach 'running' within 60 s")
        time.sleep(period or 2.0)  # settle: start-up done, the first checks run
        checks0 = checks_so_far(daemon)
        s0 = sample(daemon.pid)
        time.sleep(window)
        s1 = sample(daemon.pid)
        checks1 = checks_so_far(daemon)
        threads = psutil.Process(daemon.pid).num_threads()
        rss = rss_mb(daemon.pid)
        states = {s["state"] for s in daemon.services()}
    span = s1.at - s0.at
    return Result(
        label,
        100.0 * (s1.cpu - s0.cpu) / span,
        100.0 * (s1.ticks_cpu - s0.ticks_cpu) / span,
        100.0 * (s1.children_cpu - s0.children_cpu) / span,
        (s1.switches - s0.switches) / span,
        (checks1 - checks0) / span,
        threads,
        rss,
        states,
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=0.0, help="measurement window")
    parser.add_argument("--period", type=float, default=10.0, help="probe period, seconds")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _options)
    window = args.seconds or (20.0 if args.quick else 60.0)
    banner("probe cost", args.quick)
    print(
        f"   {SERVICES} services (sleep), an exec probe (`true`) every {args.period:g} s "
        f"vs none; window {window:g} s each"
    )
    with Workdir("probes", args.keep) as work:
        probed = measure(work.path / "probed", "probed", args.period, window)
        plain = measure(work.path / "plain", "plain", None, window)
    print()
    print_table(
        [
            "",
            "CPU % (schedstat)",
            "CPU % (utime+stime)",
            "checks' CPU %",
            "wake-ups/s",
            "checks/s",
            "threads",
            "RSS MB",
        ],
        [
            [r.label, r.cpu_pct, r.ticks_pct, r.children_pct, r.wakeups, r.checks, r.threads, r.rss]
            for r in (probed, plain)
        ],
    )
    print(f"\n(states at the end: probed {sorted(probed.states)}, plain {sorted(plain.states)})")
    if probed.checks > 0:
        extra_cpu_ms = 10.0 * (probed.cpu_pct - plain.cpu_pct) / probed.checks
        extra_wake = (probed.wakeups - plain.wakeups) / probed.checks
        print(
            f"per check: {extra_cpu_ms:.2f} ms of the daemon's CPU, "
            f"{extra_wake:.2f} wake-ups of its loop"
        )


if __name__ == "__main__":
    main()
