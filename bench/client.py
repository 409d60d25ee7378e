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
- *baseline*: ``sock.send`` of the same heartbeat line on a connected non-blocking socket, the
  least a beat can cost.

Throughput: one client calling ``event()`` as fast as it can for ``THROUGHPUT_SECONDS``, counted
by the daemon (``GET /api/v1/services``), beside raw ``sendall`` of pre-encoded lines.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from _common import (
    Daemon,
    Workdir,
    banner,
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


def row(label: str, samples: list[float]) -> list[object]:
    return [
        label,
        len(samples),
        percentile(samples, 50),
        percentile(samples, 90),
        percentile(samples, 99),
        max(samples),
    ]


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
    results: dict[str, list[float]] = {}
    rates: dict[str, float] = {}
    with Workdir("client", keep=args.keep) as work:
        services = [{"name": "svc", "heartbeat_timeout": "1h"}]
        with Daemon(work.path / "daemon", services).start() as daemon:
            address = daemon.tcp
            hb = Heartbeat("svc", address)

            def beat_until_connected() -> bool:
                hb.beat()
                return hb.connected

            wait_until(beat_until_connected, 5)
            results["beat(), connected"] = time_calls(hb.beat, calls)
            with socket.create_connection(address) as raw:
                raw.setblocking(False)
                results["baseline: sock.send of the line"] = time_calls(
                    lambda: raw.send(LINE), calls
                )
            hb.close()

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

            before = daemon.total_messages()
            block = b'{"type":"item","service":"svc"}\n' * 1000
            sent, deadline = 0, time.monotonic() + seconds
            with socket.create_connection(address) as raw:
                while time.monotonic() < deadline:
                    raw.sendall(block)
                    sent += 1000
            wait_until(lambda: daemon.total_messages() - before >= sent, 60)
            rates["raw sendall of pre-encoded lines"] = sent / seconds

        refused, refused_at = refused_address()
        hb = Heartbeat("svc", refused_at)
        results["beat(), daemon down (refused)"] = time_calls(hb.beat, calls)
        hb.close()
        refused.close()

        held, silent_at = silent_address()
        hb = Heartbeat("svc", silent_at, connect_timeout=0.5)
        results["beat(), address not answering"] = time_calls(hb.beat, calls)
        hb.close()
        for sock in held:
            sock.close()

    print()
    print_table(
        ["condition", "calls", "p50 µs", "p90 µs", "p99 µs", "max µs"],
        [row(label, samples) for label, samples in results.items()],
    )
    print()
    print_table(
        ["one client, as fast as it can", "msgs/s (counted by the daemon)"],
        [[label, rate] for label, rate in rates.items()],
    )
    print()
    connected = results["beat(), connected"]
    p50, p99 = percentile(connected, 50), percentile(connected, 99)
    print(
        f"goal connected p50 <= 15 µs, p99 <= 100 µs: {p50:.1f} / {p99:.1f} µs: "
        f"{verdict(p50 <= 15 and p99 <= 100)}"
    )
    for label in ("beat(), daemon down (refused)", "beat(), address not answering"):
        p99 = percentile(results[label], 99)
        print(f"goal {label}: p99 <= 100 µs: {p99:.1f} µs: {verdict(p99 <= 100)}")


if __name__ == "__main__":
    main()
