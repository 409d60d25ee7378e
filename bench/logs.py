"""Live logs: write-to-viewer latency, burst throughput, fan-out and the last lines of a big file.

Goals (from the issue), each beside a baseline measured in the same run:

1. latency from a line's ``write()`` to the viewer's frame, at 50 lines/s: p99 <= 2 ms;
2. a burst of 1,000,000 lines of 100 bytes to one viewer: >= 200,000 lines/s, every frame
   under the 1 MiB a default websocket client accepts, no line lost;
3. fan-out, 200 viewers of one file written at 1,000 lines/s: no line missing for any viewer,
   daemon RSS growth <= 50 MB (each viewer's p99 latency is reported beside); on a fresh daemon
   of its own, so that the growth is the fan-out's alone;
4. the last 200 lines of a 1 GiB file (``lines=200&follow=false``, connect to close):
   p99 <= 20 ms.

Method. The daemon runs with ``[logs] roots = [<tmp>/roots]`` and no service. Writers and
viewers are processes of their own (``_logload.py``). A writer appends lines carrying a
sequence number, one ``os.write`` per line, and notes ``time.monotonic_ns()`` as each write
returns; a viewer is a plain ``websockets`` client with its defaults (1 MiB ``max_size``,
permessage-deflate offered, as a browser does) on ``/ws/logs?path=<file>&lines=0``, and notes
the same clock as each frame arrives. Latency = arrival - write returned, per line (a writer
preempted between ``write()`` and reading the clock makes it slightly negative). The burst's
writer appends 1,000 lines per ``os.write``; its figure is first write -> last line received.
Each scenario uses a file of its own, created empty before its viewers connect. The latency
scenario runs in two interleaved rounds, the burst in three (medians; one each with
``--quick``); the burst is also run with a client that does not offer permessage-deflate, to
show what compressing every frame costs, and its figure on a core of its own is the daemon's
CPU per line, inverted.

Baselines, same run, same writer and viewers:

- *the original design* (``_original_logserver.py``): a websockets server that polls the file
  once a second, reads the whole file to find the new lines and sends them all as one frame;
  also its way of showing the last lines (read the whole file);
- *a minimal inotify websocket server* (``_original_logserver.py --inotify``): per viewer, an
  asyncinotify watch and a read of the new bytes, sent as one frame; what the daemon's design
  costs at least through a websocket on this machine (latency only: its frames are not capped);
- *raw inotify* in the viewer process: asyncinotify on the folder and a read of the new bytes
  at each event, no server and no socket: the floor of any follower written in Python;
- *the file read back* in Python line by line: the burst's ceiling;
- for the last lines: ``tail -n 200`` as a subprocess, ``heartwatch.logview.tailread`` called
  in this process (the floor), and an empty request (``lines=0&follow=false``: the
  connection's cost).

The machine has 2 cores: the daemon, the viewers and the writer share them, so the tables give
each process's CPU over the span, and how long the daemon was runnable but waiting for a CPU
(``schedstat``): that says what limits a figure.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import threading
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from _common import (
    BENCH_DIR,
    PYTHON,
    SUMMARY_HEADERS,
    Daemon,
    Workdir,
    banner,
    close_stdin_and_wait,
    cpu_seconds,
    median,
    parse_args,
    percentile,
    print_table,
    rss_mb,
    summary_row,
    verdict,
)

GOAL_LATENCY_P99_MS = 2.0
GOAL_BURST_RATE = 200_000.0
CLIENT_MAX_SIZE = 1 << 20  # a default websockets client's max_size
GOAL_RSS_GROWTH_MB = 50.0
GOAL_FANOUT_P99_MS = 100.0  # every viewer's p99
GOAL_TAIL_P99_MS = 20.0
LINE_BYTES = 100
LOADER = str(BENCH_DIR / "_logload.py")
VIEWER_PROCESSES = 2  # for the fan-out


@dataclass(frozen=True)
class Settings:
    quick: bool
    latency_seconds: float  # in total, split over the rounds
    latency_rounds: int
    burst_lines: int
    burst_repeats: int
    fan_viewers: int
    fan_seconds: float
    fan_rate: float
    tail_trials: int
    whole_file_trials: int

    @classmethod
    def of(cls, quick: bool) -> Settings:
        return cls(
            quick=quick,
            latency_seconds=5.0 if quick else 20.0,
            latency_rounds=1 if quick else 2,
            burst_lines=200_000 if quick else 1_000_000,
            burst_repeats=1 if quick else 3,
            fan_viewers=50 if quick else 200,
            fan_seconds=5.0 if quick else 20.0,
            fan_rate=1000.0,
            tail_trials=10 if quick else 20,
            whole_file_trials=3 if quick else 5,
        )


# -- servers and load processes ----------------------------------------------------------------


class Server:
    """What a viewer connects to: a URL for a file, and a pid to measure."""

    name: str
    pid: int

    def url(self, path: Path, query: str) -> str:
        raise NotImplementedError


class DaemonServer(Server):
    name = "heartwatch"

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.pid = daemon.pid

    def url(self, path: Path, query: str) -> str:
        return f"ws://{self.daemon.http}/ws/logs?path={quote(str(path))}&{query}"


class BaselineServer(Server):
    """``_original_logserver.py`` in a subprocess (``--inotify``: the minimal follower)."""

    def __init__(self, inotify: bool) -> None:
        self.name = (
            "minimal inotify websocket server"
            if inotify
            else "original design (1 s poll, whole file)"
        )
        command = [PYTHON, str(BENCH_DIR / "_original_logserver.py")]
        self.process = subprocess.Popen(
            command + (["--inotify"] if inotify else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.pid = self.process.pid

    def url(self, path: Path, query: str) -> str:
        return f"ws://127.0.0.1:{self.port}/?path={quote(str(path))}&{query}"

    def close(self) -> None:
        close_stdin_and_wait(self.process)


@dataclass
class ViewerResult:
    viewers: list[dict[str, Any]]  # one summary per viewer (see _logload.py)
    times: list[array[int]]  # per viewer, arrival by sequence number (0: never)
    cpu: float  # seconds of the viewer processes, from connected to the end


class Viewers:
    """One ``_logload.py view`` process: started, connected (``ready``), then its result."""

    def __init__(self, work: Path, tag: str, count: int, seconds: float, **options: Any) -> None:
        self.out = work / f"{tag}.times"
        self.count = count
        command = [PYTHON, LOADER, "view", f"--count={count}", f"--seconds={seconds}"]
        command += [f"--out={self.out}"]
        command += [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.timeout = seconds + 60.0
        self.ready_cpu = 0.0

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        words = self.process.stdout.readline().split()
        if not words or words[0] != "ready":
            self.process.kill()
            raise RuntimeError(f"viewers did not connect (exit {self.process.wait()})")
        self.ready_cpu = float(words[1])

    def result(self) -> ViewerResult:
        try:
            text, _ = self.process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        report = json.loads(text)
        data = array("q")
        data.frombytes(self.out.read_bytes())
        viewers = report["viewers"]
        times = [data[i * self.count : (i + 1) * self.count] for i in range(len(viewers))]
        return ViewerResult(viewers, times, report["cpu"] - self.ready_cpu)


def cpu_wait_seconds(pid: int) -> float:
    """Seconds the threads of ``pid`` have spent runnable but waiting for a CPU (the second
    field of ``/proc/<pid>/task/*/schedstat``): on a shared machine, what slowed it besides
    its own work."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return math.nan
    return total / 1e9


def run_loader(*args: str, timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [PYTHON, LOADER, *args], capture_output=True, text=True, timeout=timeout, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class RssSampler:
    """The peak RSS of ``pid``, sampled every 0.1 s in a thread until ``finish``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, rss_mb(self.pid))

    def finish(self) -> float:
        self._stop.set()
        self._thread.join(5.0)
        return max(self.peak, rss_mb(self.pid))


# -- 1 and 3: lines at a steady rate, one viewer or many ---------------------------------------


@dataclass
class Streamed:
    """Lines written at a steady rate, as each viewer received them."""

    name: str
    written: int
    seconds: float
    latencies: list[list[float]]  # per viewer, ms, of the lines it received
    missing: list[int]  # per viewer
    markers: int
    errors: list[str]
    frames: int
    server_cpu: float  # seconds over the span (nan without a server)
    server_wait: float  # seconds the server was runnable but waited for a CPU
    viewer_cpu: float
    rss: tuple[float, float, float]  # server before the viewers, peak, after they left

    @property
    def all_latencies(self) -> list[float]:
        return [ms for viewer in self.latencies for ms in viewer]

    @property
    def p99s(self) -> list[float]:
        return [percentile(viewer, 99) for viewer in self.latencies if viewer]

    def join(self, other: Streamed) -> Streamed:
        """Two rounds of the same scenario as one."""
        return Streamed(
            name=self.name,
            written=self.written + other.written,
            seconds=self.seconds + other.seconds,
            latencies=[a + b for a, b in zip(self.latencies, other.latencies, strict=True)],
            missing=[a + b for a, b in zip(self.missing, other.missing, strict=True)],
            markers=self.markers + other.markers,
            errors=self.errors + other.errors,
            frames=self.frames + other.frames,
            server_cpu=self.server_cpu + other.server_cpu,
            server_wait=self.server_wait + other.server_wait,
            viewer_cpu=self.viewer_cpu + other.viewer_cpu,
            rss=(self.rss[0], max(self.rss[1], other.rss[1]), other.rss[2]),
        )


def stream(
    name: str,
    work: Path,
    path: Path,
    viewer_options: list[dict[str, Any]],
    rate: float,
    seconds: float,
    server_pid: int | None,
) -> Streamed:
    """Write ``rate`` lines/s to ``path`` for ``seconds`` to viewer processes, one per dict of
    ``viewer_options`` (``url`` and ``viewers``, or ``mode="inotify"`` and ``path``)."""
    count = int(rate * seconds)
    path.touch()
    rss_before = rss_mb(server_pid) if server_pid else math.nan
    groups = [
        Viewers(work, f"{path.stem}-{i}", count, seconds + 30.0, **options)
        for i, options in enumerate(viewer_options)
    ]
    for group in groups:
        group.wait_ready()
    time.sleep(0.3)  # let every subscription settle outside the measured span
    sampler = RssSampler(server_pid) if server_pid else None
    cpu_before = cpu_seconds(server_pid) if server_pid else math.nan
    wait_before = cpu_wait_seconds(server_pid) if server_pid else math.nan
    started = time.monotonic()
    times_path = work / f"{path.stem}.written"
    run_loader(
        "write",
        f"--path={path}",
        f"--times={times_path}",
        f"--rate={rate}",
        f"--count={count}",
        f"--seconds={seconds + 5.0}",
        f"--line-bytes={LINE_BYTES}",
        timeout=seconds + 60.0,
    )
    written = array("q")
    written.frombytes(times_path.read_bytes())
    results = [group.result() for group in groups]
    span = time.monotonic() - started
    server_cpu = cpu_seconds(server_pid) - cpu_before if server_pid else math.nan
    server_wait = cpu_wait_seconds(server_pid) - wait_before if server_pid else math.nan
    rss = (math.nan, math.nan, math.nan)
    if sampler is not None and server_pid:
        peak = sampler.finish()
        time.sleep(1.0)  # the viewers have gone: what the server kept
        rss = (rss_before, peak, rss_mb(server_pid))
    summaries = [v for r in results for v in r.viewers]
    n = sum(1 for t in written if t)
    latencies, missing = [], []
    for times in (t for r in results for t in r.times):
        latencies.append([(times[i] - written[i]) / 1e6 for i in range(n) if times[i]])
        missing.append(sum(1 for i in range(n) if not times[i]))
    return Streamed(
        name=name,
        written=n,
        seconds=span,
        latencies=latencies,
        missing=missing,
        markers=sum(v["markers"] for v in summaries),
        errors=[v["error"] for v in summaries if v["error"]],
        frames=sum(v["frames"] for v in summaries),
        server_cpu=server_cpu,
        server_wait=server_wait,
        viewer_cpu=sum(r.cpu for r in results),
        rss=rss,
    )


def scenario_latency(
    settings: Settings, work: Path, roots: Path, servers: list[Server]
) -> dict[str, Streamed]:
    seconds = settings.latency_seconds / settings.latency_rounds
    roots = _folder(roots, "latency")
    print(
        f"\n-- 1. write -> viewer latency: 50 lines/s, one viewer, {settings.latency_rounds} "
        f"round(s) of {seconds:g} s interleaved"
    )
    runs: dict[str, Streamed] = {}
    for round_ in range(settings.latency_rounds):
        for i, server in enumerate([*servers, None]):
            label = server.name if server else "raw inotify in the viewer (floor)"
            path = roots / f"latency-{round_}-{i}.log"
            if server is None:
                options = {"mode": "inotify", "path": path}
            else:
                options = {"url": server.url(path, "lines=0")}
            run = stream(
                label, work, path, [options], 50.0, seconds, server.pid if server else None
            )
            runs[label] = runs[label].join(run) if label in runs else run
    print_table(
        [*SUMMARY_HEADERS, "missing", "frames", "server CPU µs/line"],
        [
            [
                *summary_row(r.name, r.all_latencies),
                sum(r.missing),
                r.frames or "-",
                r.server_cpu / r.written * 1e6 if r.written else math.nan,
            ]
            for r in runs.values()
        ],
    )
    for r in runs.values():
        for error in r.errors:
            print(f"   {r.name}: {error}")
    return runs


# -- 2: burst ----------------------------------------------------------------------------------


@dataclass
class Burst:
    name: str
    lines: int
    received: int
    seconds: float  # first write -> last line received (or the viewer's end)
    write_seconds: float
    frames: int
    max_frame: int
    markers: list[str]
    error: str
    server_cpu_pct: float
    server_wait_pct: float
    server_peak_rss: float
    viewer_cpu_pct: float

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.received else math.nan

    @property
    def cpu_us_per_line(self) -> float:
        """The server's CPU per line received: its rate on a core of its own, inverted."""
        cpu = self.server_cpu_pct / 100.0 * self.seconds
        return cpu / self.received * 1e6 if self.received else math.nan


def burst(
    name: str, work: Path, path: Path, count: int, viewer: dict[str, Any], server_pid: int | None
) -> Burst:
    path.touch()
    group = Viewers(work, path.stem, count, 120.0, **viewer)
    group.wait_ready()
    time.sleep(0.3)
    sampler = RssSampler(server_pid) if server_pid else None
    cpu_before = cpu_seconds(server_pid) if server_pid else math.nan
    wait_before = cpu_wait_seconds(server_pid) if server_pid else math.nan
    wrote = run_loader(
        "burst", f"--path={path}", f"--count={count}", f"--line-bytes={LINE_BYTES}", timeout=120.0
    )
    result = group.result()
    server_cpu = cpu_seconds(server_pid) - cpu_before if server_pid else math.nan
    server_wait = cpu_wait_seconds(server_pid) - wait_before if server_pid else math.nan
    peak = sampler.finish() if sampler else math.nan
    v = result.viewers[0]
    span = max(((v["last"] if v["received"] else v["ended"]) - wrote["t_first"]) / 1e9, 1e-9)
    return Burst(
        name=name,
        lines=count,
        received=v["received"],
        seconds=span,
        write_seconds=(wrote["t_last"] - wrote["t_first"]) / 1e9,
        frames=v["frames"],
        max_frame=v["max_frame"],
        markers=v["marker_samples"] if v["markers"] else [],
        error=v["error"],
        server_cpu_pct=100.0 * server_cpu / span,
        server_wait_pct=100.0 * server_wait / span,
        server_peak_rss=peak,
        viewer_cpu_pct=100.0 * result.cpu / span,
    )


def read_back(path: Path) -> tuple[int, float]:
    """Lines in ``path`` and the seconds to read them in Python, line by line (best of 3)."""
    best = math.inf
    lines = 0
    for _ in range(3):
        started = time.perf_counter()
        lines = 0
        with open(path, "rb") as f:
            for _line in f:
                lines += 1
        best = min(best, time.perf_counter() - started)
    return lines, best


def scenario_burst(
    settings: Settings, work: Path, roots: Path, daemon: DaemonServer, original: BaselineServer
) -> dict[str, list[Burst]]:
    count, repeats = settings.burst_lines, settings.burst_repeats
    roots = _folder(roots, "burst")
    print(
        f"\n-- 2. burst: {count:,} lines of {LINE_BYTES} bytes appended as fast as possible; "
        f"{repeats} round(s), medians (the original design: once)"
    )
    runs: dict[str, list[Burst]] = {}
    for round_ in range(repeats):
        targets: list[tuple[str, Server | None, dict[str, Any]]] = [
            (daemon.name, daemon, {}),
            (f"{daemon.name}, client without permessage-deflate", daemon, {"compression": "none"}),
        ]
        if round_ == 0:
            targets.append((original.name, original, {}))
        targets.append(("raw inotify in the viewer (ceiling)", None, {}))
        for i, (name, server, options) in enumerate(targets):
            path = roots / f"burst-{round_}-{i}.log"
            if server is None:
                viewer = {"mode": "inotify", "path": path}
            else:
                viewer = {"url": server.url(path, "lines=0"), **options}
            pid = server.pid if server else None
            runs.setdefault(name, []).append(burst(name, work, path, count, viewer, pid))
    read_lines, read_seconds = read_back(roots / "burst-0-0.log")

    def row(name: str, group: list[Burst]) -> list[object]:
        failed = all(b.error for b in group)
        return [
            name,
            len(group),
            min(b.received for b in group),
            median([b.seconds for b in group]),
            "failed" if failed else median([b.rate for b in group]),
            (round(median([b.frames for b in group])) or "-") if not failed else "-",
            max(b.max_frame for b in group) or "-",
            median([b.cpu_us_per_line for b in group]) if not failed else math.nan,
            median([b.server_cpu_pct for b in group]),
            median([b.server_wait_pct for b in group]),
            max(b.server_peak_rss for b in group),
            median([b.viewer_cpu_pct for b in group]),
        ]

    rows = [row(name, group) for name, group in runs.items()]
    rows.append(
        [
            "the file read back in Python, line by line (ceiling)",
            3,
            read_lines,
            read_seconds,
            read_lines / read_seconds,
            "-",
            "-",
            math.nan,
            math.nan,
            math.nan,
            math.nan,
            math.nan,
        ]
    )
    print_table(
        [
            "",
            "runs",
            "lines received",
            "seconds",
            "lines/s",
            "frames",
            "largest frame B",
            "server CPU µs/line",
            "server CPU %",
            "waiting for a CPU %",
            "server peak RSS MB",
            "viewer CPU %",
        ],
        rows,
    )
    writes = [b.write_seconds for group in runs.values() for b in group]
    print(
        f"   (seconds: from the first write to the last line received; the writer took "
        f"{median(writes):.2f} s to append them, {-(-count // 1000)} writes of 1,000 lines; "
        "'lines received': the fewest of the runs; the read-back: best of 3)"
    )
    for name, group in runs.items():
        for b in group:
            if b.error:
                print(f"   {name}: ended by {b.error}, {b.seconds:.2f} s after the first write")
            if b.markers:
                print(f"   {name}: markers, e.g. {b.markers[0]!r}")
    if repeats > 1:
        rates = ", ".join(f"{b.rate:,.0f}" for b in runs[daemon.name])
        print(f"   {daemon.name}, each round: {rates} lines/s")
    return runs


# -- 3: fan-out --------------------------------------------------------------------------------


def scenario_fanout(
    settings: Settings, work: Path, roots: Path, servers: list[Server]
) -> list[Streamed]:
    viewers, seconds, rate = settings.fan_viewers, settings.fan_seconds, settings.fan_rate
    roots = _folder(roots, "fanout")
    print(
        f"\n-- 3. fan-out: {viewers} viewers ({VIEWER_PROCESSES} processes) of one file, "
        f"{rate:,.0f} lines/s for {seconds:g} s"
    )
    shares = [viewers // VIEWER_PROCESSES] * VIEWER_PROCESSES
    shares[0] += viewers % VIEWER_PROCESSES
    fans: list[Streamed] = []
    for server in servers:
        path = roots / f"fanout-{len(fans)}.log"
        options = [{"url": server.url(path, "lines=0"), "viewers": n} for n in shares]
        fans.append(stream(server.name, work, path, options, rate, seconds, server.pid))
    print_table(
        [
            "",
            "viewers",
            "median viewer's p99 ms",
            "worst viewer's p99 ms",
            "all lines p50 ms",
            "missing",
            "frames",
            "RSS before / peak / after MB",
            "server CPU %",
            "waiting for a CPU %",
            "viewers CPU %",
        ],
        [
            [
                f.name,
                len(f.latencies),
                median(f.p99s),
                max(f.p99s, default=math.nan),
                percentile(f.all_latencies, 50),
                sum(f.missing),
                f.frames,
                "{:.1f} / {:.1f} / {:.1f}".format(*f.rss),
                100.0 * f.server_cpu / f.seconds,
                100.0 * f.server_wait / f.seconds,
                100.0 * f.viewer_cpu / f.seconds,
            ]
            for f in fans
        ],
    )
    print(
        f"   (CPU % of one core over the span; {os.cpu_count()} cores for the server, the "
        "viewers and the writer; 'waiting for a CPU': the server was runnable but another "
        "process had the cores; 'after': 1 s after the viewers left)"
    )
    for f in fans:
        for error in sorted(set(f.errors))[:3]:
            print(f"   {f.name}: {f.errors.count(error)} viewer(s) ended by {error}")
        if f.markers:
            print(f"   {f.name}: {f.markers} marker lines (skips)")
    return fans


# -- 4: the last lines of a big file -----------------------------------------------------------


async def fetch(url: str) -> tuple[float, int]:
    """Connect, receive until the server closes: (ms, lines received)."""
    from websockets.asyncio.client import connect

    started = time.perf_counter()
    lines = 0
    async with connect(url) as ws:
        async for frame in ws:
            lines += str(frame).count("\n") + 1
    return (time.perf_counter() - started) * 1000.0, lines


def time_tail(path: Path, count: int) -> tuple[float, int]:
    started = time.perf_counter()
    out = subprocess.run(["tail", "-n", str(count), str(path)], capture_output=True, check=True)
    return (time.perf_counter() - started) * 1000.0, out.stdout.count(b"\n")


def time_tailread(path: Path, count: int) -> tuple[float, int]:
    from heartwatch.logview.tailread import read_last_lines

    started = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        tail = read_last_lines(
            lambda offset, size: os.pread(fd, size, offset), os.fstat(fd).st_size, count
        )
    finally:
        os.close(fd)
    return (time.perf_counter() - started) * 1000.0, len(tail.lines)


def make_files(roots: Path, tail_lines: int) -> tuple[Path, Path]:
    """A sparse 1 GiB file then ``tail_lines`` short lines; a 100 MB file of 100-byte lines."""
    big = roots / "sparse-1g.log"
    with open(big, "wb") as f:
        f.truncate(1 << 30)
        f.seek(0, os.SEEK_END)
        f.write(b"".join(f"{i:06d} a short line\n".encode() for i in range(tail_lines)))
    medium = roots / "real-100m.log"
    with open(medium, "wb") as f:
        block = b"".join(
            f"{i:09d} ".encode() + b"x" * (LINE_BYTES - 11) + b"\n" for i in range(10_000)
        )
        for _ in range(100):
            f.write(block)
    return big, medium


def scenario_tail(
    settings: Settings, roots: Path, daemon: DaemonServer, original: BaselineServer
) -> dict[str, list[float]]:
    print("\n-- 4. the last 200 lines of a sparse 1 GiB file (+300 lines), interleaved trials")
    big, medium = make_files(_folder(roots, "tail"), 300)
    rows: dict[str, list[float]] = {}
    counts: dict[str, set[int]] = {}
    # Labels in the order the table shows them.
    hw_big = "heartwatch, 1 GiB sparse"
    hw_empty = "heartwatch, lines=0 (connect + close only)"
    tail = "tail -n 200 (subprocess), 1 GiB sparse"
    floor = "heartwatch.logview.tailread in this process (floor), 1 GiB"
    hw_medium = "heartwatch, 100 MB file"
    whole = "original design (reads it whole), 100 MB file"

    def note(label: str, ms: float, lines: int) -> None:
        rows.setdefault(label, []).append(ms)
        counts.setdefault(label, set()).add(lines)

    async def trials() -> None:
        for i in range(settings.tail_trials):
            note(hw_big, *await fetch(daemon.url(big, "lines=200&follow=false")))
            note(hw_empty, *await fetch(daemon.url(big, "lines=0&follow=false")))
            note(tail, *time_tail(big, 200))
            note(floor, *time_tailread(big, 200))
            if i < settings.whole_file_trials:
                note(hw_medium, *await fetch(daemon.url(medium, "lines=200&follow=false")))
                note(whole, *await fetch(original.url(medium, "lines=200&follow=false")))

    rss_before = rss_mb(daemon.pid)
    asyncio.run(trials())
    rss_after = rss_mb(daemon.pid)
    print_table(
        [*SUMMARY_HEADERS, "lines"],
        [
            [*summary_row(label, ms), "/".join(map(str, sorted(counts[label])))]
            for label, ms in rows.items()
        ],
    )
    print(f"   daemon RSS {rss_before:.1f} MB before these trials, {rss_after:.1f} MB after")
    return rows


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    settings = Settings.of(args.quick)
    banner("live logs", args.quick)
    print(
        f"   lines of {LINE_BYTES} bytes; latency {settings.latency_seconds:g} s at 50 lines/s; "
        f"burst {settings.burst_lines:,} lines; fan-out {settings.fan_viewers} viewers at "
        f"{settings.fan_rate:,.0f} lines/s for {settings.fan_seconds:g} s; last 200 lines: "
        f"{settings.tail_trials} trials"
    )
    with Workdir("logs", args.keep) as work:
        roots = work.path / "roots"
        roots.mkdir()
        roots = roots.resolve()
        sections = {"logs": {"roots": [str(roots)]}}
        original = BaselineServer(inotify=False)
        minimal = BaselineServer(inotify=True)
        try:
            with Daemon(work.path / "daemon", [], sections=sections) as daemon:
                hw = DaemonServer(daemon)
                idle_rss = rss_mb(daemon.pid)
                latency = scenario_latency(settings, work.path, roots, [hw, minimal, original])
                bursts = scenario_burst(settings, work.path, roots, hw, original)
                # A fresh daemon: its RSS growth is the fan-out's alone, not the bursts' too.
                with Daemon(work.path / "daemon-fanout", [], sections=sections) as fresh:
                    fans = scenario_fanout(
                        settings, work.path, roots, [DaemonServer(fresh), original]
                    )
                tails = scenario_tail(settings, roots, hw, original)
                end_rss = rss_mb(daemon.pid)
        finally:
            original.close()
            minimal.close()
        errors = "\n".join(
            _stderr_tail(work.path / name / "daemon.stderr") for name in ("daemon", "daemon-fanout")
        ).strip()
        print(
            f"\n   daemon RSS: {idle_rss:.1f} MB idle at the start, {end_rss:.1f} MB at the end "
            "(the fan-out ran on a fresh daemon)"
        )
        _verdicts(latency, bursts, fans, tails)
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"   load average at the end: {load} (this run's own processes included)")
        if errors:
            print("\ndaemon stderr (last lines):\n" + errors)


def _verdicts(
    latency: dict[str, Streamed],
    bursts: dict[str, list[Burst]],
    fans: list[Streamed],
    tails: dict[str, list[float]],
) -> None:
    def p(values: list[float], q: float) -> float:
        return percentile(values, q)

    hw, minimal, original, floor = (r.all_latencies for r in latency.values())
    print()
    p99 = p(hw, 99)
    print(
        f"goal 1, latency at 50 lines/s: p99 <= {GOAL_LATENCY_P99_MS:g} ms: p50 {p(hw, 50):.2f} /"
        f" p99 {p99:.2f} ms (minimal inotify websocket server p50 {p(minimal, 50):.2f} / p99 "
        f"{p(minimal, 99):.2f}; raw inotify p50 {p(floor, 50):.2f} / p99 {p(floor, 99):.2f}; "
        f"original design p50 {p(original, 50):.0f} ms): {verdict(p99 <= GOAL_LATENCY_P99_MS)}"
    )
    group = bursts[DaemonServer.name]
    failed = next(g for name, g in bursts.items() if name.startswith("original"))[0]
    rate = median([b.rate for b in group])
    cpu_us = median([b.cpu_us_per_line for b in group])
    largest = max(b.max_frame for b in group)
    ok = (
        rate >= GOAL_BURST_RATE
        and largest < CLIENT_MAX_SIZE
        and all(b.received == b.lines and not b.error and not b.markers for b in group)
    )
    how = f"failed after {failed.seconds:.2f} s ({failed.error})" if failed.error else "completed"
    print(
        f"goal 2, burst of {group[0].lines:,} lines: >= {GOAL_BURST_RATE:,.0f} lines/s, frames "
        f"< 1 MiB, none lost: {rate:,.0f} lines/s (median of {len(group)}; daemon CPU "
        f"{cpu_us:.2f} µs/line, i.e. {1e6 / cpu_us:,.0f} lines/s on a core of its own), fewest "
        f"received {min(b.received for b in group):,}, largest frame {largest:,} B: "
        f"{verdict(ok)}; the original design {how}"
    )
    f = fans[0]
    growth = f.rss[1] - f.rss[0]
    worst = max(f.p99s, default=math.nan)
    ok = (
        sum(f.missing) == 0
        and not f.errors
        and growth <= GOAL_RSS_GROWTH_MB
        and worst <= GOAL_FANOUT_P99_MS
    )
    print(
        f"goal 3, fan-out to {len(f.latencies)} viewers: none missing, every viewer's p99 <= "
        f"{GOAL_FANOUT_P99_MS:g} ms, RSS growth <= {GOAL_RSS_GROWTH_MB:g} MB: "
        f"{sum(f.missing):,} lines missing, {len(f.errors)} viewer(s) ended early, worst "
        f"viewer's p99 {worst:.1f} ms (median viewer's {median(f.p99s):.1f} ms), RSS "
        f"+{growth:.1f} MB (peak - before): {verdict(ok)}"
    )
    ms = tails["heartwatch, 1 GiB sparse"]
    print(
        f"goal 4, last 200 lines of a 1 GiB file: p99 <= {GOAL_TAIL_P99_MS:g} ms: p50 "
        f"{p(ms, 50):.2f} / p99 {p(ms, 99):.2f} ms: {verdict(p(ms, 99) <= GOAL_TAIL_P99_MS)}"
    )


def _folder(roots: Path, name: str) -> Path:
    """A folder of its own per scenario: a watch on one sees nothing of the others' writes."""
    folder = roots / name
    folder.mkdir(exist_ok=True)
    return folder


def _stderr_tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-5:])
    except OSError:
        return ""


if __name__ == "__main__":
    main()
