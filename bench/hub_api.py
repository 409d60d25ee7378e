"""The hub's fleet API over 100 hosts x 50 services: ``GET /api/v1/fleet`` latency.

Goal (issue 12, the hub-web brief): ``/api/v1/fleet`` with 5,000 services well under 200 ms,
so that the fleet dashboard's first load (<= 1.5 s to every visible row) has room.

Method. A database of this run's own (dropped at the end) is migrated by the hub's own code
and given 100 hosts and 5,000 services, each with an agent status item as the agent's
``GET /api/v1/services`` makes it (every field, a data kind, a probe). The hub's app
(``create_hub_app``, reads only) is served by uvicorn in a subprocess of its own; this side
asks over one keep-alive connection, round after round:

- ``GET /api/v1/hosts`` (100 rows: the baseline, the same path through the app and the
  database with little data);
- ``GET /api/v1/fleet`` (5,000 services, about 5 MB of JSON);
- every 10th round, 1 % of the statuses changed first (50 rows, as a busy fleet's ingest
  moves them between two reads: those are read again, the others come from the cache).

Latency: request sent to body read. The first fleet answer (every status read as text) is
reported apart. ``--rounds`` (default 50).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HOSTS, SERVICES = 100, 50
POSTGRES = os.environ.get(
    "HEARTWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def status_item(name: str, index: int) -> dict[str, object]:
    return {
        "name": name, "instance_of": "collector", "instance": index, "scale_override": None,
        "state": "running", "reason": "", "since_age": 100.0, "uptime": 3600.0,
        "pid": 10000 + index,
        "restarts": 1, "restarts_requested": 0, "watch_only": False, "autostart": True,
        "requires": ["emulator"], "last_heartbeat_age": 0.4, "heartbeat_timeout": 30.0,
        "heartbeat_expected": True, "messages": 12345,
        "data": {"poiid": {"count": 500, "last_age": 1.2, "timeout": 60.0,
                           "last_sent_time": "2026-12-01T12:00:00Z", "last_data": {"id": index}}},
        "last_exit": "exit code 1", "status": "scraping page 12", "client_dropped": 0,
        "output_write_errors": 0, "queue": None, "ready": True,
        "probes": {"readiness": {"passing": True, "reason": "HTTP 200", "consecutive_failures": 0,
                                 "consecutive_successes": 40, "last_run_age": 2.0}},
        "cpu_percent": 3.5, "rss_bytes": 52_428_800,
    }  # fmt: skip


async def seed(dsn: str) -> None:
    import psycopg

    from heartwatch.hub.schema import migrate

    await migrate(dsn)
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        boot = "0" * 32
        for h in range(HOSTS):
            await connection.execute(
                "INSERT INTO hosts (host, boot, labels) VALUES (%s, %s, %s)",
                [f"farm-{h:03}", boot, json.dumps({"site": "sz", "rack": f"r{h % 8}"})],
            )
        now = time.time()
        rows = [
            (f"farm-{h:03}", name, "running", now, json.dumps(status_item(name, s)))
            for h in range(HOSTS)
            for s in range(SERVICES)
            if (name := f"collector@{s}")
        ]
        async with connection.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO services (host, service, instance_of, state, since, status) "
                "VALUES (%s, %s, 'collector', %s, %s, %s)",
                rows,
            )
        await connection.commit()


def serve(dsn: str) -> None:
    """The subprocess: the hub's app on 127.0.0.1:0; prints the port."""
    import socket

    import uvicorn
    from psycopg_pool import AsyncConnectionPool

    from heartwatch.hub.api import create_hub_app
    from heartwatch.hub.config import parse_hub_config

    async def main() -> None:
        config = parse_hub_config(
            {"hub": {"name": "bench", "broker": "amqp://127.0.0.1/", "database": dsn}},
            environ={},
        )
        async with AsyncConnectionPool(dsn, min_size=2, max_size=4, open=False) as pool:
            await pool.open(wait=True)
            app = create_hub_app(config, pool, None, None, None)
            # IPPROTO_TCP named, as daemon/http_server.py does: asyncio then sets TCP_NODELAY
            # (else every keep-alive answer after the first waits ~40 ms for a delayed ACK).
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
            print(sock.getsockname()[1], flush=True)
            server = uvicorn.Server(
                uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off")
            )
            await server.serve(sockets=[sock])

    asyncio.run(main())


def touch(dsn: str, count: int, round_: int) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            "UPDATE services SET updated_seq = updated_seq + 1, reason = %s, "
            "status = status || jsonb_build_object('reason', %s::text) "
            "WHERE (host, service) IN (SELECT host, service FROM services "
            "ORDER BY random() LIMIT %s)",
            [f"round {round_}", f"round {round_}", count],
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(dsn: str, rounds: int) -> None:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", dsn], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def get(path: str) -> tuple[float, int]:
            started = time.perf_counter()
            connection.request("GET", path)
            body = connection.getresponse().read()
            return time.perf_counter() - started, len(body)

        first, size = get("/api/v1/fleet")
        hosts, fleet, moved = [], [], []
        for index in range(rounds):
            hosts.append(get("/api/v1/hosts")[0])
            if index % 10 == 9:
                touch(dsn, HOSTS * SERVICES // 100, index)
                moved.append(get("/api/v1/fleet")[0])
            else:
                fleet.append(get("/api/v1/fleet")[0])
        print(f"{HOSTS} hosts x {SERVICES} services; the fleet answer is {size / 1e6:.1f} MB")
        print(f"first /api/v1/fleet (every status read): {first * 1000:.0f} ms")
        for name, values in (
            ("/api/v1/hosts (baseline)", hosts),
            ("/api/v1/fleet", fleet),
            ("/api/v1/fleet after 1 % moved", moved),
        ):
            ms = [v * 1000 for v in values]
            print(
                f"{name}: median {statistics.median(ms):.0f} ms, p90 {percentile(ms, 0.9):.0f}"
                f" ms, max {max(ms):.0f} ms ({len(ms)} requests)"
            )
        print(
            f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
            f"on {os.cpu_count()} cores"
        )
    finally:
        child.terminate()
        child.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.serve)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fleet_services import new_database

    with new_database(POSTGRES, prefix=f"heartwatch_bench_{uuid.uuid4().hex[:4]}_") as dsn:
        asyncio.run(seed(dsn))
        measure(dsn, options.rounds)


if __name__ == "__main__":
    main()
