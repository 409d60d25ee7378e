"""Restart latency: from a crashed worker's exit to its replacement running.

Goal (from the issue): p50 <= 50 ms on the first restart (no backoff).

Method. One service runs ``worker.py``, which records ``time.time()`` as the very first thing it
does (``import time`` is its first line), lives ``LIFETIME`` seconds, records ``time.time()``
again and crashes with ``os._exit(1)``. heartwatch notices the exit (a pidfd in its event loop),
and starts the worker again: each crash-and-start pair is one trial.

    latency = start time of worker n+1 - exit time of worker n

This includes the kernel's exit and pidfd wake-up, heartwatch's bookkeeping and ``Popen``, and
the new interpreter's start-up up to its first line, which is the bulk of it and no supervisor
can avoid. Every trial is a *first* restart: ``healthy_after`` is 0.2 s and the worker lives
0.4 s, so the backoff streak is forgotten before each crash. ``backoff_initial`` is left at 1 s
so that a restart which did wait for a backoff would stand out as a 1 s outlier.

Baseline, same run, same worker: the floor, a tiny supervisor loop in its own process,
``while True: p = Popen(worker); p.wait()`` with the same ``Popen`` arguments heartwatch uses
(new session, stdout piped, ``close_fds``). It gives both "``Popen`` called -> worker's first
line" (the cost of just spawning the worker) and "exit -> next start" for a loop that does nothing
else. It runs half before and half after heartwatch's trials. The daemon logs at INFO, the
default.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from _common import (
    PYTHON,
    SUMMARY_HEADERS,
    Daemon,
    TomlValue,
    Workdir,
    banner,
    median,
    parse_args,
    print_table,
    summary_row,
    verdict,
)

LIFETIME = 0.4
GOAL_P50_MS = 50.0

WORKER = r"""import time
STARTED = time.time()
import os, sys

out, lifetime = sys.argv[1], float(sys.argv[2])
with open(out, "a") as f:
    f.write(f"start {os.getpid()} {STARTED!r}\n")
time.sleep(lifetime)
f = open(out, "a")
ended = time.time()
f.write(f"exit {os.getpid()} {ended!r}\n")
f.flush()
os._exit(1)
"""

FLOOR = r"""import os, subprocess, sys, time

out, worker, lifetime, trials = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
env = {**os.environ, "HEARTWATCH_SERVICE": "crasher", "HEARTWATCH_ADDR": "127.0.0.1:9"}
with open(out, "a") as log:
    for _ in range(trials + 1):
        called = time.time()
        p = subprocess.Popen(
            [sys.executable, worker, out, lifetime],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
        log.write(f"popen {p.pid} {called!r}\n")
        log.flush()
        p.stdout.read()
        p.wait()
"""


def read_events(path: Path) -> list[tuple[str, int, float]]:
    events = []
    if path.exists():
        for line in path.read_text().splitlines():
            kind, pid, at = line.split()
            events.append((kind, int(pid), float(at)))
    return events


def restart_gaps(events: list[tuple[str, int, float]]) -> list[float]:
    """Milliseconds from each exit to the next start, in order of time."""
    gaps = []
    last_exit: float | None = None
    for kind, _, at in sorted(events, key=lambda e: e[2]):
        if kind == "exit":
            last_exit = at
        elif kind == "start" and last_exit is not None:
            gaps.append((at - last_exit) * 1000.0)
            last_exit = None
    return gaps


def spawn_costs(events: list[tuple[str, int, float]]) -> list[float]:
    """Milliseconds from ``Popen`` called to the worker's first line, matched by pid."""
    called = {pid: at for kind, pid, at in events if kind == "popen"}
    return [
        (at - called[pid]) * 1000.0 for kind, pid, at in events if kind == "start" and pid in called
    ]


def measure_heartwatch(folder: Path, worker: Path, trials: int, limit: float) -> list[float]:
    out = folder / "heartwatch-events.txt"
    service: dict[str, TomlValue] = {
        "name": "crasher",
        "command": [PYTHON, str(worker), str(out), str(LIFETIME)],
        "healthy_after": "0.2s",
        "backoff_initial": "1s",
        "max_restarts": 1000,
        "stop_timeout": "2s",
    }
    with Daemon(folder / "daemon", [service], log_level="INFO"):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and len(restart_gaps(read_events(out))) < trials:
            time.sleep(0.2)
    return restart_gaps(read_events(out))[:trials]


def measure_floor(
    folder: Path, worker: Path, trials: int, part: str
) -> tuple[list[float], list[float]]:
    out = folder / f"floor-events-{part}.txt"
    script = folder / "floor.py"
    script.write_text(FLOOR)
    argv = [PYTHON, str(script), str(out), str(worker), str(LIFETIME), str(trials)]
    subprocess.run(argv, check=True, timeout=trials * (LIFETIME + 1) + 30)
    events = read_events(out)
    return restart_gaps(events)[:trials], spawn_costs(events)[:trials]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    trials = 30 if args.quick else 60
    banner("restart latency: crash (exit) -> replacement's first line", args.quick)
    print(f"   worker lives {LIFETIME} s then os._exit(1); {trials} trials each")
    with Workdir("restart", args.keep) as work:
        worker = work.write("worker.py", WORKER)
        # The floor runs half before and half after heartwatch, so that drift in the machine's
        # load touches both alike.
        gaps_a, spawn_a = measure_floor(work.path, worker, trials // 2, "a")
        heartwatch = measure_heartwatch(work.path, worker, trials, limit=trials * 1.5 + 20)
        gaps_b, spawn_b = measure_floor(work.path, worker, trials - trials // 2, "b")
        floor_gaps, floor_spawn = gaps_a + gaps_b, spawn_a + spawn_b
    print()
    print_table(
        SUMMARY_HEADERS,
        [
            summary_row("heartwatch: exit -> next start", heartwatch),
            summary_row("floor loop: exit -> next start", floor_gaps),
            summary_row("floor: Popen called -> worker's first line", floor_spawn),
        ],
    )
    p50 = median(heartwatch)
    overhead = p50 - median(floor_gaps)
    print()
    print(
        f"heartwatch p50 {p50:.1f} ms; the bare Popen+wait loop {median(floor_gaps):.1f} ms: "
        f"heartwatch adds {overhead:.1f} ms at the median"
    )
    slow = [g for g in heartwatch if g >= 900.0]
    if slow:
        print(
            f"   note: {len(slow)} restart(s) took >= 0.9 s: a backoff applied (not first restarts)"
        )
    ok = len(heartwatch) >= 30 and p50 <= GOAL_P50_MS
    print(f"goal p50 <= {GOAL_P50_MS:g} ms on the first restart, >= 30 trials: {verdict(ok)}")
    if len(heartwatch) < trials:
        print(f"   note: only {len(heartwatch)} of {trials} trials completed within the time limit")


if __name__ == "__main__":
    main()
