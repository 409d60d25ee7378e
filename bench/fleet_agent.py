"""A fleet agent's added cost: the idle daemon's CPU and memory with ``[fleet]`` and without.

Method. The idle bench's daemon (``idle.py``: ten sleeping workers, each beating every second
on one TCP connection) runs alternately without and with a ``[fleet]`` section publishing to
the real broker at 127.0.0.1:5672 (heartbeat every 5 s, the default; a bench exchange of its
own, deleted at the end, with one queue bound to it so events are taken). Once all ten are
``running`` and the agent has connected (its first snapshot is in the queue), the bench
measures over a window of ``--seconds`` (60 s; ``--quick``: 20 s):

- CPU time of all the daemon's threads (``/proc/<pid>/task/*/schedstat``);
- RSS and USS at the end of the window;
- what the agent published in the window (heartbeats, snapshots, events), read from the queue.

Runs alternate (without, with, without, ...) so drift in the machine's load falls on both;
the table gives the medians of ``--runs`` runs (3; ``--quick``: 2) and the difference.

Note: the agent's snapshot (at connect, then every 5 minutes) reads every service's status as
the API does, which counts as someone looking: the sampler then reads the services' CPU and
RSS for two minutes (``daemon/sampler.py``). That cost is the agent's too, and is in the
figures (the window starts right after the connect's snapshot).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import time
import uuid
from typing import Any

from _common import (
    PYTHON,
    Daemon,
    Workdir,
    banner,
    cpu_seconds,
    median,
    parse_args,
    print_table,
    rss_mb,
    wait_until,
)
from idle import BEAT_EVERY, SERVICES, WORKER, uss_mb

BROKER = "amqp://guest:guest@127.0.0.1:5672/%2F"
BROKER_LOCK = "/tmp/heartwatch-tests-broker.lock"  # tests/fleet_services.py's


class Tap:
    """The bench exchange, a queue bound to all of it, and counts of what arrived."""

    def __init__(self) -> None:
        import pika

        self.exchange = f"hwbench.{uuid.uuid4().hex}"
        self.connection = pika.BlockingConnection(pika.URLParameters(BROKER))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(self.exchange, "topic", durable=True)
        self.queue = f"{self.exchange}.tap"
        self.channel.queue_declare(self.queue)
        self.channel.queue_bind(self.queue, self.exchange, "#")

    def take(self) -> dict[str, int]:
        """Messages waiting now, by envelope type (bounded)."""
        counts: dict[str, int] = {}
        for _ in range(100_000):
            method, _, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                break
            kind = str(json.loads(body).get("type"))
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def sleep(self, seconds: float) -> None:
        """Wait, answering the broker's heartbeats meanwhile (a blocking connection left
        alone for a minute is closed by the broker)."""
        self.connection.sleep(seconds)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.channel.queue_delete(self.queue)
            self.channel.exchange_delete(self.exchange)
        with contextlib.suppress(Exception):
            self.connection.close()


def measure(
    work: Workdir, name: str, fleet: dict[str, Any] | None, window: float, tap: Tap
) -> dict[str, float]:
    folder = work.path / name
    folder.mkdir()
    (folder / "worker.py").write_text(WORKER % BEAT_EVERY)
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
    sections = {"fleet": fleet} if fleet else {}
    with Daemon(folder, services, log_level="INFO", sections=sections) as daemon:
        if not wait_until(
            lambda: all(s["state"] == "running" for s in daemon.services()), 20.0, 0.2
        ):
            raise SystemExit("the services did not all reach 'running' within 20 s")
        if fleet:
            seen: dict[str, int] = {}

            def snapshot_in() -> bool:
                for kind, n in tap.take().items():
                    seen[kind] = seen.get(kind, 0) + n
                return seen.get("snapshot", 0) > 0

            if not wait_until(snapshot_in, 20.0, 0.1):
                raise SystemExit("the agent published no snapshot within 20 s")
        tap.sleep(2.0)  # settle: start-up done, first heartbeats in
        tap.take()
        cpu0, at0 = cpu_seconds(daemon.pid), time.monotonic()
        published: dict[str, int] = {}
        # Read as they come: a heartbeat expires in the queue after three intervals.
        while (left := at0 + window - time.monotonic()) > 0:
            tap.sleep(min(2.0, left))
            for kind, n in tap.take().items():
                published[kind] = published.get(kind, 0) + n
        cpu1, at1 = cpu_seconds(daemon.pid), time.monotonic()
        for kind, n in tap.take().items():
            published[kind] = published.get(kind, 0) + n
        return {
            "cpu": 100.0 * (cpu1 - cpu0) / (at1 - at0),
            "rss": rss_mb(daemon.pid),
            "uss": uss_mb(daemon.pid),
            "heartbeats": published.get("heartbeat", 0) / (at1 - at0),
            "events": sum(published.get(k, 0) for k in ("entry", "counts", "reply")),
            "snapshots": published.get("snapshot", 0),
        }


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=0.0, help="measurement window")
    parser.add_argument("--runs", type=int, default=0, help="runs of each variant")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], _options)
    window = args.seconds or (20.0 if args.quick else 60.0)
    runs = args.runs or (2 if args.quick else 3)
    banner("fleet agent: added idle cost", args.quick)
    print(
        f"   {SERVICES} services beating every {BEAT_EVERY:g} s; window {window:g} s; "
        f"{runs} runs of each, alternating; medians"
    )
    # The tests' broker lock, shared: a test that stops the broker waits for this bench.
    lock = open(BROKER_LOCK, "a")  # noqa: SIM115 - held for the whole run
    fcntl.flock(lock, fcntl.LOCK_SH)
    try:
        tap = Tap()
    except Exception as error:  # no broker here: nothing to compare
        raise SystemExit(
            f"no RabbitMQ at 127.0.0.1:5672 ({type(error).__name__}): skipped"
        ) from None
    results: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    try:
        with Workdir("fleet-agent", args.keep) as work:
            for run in range(runs):
                results["without"].append(measure(work, f"plain-{run}", None, window, tap))
                fleet = {"broker": BROKER, "host": "bench-agent", "exchange": tap.exchange}
                results["with"].append(measure(work, f"fleet-{run}", fleet, window, tap))
                print(
                    f"   run {run + 1}: CPU {results['without'][-1]['cpu']:.3f} % without, "
                    f"{results['with'][-1]['cpu']:.3f} % with [fleet]"
                )
    finally:
        tap.close()

    def med(variant: str, key: str) -> float:
        return median([r[key] for r in results[variant]])

    rows = []
    for variant, label in (("without", "daemon without [fleet]"), ("with", "daemon with [fleet]")):
        rows.append(
            [
                label,
                med(variant, "cpu"),
                med(variant, "cpu") * 10,
                med(variant, "rss"),
                med(variant, "uss"),
                med(variant, "heartbeats"),
                med(variant, "events"),
                med(variant, "snapshots"),
            ]
        )
    rows.append(
        [
            "added by the agent",
            med("with", "cpu") - med("without", "cpu"),
            (med("with", "cpu") - med("without", "cpu")) * 10,
            med("with", "rss") - med("without", "rss"),
            med("with", "uss") - med("without", "uss"),
            float("nan"),
            float("nan"),
            float("nan"),
        ]
    )
    print()
    print_table(
        [
            "",
            "CPU %",
            "CPU ms/s",
            "RSS MB",
            "USS MB",
            "heartbeats/s out",
            "events out",
            "snapshots out",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
