"""Memory after a storm of websocket clients: the daemon's RSS before, at the peak, and after.

Goal (from the issue): after 2000 websocket clients connected and left, RSS went 79 -> 163 MB
and stayed; find what holds it and bound it.

Method. A daemon watching one worker (a heartbeat every 0.2 s, its output captured) gets
``--clients`` websocket clients (2000; ``--quick``: 1000), half on ``/ws/events`` and half on
``/ws/logs/worker?lines=20``; each reads its first frame and closes. Two shapes: *at once* (all
connect together) and *in batches* of 200, one batch after the other. The daemon's RSS is read
before (idle 2 s), sampled every 50 ms during the storm (the peak), 1 s after the last client
left, and 35 s after (the storm's settle waits at most 30 s since the previous one).

Each shape runs on the HTTP server as it is now (``daemon/http_server.py``, ``http_guard.py``,
``httplimits.py``, ``memory.py`` of the work tree) and as it was before issue 9 (``--compare``,
by default the commit ``a8bfb04``: uvicorn's own protocols, nothing given back), from snapshots
of the last commit (``git archive``, so others' unfinished edits stay out), the same machine,
the same run. A last phase runs the code of now with ``PYTHONMALLOC=malloc`` (every object
from glibc, none from CPython's arenas), to show what the remaining growth is made of.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.client import connect

from _common import (
    PYTHON,
    Daemon,
    Workdir,
    banner,
    git,
    parse_args,
    print_table,
    rss_mb,
    snapshot_src,
)

BEFORE = "a8bfb04"  # the last commit before issue 9's HTTP guard
HTTP_FILES = (
    "src/heartwatch/daemon/http_server.py",
    "src/heartwatch/daemon/http_guard.py",
    "src/heartwatch/core/httplimits.py",
    "src/heartwatch/daemon/memory.py",
)
BATCH = 200
SETTLE_WAIT = 35.0
WORKER = """
import json, os, socket, time

host, port = os.environ["HEARTWATCH_ADDR"].rsplit(":", 1)
beat = json.dumps({"type": "heartbeat", "service": "worker"}).encode() + b"\\n"
sock = None
n = 0
while True:  # a heartbeat every 0.2 s, and a line of output each time
    try:
        sock = sock or socket.create_connection((host, int(port)), timeout=2.0)
        sock.sendall(beat)
    except OSError:
        sock = None
    n += 1
    print(f"line {n}: the worker is working", flush=True)
    time.sleep(0.2)
"""


def snapshot(into: Path, revision: str | None) -> Path:
    return snapshot_src(into, revision, HTTP_FILES)


def command_for(src: Path) -> list[str]:
    code = f"import sys; sys.path.insert(0, {str(src)!r}); from heartwatch.cli import main; main()"
    return [PYTHON, "-c", code]


async def _client(url: str) -> bool:
    try:
        async with connect(url, open_timeout=60, close_timeout=10, compression=None) as ws:
            await asyncio.wait_for(ws.recv(), 60)
    except Exception:
        return False
    return True


async def _storm(base: str, clients: int, batch: int) -> int:
    paths = ["/ws/events", "/ws/logs/worker?lines=20"]
    served = 0
    for start in range(0, clients, batch):
        urls = [base + paths[i % 2] for i in range(start, min(clients, start + batch))]
        served += sum(await asyncio.gather(*(_client(url) for url in urls)))
    return served


@dataclass(frozen=True)
class Phase:
    label: str
    served: int
    seconds: float
    before: float
    peak: float
    after_1s: float
    settled: float
    gc_ms: str  # the pause of the settle, from the daemon's log


def run_phase(
    label: str,
    folder: Path,
    command: list[str],
    clients: int,
    batch: int,
    env: dict[str, str] | None = None,
    *,
    caps: bool = True,
) -> Phase:
    (folder / "worker.py").parent.mkdir(parents=True, exist_ok=True)
    (folder / "worker.py").write_text(WORKER)
    daemon = Daemon(
        folder,
        [{"name": "worker", "command": [PYTHON, "worker.py"], "heartbeat_timeout": "5s"}],
        # This is about memory, not slow clients nor the connection cap: both out of the way.
        server={"http_max_pending": 4 * clients, "http_max_connections": 4 * clients}
        if caps
        else {},
        log_level="INFO",
        command=command,
    )
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        daemon.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        time.sleep(2)
        before = rss_mb(daemon.pid)
        peak = before
        sampling = True

        def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, rss_mb(daemon.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            served = asyncio.run(_storm(f"ws://{daemon.http}", clients, batch))
        finally:
            seconds = time.monotonic() - started
            sampling = False
            sampler.join()
        time.sleep(1)
        after_1s = rss_mb(daemon.pid)
        time.sleep(SETTLE_WAIT - 1)
        settled = rss_mb(daemon.pid)
        pauses = [
            match.group(1)
            for line in daemon.log_lines()
            if (match := re.search(r"memory given back to the OS in (\d+) ms", line))
        ]
    finally:
        daemon.stop()
    return Phase(label, served, seconds, before, peak, after_1s, settled, ", ".join(pauses) or "-")


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=0, help="websocket clients per storm")
    parser.add_argument(
        "--compare", default=BEFORE, help=f"the revision to compare with (default {BEFORE})"
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _options)
    clients = args.clients or (1000 if args.quick else 2000)
    banner(f"memory after a storm of {clients} websocket clients", args.quick)
    head = git("rev-parse", "--short", "HEAD").decode().strip()
    print(f"   code: commit {head}, with the HTTP server of the work tree ('now') and of ")
    print(
        f"   {args.compare} ('before'); RSS in MB; 'settled' is {SETTLE_WAIT:g} s after the storm"
    )
    phases = []
    with Workdir("http-storm", args.keep) as work:
        now = command_for(snapshot(work.path / "now", None))
        before = command_for(snapshot(work.path / "before", args.compare))
        plan: list[tuple[str, list[str], int, dict[str, str] | None]] = [
            ("now, at once", now, clients, None),
            (f"before ({args.compare}), at once", before, clients, None),
            (f"before ({args.compare}), batches of {BATCH}", before, BATCH, None),
            (f"now, batches of {BATCH}", now, BATCH, None),
            ("now, at once, PYTHONMALLOC=malloc", now, clients, {"PYTHONMALLOC": "malloc"}),
        ]
        for index, (label, command, batch, env) in enumerate(plan):
            # The revision before issue 9 has neither cap (and refuses keys it does not know).
            caps = command is now
            phase = run_phase(
                label, work.path / f"phase-{index}", command, clients, batch, env, caps=caps
            )
            phases.append(phase)
            print(
                f"   {label}: {phase.served}/{clients} served in {phase.seconds:.1f} s", flush=True
            )
    print()
    print_table(
        ["phase", "before", "peak", "+1 s", "settled", "settled - before", "settle pause ms"],
        [
            [
                p.label,
                f"{p.before:.1f}",
                f"{p.peak:.1f}",
                f"{p.after_1s:.1f}",
                f"{p.settled:.1f}",
                f"{p.settled - p.before:+.1f}",
                p.gc_ms,
            ]
            for p in phases
        ],
    )


if __name__ == "__main__":
    main()
