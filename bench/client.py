"""The client library's cost in the caller: ``Heartbeat.beat()`` and its throughput.

Goals (issue 3): ``beat()`` p50 <= 15 µs and p99 <= 100 µs when connected; p99 <= 100 µs when
the daemon is down, and when its address does not answer at all (a connect never blocks the
caller). Throughput of one client sending to the daemon, beside raw socket sends in the same run.

Method. Each call is timed alone with ``perf_counter_ns`` around it, with a short sleep between
calls (as a worker loop beats between pieces of work, not in a tight loop); percentiles over
``CALLS`` calls. Conditions:

- *connected*: a real daemon (watch-only service, so no process is spawned);
- *daemon down*: a port that is bound but not listening, so every connect is refused at once;
- *no answer*: a listener whose accept queue is full, so the handshake never completes and a
  blocking connect would hang; the client's connect must stay in the background;
- *baselines*: ``sock.send`` of the same heartbeat line on a connected non-blocking socket (the
  least a beat that sends can cost), and an empty call, timed the same way: its tail is this
  machine's scheduling noise, which every row's p99 carries too.

``beat()`` is rate-limited (``min_interval``, 50 ms): most calls only mark a beat pending. The
row "min_interval=0" shows what a system call per beat costs here, for comparison.

Throughput: one client calling ``event()`` as fast as it can for a few seconds, counted by the
daemon (``GET /api/v1/services``), beside raw ``sendall`` of one pre-encoded line per call (what
``event()`` does, as each event is sent at once) and of 1000 lines per call (the ceiling).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from functools import partial

from _common import (
    Daemon,
    Workdir,
    banner,
    median,
    parse_args,
    percentile,
    print_table,
    verdict,
    wait_until,
)
from heartwatch import Heartbeat

LINE = b'{"type":"heartbeat","service":"svc"}\n'


def time_calls(call: Callable[[], object], calls: int, pause: float = 0.0002) -> list[float]:
    """Microseconds per call, each timed alone."""
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - start) / 1000)
        if pause:
            time.sleep(pause)
    return samples


def median_of(rounds_of: list[list[float]], p: float) -> float:
    """The median over rounds of each round's ``p``-th percentile."""
    return median([percentile(samples, p) for samples in rounds_of])


def row(label: str, rounds_of: list[list[float]]) -> list[object]:
    return [
        label,
        sum(len(samples) for samples in rounds_of),
        median_of(rounds_of, 50),
        median_of(rounds_of, 90),
        median_of(rounds_of, 99),
        max(max(samples) for samples in rounds_of),
    ]


def connect(client: Heartbeat) -> Heartbeat:
    """Beat until connected (a connect completes in the background of calls)."""

    def beat_until_connected() -> bool:
        client.beat()
        return client.connected

    wait_until(beat_until_connected, 5)
    return client


def counted_at_least(daemon: Daemon, target: int) -> bool:
    return daemon.total_messages() >= target


def throughput(daemon: Daemon, address: tuple[str, int], seconds: float) -> dict[str, float]:
    """Messages per second one client gets counted by the daemon, and raw sends beside it."""
    rates = {}
    before = daemon.total_messages()
    hb = Heartbeat("svc", address, max_events=1_000_000)
    sent, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(1000):
            hb.event("item")
        sent += 1000
    hb.flush(30)
    wait_until(lambda: daemon.total_messages() - before >= sent, 60)
    rates["Heartbeat.event()"] = sent / seconds
    hb.close()
    line = b'{"type":"item","service":"svc"}\n'
    for label, payload, per_call in (
        ("raw sendall, one line per call", line, 1),
        ("raw sendall, 1000 pre-encoded lines per call", line * 1000, 1000),
    ):
        before = daemon.total_messages()
        sent, deadline = 0, time.monotonic() + seconds
        with socket.create_connection(address) as raw:
            while time.monotonic() < deadline:
                raw.sendall(payload)
                sent += per_call
        wait_until(partial(counted_at_least, daemon, before + sent), 60)
        rates[label] = sent / seconds
    return rates


def refused_address() -> tuple[socket.socket, tuple[str, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    return sock, sock.getsockname()


def silent_address() -> tuple[list[socket.socket], tuple[str, int]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    address = server.getsockname()
    held = [server]
    for _ in range(16):  # fill the accept queue: further handshakes get no answer
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(address)
        held.append(filler)
    return held, address


def main() -> None:
    args = parse_args(__doc__ or "")
    calls = 5_000 if args.quick else 20_000
    seconds = 2.0 if args.quick else 5.0
    banner("client: beat() cost in the caller, and throughput", args.quick)
    rounds = 1 if args.quick else 3
    results: dict[str, list[list[float]]] = {}
    rates: dict[str, float] = {}
    with Workdir("client", keep=args.keep) as work:
        services = [{"name": "svc", "heartbeat_timeout": "1h"}]
        with Daemon(work.path / "daemon", services) as daemon:
            address = daemon.tcp
            connected = connect(Heartbeat("svc", address))
            every = connect(Heartbeat("svc", address, min_interval=0))
            raw = socket.create_connection(address)
            raw.setblocking(False)
            refused, refused_at = refused_address()
            down = Heartbeat("svc", refused_at)
            held, silent_at = silent_address()
            silent = Heartbeat("svc", silent_at, connect_timeout=0.5)
            conditions: dict[str, Callable[[], object]] = {
                "baseline: an empty call (the timing floor)": lambda: None,
                "baseline: sock.send of the line": lambda: raw.send(LINE),
                "beat(), connected": connected.beat,
                "beat(), min_interval=0 (a send per call)": every.beat,
                "beat(), daemon down (refused)": down.beat,
                "beat(), address not answering": silent.beat,
            }
            for _ in range(rounds):  # interleaved, so a noisy minute hits every condition
                for label, call in conditions.items():
                    results.setdefault(label, []).append(time_calls(call, calls))
            for client in (connected, every, down, silent):
                client.close()
            raw.close()
            refused.close()
            for sock in held:
                sock.close()
            rates.update(throughput(daemon, address, seconds))

    print()
    print_table(
        ["condition", "calls", "p50 µs", "p90 µs", "p99 µs", "max µs"],
        [row(label, rounds_of) for label, rounds_of in results.items()],
    )
    if rounds > 1:
        print(f"(percentiles: the median over {rounds} interleaved rounds of {calls:,} calls)")
    print()
    print_table(
        ["one client, as fast as it can", "msgs/s (counted by the daemon)"],
        [[label, rate] for label, rate in rates.items()],
    )
    print()
    p50 = median_of(results["beat(), connected"], 50)
    p99 = median_of(results["beat(), connected"], 99)
    print(
        f"goal connected p50 <= 15 µs, p99 <= 100 µs: {p50:.1f} / {p99:.1f} µs: "
        f"{verdict(p50 <= 15 and p99 <= 100)}"
    )
    for label in ("beat(), daemon down (refused)", "beat(), address not answering"):
        p99 = median_of(results[label], 99)
        print(f"goal {label}: p99 <= 100 µs: {p99:.1f} µs: {verdict(p99 <= 100)}")


if __name__ == "__main__":
    main()
