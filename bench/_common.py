"""Helpers shared by the benchmark scripts: statistics, tables, process CPU, and the daemon.

Every benchmark prints its figures beside a baseline measured in the same run, because the
machines these run on are shared and noisy: compare the ratio, not the absolute figure.

``Daemon`` runs ``python -m heartwatch run -c <config>`` as a subprocess with a configuration
generated into a fresh temporary folder (TCP and HTTP on 127.0.0.1 port 0), waits for
``<state_dir>/daemon.json`` to learn its pid and ports, and on exit stops it and makes sure no
child it started survives.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

PYTHON = sys.executable
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

TomlValue = str | int | float | bool | Sequence[Any] | Mapping[str, Any]


# -- arguments and output ------------------------------------------------------------------


def parse_args(
    description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a shorter run (fewer trials)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (configs, logs)"
    )
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def banner(title: str, quick: bool) -> None:
    cpus = os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"== {title}{' (--quick)' if quick else ''}")
    print(
        f"   {time.strftime('%Y-%m-%d %H:%M:%S')}  python {platform.python_version()}  "
        f"{cpus} cpu(s)  load average {load}"
    )


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print rows as an aligned plain-text table (numbers right-aligned)."""
    text_rows = [[_cell(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    print(
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    )
    print("  ".join("-" * w for w in widths))
    for row in text_rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


# -- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def summary_row(label: str, values_ms: Sequence[float]) -> list[object]:
    """``label, n, min, p50, p90, p99, max`` (values in milliseconds)."""
    return [
        label,
        len(values_ms),
        min(values_ms) if values_ms else math.nan,
        percentile(values_ms, 50),
        percentile(values_ms, 90),
        percentile(values_ms, 99),
        max(values_ms) if values_ms else math.nan,
    ]


SUMMARY_HEADERS = ["", "n", "min ms", "p50 ms", "p90 ms", "p99 ms", "max ms"]


# -- process measurements --------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by every thread of ``pid``, in seconds (nanosecond precision when
    ``/proc/<pid>/task/*/schedstat`` is readable, else the clock-tick figures of psutil)."""
    total_ns = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total_ns += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    return total_ns / 1e9


def voluntary_switches(pid: int) -> int:
    """Voluntary context switches of ``pid``'s main thread: each is a wait that ended in a
    wake-up (for an event loop, one per ``epoll_wait`` that had to sleep)."""
    return int(psutil.Process(pid).num_ctx_switches().voluntary)


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def end_process_tree(process: psutil.Process, timeout: float = 5.0) -> None:
    """SIGTERM ``process`` and its descendants, SIGKILL what is left after ``timeout``."""
    with contextlib.suppress(psutil.Error):
        family = [process, *process.children(recursive=True)]
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(family, timeout=timeout)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()


# -- the daemon ----------------------------------------------------------------------------


def close_stdin_and_wait(process: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """End a helper process that runs until its stdin closes; kill it if it takes too long."""
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def toml_value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


def render_config(
    services: Sequence[Mapping[str, TomlValue]],
    *,
    log_level: str = "WARNING",
    server: Mapping[str, TomlValue] | None = None,
    sections: Mapping[str, Mapping[str, TomlValue]] | None = None,
) -> str:
    lines = [
        "[server]",
        'tcp = "127.0.0.1:0"',
        'http = "127.0.0.1:0"',
        *(f"{k} = {toml_value(v)}" for k, v in (server or {}).items()),
        "",
        "[daemon]",
        'state_dir = "state"',
        'log_dir = "logs"',
        f'log_level = "{log_level}"',
    ]
    for name, table in (sections or {}).items():  # further tables, e.g. "logs": {"roots": [...]}
        lines += ["", f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    for service in services:
        lines += ["", "[[service]]", *(f"{k} = {toml_value(v)}" for k, v in service.items())]
    return "\n".join(lines) + "\n"


class Workdir:
    """A temporary folder for one benchmark run, removed at the end unless ``keep``."""

    def __init__(self, prefix: str, keep: bool = False) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"hw-bench-{prefix}-"))
        self.keep = keep

    def write(self, name: str, text: str) -> Path:
        path = self.path / name
        path.write_text(text)
        return path

    def __enter__(self) -> Workdir:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.keep:
            print(f"   (kept {self.path})")
        else:
            shutil.rmtree(self.path, ignore_errors=True)


class Daemon:
    """``heartwatch run`` as a subprocess, with a generated configuration in ``folder``."""

    def __init__(
        self,
        folder: Path,
        services: Sequence[Mapping[str, TomlValue]],
        *,
        log_level: str = "WARNING",
        server: Mapping[str, TomlValue] | None = None,
        sections: Mapping[str, Mapping[str, TomlValue]] | None = None,
        command: Sequence[str] = (PYTHON, "-m", "heartwatch"),
    ) -> None:
        self.folder = folder
        self.command = list(command)  # then "run -c <config>"; another entry point for A/B runs
        folder.mkdir(parents=True, exist_ok=True)
        self.config_path = folder / "heartwatch.toml"
        self.config_path.write_text(
            render_config(services, log_level=log_level, server=server, sections=sections)
        )
        self.stderr_path = folder / "daemon.stderr"
        self.log_path = folder / "logs" / "heartwatch.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0
        self.tcp: tuple[str, int] = ("127.0.0.1", 0)
        self.http = ""

    def start(self, timeout: float = 20.0) -> Daemon:
        info_path = self.folder / "state" / "daemon.json"
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [*self.command, "run", "-c", str(self.config_path)],
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"daemon exited with {self.process.returncode}: "
                    + self.stderr_path.read_text()[-2000:]
                )
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(info_path.read_text())
                if info.get("pid") == self.process.pid and info.get("http"):
                    host, port = str(info["tcp"]).rsplit(":", 1)
                    self.pid = self.process.pid
                    self.tcp = (host.strip("[]"), int(port))
                    self.http = str(info["http"])
                    return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"daemon did not write {info_path} within {timeout} s")

    def get(self, path: str, timeout: float = 10.0) -> Any:
        with urllib.request.urlopen(f"http://{self.http}{path}", timeout=timeout) as response:
            return json.loads(response.read())

    def services(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/services")
        return result

    def total_messages(self) -> int:
        return sum(int(s["messages"]) for s in self.services())

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def stop(self, timeout: float = 30.0) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is not None:
            return
        try:
            family = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            family = []
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for child in family:  # a worker must never outlive its benchmark
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def git(*argv: str) -> bytes:
    """A git command in the project's checkout; its standard output."""
    return subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, check=True).stdout


def snapshot_src(into: Path, revision: str | None, work_tree_files: Sequence[str]) -> Path:
    """A ``src`` to run a daemon from, for comparing code in one run: the last commit with
    ``work_tree_files`` as they are in the work tree (others' unfinished edits elsewhere stay
    out), or the whole ``src`` of ``revision`` (its modules may have moved since, so swapping
    single files into today's tree would not import)."""
    into.mkdir(parents=True)
    archive = into / "src.tar"
    archive.write_bytes(git("archive", revision or "HEAD", "src"))
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    if revision is None:
        for name in work_tree_files:
            shutil.copyfile(ROOT / name, into / name)
    return into / "src"


class Prober:
    """While a run lasts, time ``probe()`` (a ``GET /api/v1/services``) every 0.2 s: how long
    the daemon's event loop keeps anything else (an HTTP request, a timer such as a heartbeat
    deadline) waiting."""

    def __init__(self, probe: Callable[[], object]) -> None:
        self.probe = probe
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            started = time.perf_counter()
            self.probe()
            self.latencies_ms.append((time.perf_counter() - started) * 1000.0)

    def finish(self) -> list[float]:
        self._stop.set()
        self._thread.join(60.0)
        return self.latencies_ms


# How the benches start Debian's Chromium headless (as tests/browser/support.py does for the
# tests): no GPU, no sandbox (root), nothing that talks to the network behind the measurement.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
