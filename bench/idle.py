"""Idle cost: the daemon's memory, CPU and wake-ups while 10 healthy services just beat.

Goals (from the issue): RSS <= 50 MB; CPU <= 0.1 % over >= 30 s; wake-ups that follow what
arrives (about one per heartbeat plus a small constant), with no periodic tick of its own.

Method. Ten services run ``worker.py``: one persistent TCP connection to ``HEARTWATCH_ADDR``, a
heartbeat every second at a random phase, asleep in between (``heartbeat_timeout`` 5 s). Once
all ten are ``running`` and have settled, the bench measures over a window of ``--seconds``
(30 s; ``--quick``: 10 s):

- RSS (and USS, the memory private to the process) at the end of the window;
- CPU time of all the daemon's threads (``/proc/<pid>/task/*/schedstat``, nanoseconds);
- voluntary context switches of its main thread (the event loop): each is one sleep that ended,
  i.e. one wake-up;
- heartbeats received (``messages`` from ``GET /api/v1/services``, before and after);
- then, if ``strace`` can attach, ``epoll_wait`` calls over a second, shorter window: the exact
  number of event-loop iterations.

Baselines, same window:

- a bare idle asyncio process of the same Python (``asyncio.run(asyncio.sleep(3600))``), for the
  memory and CPU an interpreter costs at all;
- the minimal asyncio server of ``_minimal_server.py`` (counts newlines, nothing else) receiving
  the same heartbeats from ten more identical workers that the bench starts itself: the floor
  for being woken ten times a second on this machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

import psutil

from _common import (
    BENCH_DIR,
    PYTHON,
    Daemon,
    Workdir,
    banner,
    cpu_seconds,
    parse_args,
    print_table,
    rss_mb,
    verdict,
    voluntary_switches,
    wait_until,
)

SERVICES = 10
BEAT_EVERY = 1.0
GOAL_RSS_MB = 50.0
GOAL_CPU_PCT = 0.1

WORKER = r"""
import json, os, random, socket, time

time.sleep(random.random())  # workers beat out of step, as independent processes do
host, port = os.environ["HEARTWATCH_ADDR"].rsplit(":", 1)
beat = json.dumps({"type": "heartbeat", "service": os.environ["HEARTWATCH_SERVICE"]}).encode()
sock = socket.create_connection((host, int(port)))
while True:
    sock.sendall(beat + b"\n")
    time.sleep(%s)
"""

BARE = "import asyncio; asyncio.run(asyncio.sleep(3600))"


@dataclass
class Sample:
    at: float
    cpu: float
    switches: int


def sample(pid: int) -> Sample:
    return Sample(time.monotonic(), cpu_seconds(pid), voluntary_switches(pid))


def uss_mb(pid: int) -> float:
    try:
        return float(psutil.Process(pid).memory_full_info().uss) / 2**20
    except (psutil.Error, AttributeError):
        return float("nan")


def count_epoll_waits(pid: int, seconds: float) -> int | None:
    """``epoll_wait`` calls by ``pid`` (all threads) over ``seconds``, or None without strace."""
    if shutil.which("strace") is None:
        return None
    tracer = subprocess.Popen(
        ["strace", "-c", "-f", "-e", "trace=epoll_wait,epoll_pwait", "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(seconds)
    tracer.send_signal(signal.SIGINT)
    try:
        _, report = tracer.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.communicate()
        return None
    calls = 0
    found = False
    for line in report.splitlines():
        match = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(epoll_p?wait)\s*$", line)
        if match:
            calls += int(match.group(1))
            found = True
    return calls if found else None


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=0.0, help="measurement window")
    parser.add_argument("--no-strace", action="store_true", help="skip the strace window")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _options)
    window = args.seconds or (10.0 if args.quick else 30.0)
    strace_window = min(window, 10.0)
    banner("idle cost", args.quick)
    print(
        f"   {SERVICES} services, each a sleeping worker beating every {BEAT_EVERY:g} s; "
        f"window {window:g} s"
    )
    services = [
        {
            "name": f"idle-{i}",
            "command": [PYTHON, "worker.py"],
            "heartbeat_timeout": "5s",
            "startup_grace": "10s",
            "stop_timeout": "2s",
        }
        for i in range(SERVICES)
    ]
    with Workdir("idle", args.keep) as work:
        folder = work.path / "daemon"
        folder.mkdir()
        (folder / "worker.py").write_text(WORKER % BEAT_EVERY)
        bare = subprocess.Popen([PYTHON, "-c", BARE])
        minimal = subprocess.Popen(
            [PYTHON, str(BENCH_DIR / "_minimal_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert minimal.stdout is not None
        minimal_port = int(minimal.stdout.readline())
        env = {**os.environ, "HEARTWATCH_ADDR": f"127.0.0.1:{minimal_port}"}
        minimal_workers = [
            subprocess.Popen(
                [PYTHON, "worker.py"],
                cwd=folder,
                env={**env, "HEARTWATCH_SERVICE": f"idle-{i}"},
                start_new_session=True,
            )
            for i in range(SERVICES)
        ]

        def minimal_count() -> int:
            assert minimal.stdin is not None
            assert minimal.stdout is not None
            minimal.stdin.write("count\n")
            minimal.stdin.flush()
            return int(minimal.stdout.readline())

        try:
            with Daemon(folder, services) as daemon:
                running = wait_until(
                    lambda: all(s["state"] == "running" for s in daemon.services()), 20.0, 0.2
                )
                if not running:
                    raise SystemExit("the services did not all reach 'running' within 20 s")
                time.sleep(2.0)  # settle: start-up done, first heartbeats in
                beats_before, beats_at = daemon.total_messages(), time.monotonic()
                m_before = minimal_count()
                time.sleep(0.5)
                d0, m0, b0 = sample(daemon.pid), sample(minimal.pid), sample(bare.pid)
                time.sleep(window)
                d1, m1, b1 = sample(daemon.pid), sample(minimal.pid), sample(bare.pid)
                time.sleep(0.5)
                beats_after, beats_end = daemon.total_messages(), time.monotonic()
                m_after = minimal_count()
                d_rss, d_uss = rss_mb(daemon.pid), uss_mb(daemon.pid)
                m_rss, m_uss = rss_mb(minimal.pid), uss_mb(minimal.pid)
                b_rss, b_uss = rss_mb(bare.pid), uss_mb(bare.pid)
                d_threads = psutil.Process(daemon.pid).num_threads()
                states = {s["state"] for s in daemon.services()}
                epolls = None if args.no_strace else count_epoll_waits(daemon.pid, strace_window)
        finally:
            for process in [bare, *minimal_workers]:
                process.terminate()
                process.wait(10)
            if minimal.stdin is not None:
                minimal.stdin.close()
            minimal.wait(10)
    beat_rate = (beats_after - beats_before) / (beats_end - beats_at)
    m_beat_rate = (m_after - m_before) / (beats_end - beats_at)
    d_span, m_span, b_span = d1.at - d0.at, m1.at - m0.at, b1.at - b0.at
    m_cpu = 100.0 * (m1.cpu - m0.cpu) / m_span
    m_wake = (m1.switches - m0.switches) / m_span
    d_cpu = 100.0 * (d1.cpu - d0.cpu) / d_span
    b_cpu = 100.0 * (b1.cpu - b0.cpu) / b_span
    d_wake = (d1.switches - d0.switches) / d_span
    b_wake = (b1.switches - b0.switches) / b_span
    print()
    print_table(
        ["", "RSS MB", "USS MB", "CPU %", "CPU ms/s", "wake-ups/s", "heartbeats/s"],
        [
            ["heartwatch daemon", d_rss, d_uss, d_cpu, d_cpu * 10, d_wake, beat_rate],
            ["minimal asyncio listener", m_rss, m_uss, m_cpu, m_cpu * 10, m_wake, m_beat_rate],
            ["bare idle asyncio python", b_rss, b_uss, b_cpu, b_cpu * 10, b_wake, 0.0],
        ],
    )
    print(
        f"\n(daemon threads: {d_threads}; service states at the end: {', '.join(sorted(states))};"
        " wake-ups = voluntary context switches of the main thread)"
    )
    extra = d_wake - beat_rate
    print(
        f"wake-ups beyond one per heartbeat: {extra:+.1f}/s "
        f"({d_wake:.1f} wake-ups/s for {beat_rate:.1f} heartbeats/s)"
    )
    if epolls is not None:
        print(
            f"strace over {strace_window:g} s: {epolls} epoll_wait calls = "
            f"{epolls / strace_window:.1f}/s (event-loop iterations, all threads)"
        )
    else:
        print("strace: not available or not permitted here; context switches stand in")
    print()
    print(f"goal RSS <= {GOAL_RSS_MB:g} MB: {d_rss:.1f} MB: {verdict(d_rss <= GOAL_RSS_MB)}")
    print(
        f"   (the minimal listener, woken by as many heartbeats, uses {m_cpu:.3f} %: "
        f"heartwatch {d_cpu / max(m_cpu, 1e-6):.1f}x that)"
    )
    ok_cpu = d_cpu <= GOAL_CPU_PCT and window >= 30.0
    note = "" if window >= 30.0 else " (window < 30 s: run without --quick to judge)"
    print(f"goal CPU <= {GOAL_CPU_PCT:g} % over >= 30 s: {d_cpu:.3f} %: {verdict(ok_cpu)}{note}")
    # "A small constant": allow one wake-up per second per service beyond the heartbeats
    # themselves would already be a tick; a couple per second is the constant.
    ok_wake = extra <= 2.0
    print(
        f"goal wake-ups ~ heartbeats + small constant (<= 2/s extra): {extra:+.1f}/s: "
        f"{verdict(ok_wake)}"
    )


if __name__ == "__main__":
    main()
