"""Ingest throughput: messages per second and daemon CPU per message, beside a minimal server.

Goals (from the issue): >= 200,000 messages/s sustained on persistent connections at <= 5 µs of
daemon CPU per message; the one-object-per-connection framing at >= 50 % of a minimal server's
rate.

Method. The daemon watches 10 watch-only services (``svc-0`` .. ``svc-9``, timeouts of an hour,
log level WARNING). A load generator in its own process (``_loadgen.py``) sends
``{"type": "heartbeat", "service": "svc-N"}`` messages:

- persistent TCP, newline-delimited, over 1, 10 and 100 connections: a pre-built ~84 KB buffer
  ``sendall``-ed round-robin on blocking sockets; then half-close and wait for the server's close,
  which comes only after the server has handled every byte before the end-of-file;
- connect-per-message (the original client's framing: one object, no newline, closed), with 16
  connections in flight from one non-blocking loop, each waiting for the server's close.

Rate = messages / (server closed the last connection - ``go``). CPU per message = the server
process's CPU time (all threads, from ``/proc/<pid>/task/*/schedstat``) over the same span,
divided by the messages. The daemon's own count is checked through ``GET /api/v1/services``
(the ``messages`` field), so the figure is of processed messages, not of bytes sent.

Baseline, same run, same generator, interleaved with the daemon's runs: ``_minimal_server.py``,
an asyncio ``Protocol`` that only counts newlines (and the unterminated tail at end-of-file).
Each scenario runs ``--repeats`` times; medians are reported.

On a small shared machine connect-per-message is bound by the kernel's loopback handshakes as much
as by the server, so its rate ratio flatters the slower server; the CPU-per-message ratio (the
rate each server could reach on a core of its own) is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from _common import (
    BENCH_DIR,
    PYTHON,
    Daemon,
    Prober,
    Workdir,
    banner,
    close_stdin_and_wait,
    cpu_seconds,
    median,
    parse_args,
    print_table,
    verdict,
)

SERVICES = 10
GOAL_RATE = 200_000.0
GOAL_CPU_US = 5.0
GOAL_CPM_RATIO = 0.5


class Target(Protocol):
    name: str
    pid: int
    port: int

    def count(self) -> int: ...


class MinimalServer:
    name = "minimal asyncio server"

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [PYTHON, str(BENCH_DIR / "_minimal_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.pid = self.process.pid

    def count(self) -> int:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        close_stdin_and_wait(self.process)


class DaemonTarget:
    name = "heartwatch"

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.pid = daemon.pid
        self.port = daemon.tcp[1]

    def count(self) -> int:
        return self.daemon.total_messages()

    def probe(self) -> None:
        self.daemon.get("/api/v1/services", timeout=60.0)


@dataclass(frozen=True)
class Run:
    sent: int
    processed: int
    seconds: float
    server_cpu: float
    gen_send_seconds: float
    gen_cpu: float
    probe_ms: list[float]

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.server_cpu / self.sent * 1e6

    @property
    def server_cpu_pct(self) -> float:
        return 100.0 * self.server_cpu / self.seconds

    @property
    def gen_rate(self) -> float:
        return self.sent / self.gen_send_seconds

    @property
    def gen_cpu_pct(self) -> float:
        return 100.0 * self.gen_cpu / self.seconds


def run_once(target: Target, mode: str, connections: int, messages: int, seconds: float) -> Run:
    before = target.count()
    generator = subprocess.Popen(
        [
            PYTHON,
            str(BENCH_DIR / "_loadgen.py"),
            mode,
            f"--port={target.port}",
            f"--connections={connections}",
            f"--messages={messages}",
            f"--seconds={seconds}",
            f"--services={SERVICES}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert generator.stdin is not None
    assert generator.stdout is not None
    try:
        if generator.stdout.readline().strip() != "ready":
            raise RuntimeError("load generator failed to connect")
        time.sleep(0.2)  # let the accepts settle outside the measured span
        cpu_before = cpu_seconds(target.pid)
        generator.stdin.write("go\n")
        generator.stdin.flush()
        prober = Prober(target.probe) if isinstance(target, DaemonTarget) else None
        result = json.loads(generator.stdout.readline())
        cpu_after = cpu_seconds(target.pid)
        probe_ms = prober.finish() if prober is not None else []
        generator.wait(30)
    finally:
        if generator.poll() is None:
            generator.kill()
            generator.wait()
    processed = target.count() - before
    return Run(
        sent=int(result["sent"]),
        processed=processed,
        seconds=result["t_end"] - result["t_go"],
        server_cpu=cpu_after - cpu_before,
        gen_send_seconds=max(result["t_sent"] - result["t_go"], 1e-9),
        gen_cpu=result["cpu"],
        probe_ms=probe_ms,
    )


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _options)
    repeats = args.repeats or (1 if args.quick else 3)
    persistent_messages = 300_000 if args.quick else 1_000_000
    cpm_messages = 5_000 if args.quick else 15_000
    limit = 10.0 if args.quick else 20.0  # seconds of sending at most, per run
    scenarios = [
        ("persistent, 1 connection", "persistent", 1, persistent_messages),
        ("persistent, 10 connections", "persistent", 10, persistent_messages),
        ("persistent, 100 connections", "persistent", 100, persistent_messages),
        ("connect per message, 16 in flight", "per-connection", 16, cpm_messages),
    ]
    banner("ingest throughput", args.quick)
    print(
        f"   {SERVICES} watch-only services; {repeats} repeat(s) per scenario, medians shown; "
        f"persistent runs of {persistent_messages:,} messages, per-connection runs of "
        f"{cpm_messages:,}"
    )
    services = [
        {"name": f"svc-{i}", "heartbeat_timeout": "1h", "startup_grace": "1h"}
        for i in range(SERVICES)
    ]
    runs: dict[tuple[str, str], list[Run]] = {}
    with Workdir("ingest", args.keep) as work, Daemon(work.path / "daemon", services) as daemon:
        minimal = MinimalServer()
        try:
            daemon_target = DaemonTarget(daemon)
            targets: list[Target] = [minimal, daemon_target]
            idle_ms = []
            for _ in range(10):
                started = time.perf_counter()
                daemon_target.probe()
                idle_ms.append((time.perf_counter() - started) * 1000.0)
            for _ in range(repeats):
                for label, mode, connections, messages in scenarios:
                    for target in targets:
                        run = run_once(target, mode, connections, messages, limit)
                        runs.setdefault((label, target.name), []).append(run)
                        if run.processed != run.sent:
                            print(
                                f"   WARNING {target.name}, {label}: sent {run.sent:,} but "
                                f"processed {run.processed:,}"
                            )
        finally:
            minimal.close()
        errors = _stderr_tail(work.path / "daemon" / "daemon.stderr")
    _report(scenarios, runs, repeats, idle_ms)
    print()
    print("where the daemon's time goes: its hot path timed in this process, per message")
    try:
        print_table(["stage", "µs/msg"], hot_path_breakdown())
    except Exception as error:  # internals move; the throughput figures above stand alone
        print(f"   (breakdown unavailable: {error!r})")
    if errors:
        print("\ndaemon stderr (last lines):\n" + errors)


def hot_path_breakdown() -> list[list[object]]:
    """µs per message of each stage of the daemon's hot path, timed in this process.

    Uses heartwatch's internals (``wire``, ``Watchdog``); for seeing where the time goes."""
    import orjson

    from heartwatch.config import parse_config
    from heartwatch.core.watchdog import Watchdog
    from heartwatch.core.wire import LineDecoder, parse_message

    lines = [
        json.dumps({"type": "heartbeat", "service": f"svc-{i % SERVICES}"}).encode()
        for i in range(2000)
    ]
    chunk = b"\n".join(lines) + b"\n"
    names = [f"svc-{i}" for i in range(SERVICES)]
    config = parse_config(
        {"service": [{"name": n, "heartbeat_timeout": "1h", "startup_grace": "1h"} for n in names]}
    )
    watchdog = Watchdog([service.spec() for service in config.service])
    watchdog.receive_start(names, 0.0, "bench")
    for name in names:
        watchdog.receive_message(name, "heartbeat", 1.0)
    watchdog.actions_to_take()
    watchdog.events_to_take()
    messages = [parse_message(line) for line in lines]
    decoder = LineDecoder()

    def per_message(stage: Callable[[], object]) -> float:
        best = min(timeit.repeat(stage, number=20, repeat=5))
        return best / 20 / len(lines) * 1e6

    def feed_watchdog() -> None:
        for m in messages:
            watchdog.receive_message(m.service or "", m.kind, 2.0)

    def split() -> None:
        decoder.receive_data(chunk)

    def parse() -> None:
        for line in lines:
            parse_message(line)

    def decode() -> None:
        for line in lines:
            orjson.loads(line)

    def stdlib_loads() -> None:
        for line in lines:
            json.loads(line)

    return [
        ["LineDecoder.receive_data (split an 84 KB chunk)", per_message(split)],
        ["wire.parse_message (decode + checks + Message)", per_message(parse)],
        ["  of which the JSON decoder (orjson) alone", per_message(decode)],
        ["Watchdog.receive_message", per_message(feed_watchdog)],
        ["for comparison: the standard library's json.loads", per_message(stdlib_loads)],
    ]


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=0, help="runs per scenario")


def _stderr_tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-5:])
    except OSError:
        return ""


def _report(
    scenarios: list[tuple[str, str, int, int]],
    runs: dict[tuple[str, str], list[Run]],
    repeats: int,
    idle_ms: list[float],
) -> None:
    rows = []
    ratios: dict[str, float] = {}
    figures: dict[str, tuple[float, float]] = {}
    for label, _, _, _ in scenarios:
        base_rate = median([r.rate for r in runs[label, MinimalServer.name]])
        for name in (MinimalServer.name, DaemonTarget.name):
            group = runs[label, name]
            rate = median([r.rate for r in group])
            cpu_us = median([r.cpu_us for r in group])
            probes = [ms for r in group for ms in r.probe_ms]
            rows.append(
                [
                    label if name == MinimalServer.name else "",
                    name,
                    rate,
                    f"{rate / base_rate:.0%}",
                    cpu_us,
                    median([r.server_cpu_pct for r in group]),
                    median([r.gen_rate for r in group]),
                    median([r.gen_cpu_pct for r in group]),
                    "yes" if all(r.processed == r.sent for r in group) else "NO",
                    f"{median(probes):.0f} / {max(probes):.0f}" if probes else "-",
                ]
            )
            if name == DaemonTarget.name:
                ratios[label] = rate / base_rate
                figures[label] = (rate, cpu_us)
    print()
    print_table(
        [
            "scenario",
            "server",
            "msgs/s",
            "vs min",
            "CPU µs/msg",
            "server CPU %",
            "gen send msgs/s",
            "gen CPU %",
            "all counted",
            "API ms p50/max",
        ],
        rows,
    )
    print(
        "\n(msgs/s and CPU are medians of the runs; 'gen send msgs/s' is how fast the generator"
        " handed bytes to the kernel, which a slower server holds back; 'API ms' is how long"
        " GET /api/v1/services took during the run, every 0.2 s: the daemon's event-loop lag,"
        f" which a heartbeat deadline's timer suffers too; idle: p50 {median(idle_ms):.1f} ms)"
    )
    print()
    persistent = [label for label, mode, _, _ in scenarios if mode == "persistent"]
    for label in persistent:
        rate, cpu_us = figures[label]
        ok = rate >= GOAL_RATE and cpu_us <= GOAL_CPU_US
        print(
            f"goal {label}: >= {GOAL_RATE:,.0f} msgs/s at <= {GOAL_CPU_US:g} µs/msg: "
            f"{rate:,.0f} msgs/s at {cpu_us:.2f} µs/msg: {verdict(ok)}"
        )
    for label, mode, _, _ in scenarios:
        if mode == "per-connection":
            ratio = ratios[label]
            capacity = median([r.cpu_us for r in runs[label, MinimalServer.name]]) / median(
                [r.cpu_us for r in runs[label, DaemonTarget.name]]
            )
            print(
                f"goal {label}: >= {GOAL_CPM_RATIO:.0%} of the minimal server's rate: "
                f"{ratio:.0%}: {verdict(ratio >= GOAL_CPM_RATIO)} (CPU per message: heartwatch "
                f"needs {1 / capacity:.1f}x the minimal server's, i.e. {capacity:.0%} of its "
                "rate if each were CPU-bound)"
            )
    if repeats < 3:
        print(f"   note: {repeats} repeat(s) only; run without --quick for steadier medians")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
