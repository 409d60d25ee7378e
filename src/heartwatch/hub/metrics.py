"""``/metrics`` of the hub, in Prometheus's text format: the whole fleet, read when scraped.

Two sources, as the agent's metrics (``web/metrics.py``) do it: nothing is counted for
Prometheus on the hot path.

- The database, at scrape time (the same for every hub): hosts by state, services by state
  (``unknown`` while their host is unreachable), commands by status, alerts by kind. A
  database that does not answer within ``SCRAPE_TIMEOUT`` leaves these families out and says
  so in ``heartwatch_hub_database_up``; the scrape never hangs.
- This hub process's own totals (``HubCounters``): events it ingested, messages it
  rejected and why, its ingest batches, the websocket clients it serves.

Every family is documented in docs/api.md's hub metrics table (``tests/test_hub_api_metrics``
checks that the two agree).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from fastapi import APIRouter, Response

from heartwatch.hub.queries import UNKNOWN, UNREACHABLE

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
SCRAPE_TIMEOUT: Final = 3.0
HOST_STATES: Final = ("live", "stale", "unreachable")
COMMAND_STATUSES: Final = (
    "sent",
    "accepted",
    "done",
    "failed",
    "refused",
    "expired",
    "unanswered",
)
SERVICE_STATES: Final = (
    "stopped",
    "starting",
    "running",
    "unresponsive",
    "restarting",
    "stopping",
    "backoff",
    "exited",
    "failed",
    UNKNOWN,
)


@dataclass
class HubCounters:
    """What this hub process did, counted as it happens (plain numbers: cheap on the path)."""

    events: int = 0  # events stored by this hub's ingest
    rejected: dict[str, int] = field(default_factory=dict)  # messages refused, by code
    batch_count: int = 0  # ingest batches committed
    batch_seconds: float = 0.0  # their total duration
    event_gaps: int = 0  # events of a host's current boot stored past a gap in their numbers
    feed_dropped: int = 0  # /ws/events clients dropped for not keeping up
    feed_clients: Callable[[], int] = lambda: 0
    log_viewers: Callable[[], int] = lambda: 0

    def receive_batch(self, events: int, seconds: float, gaps: int = 0) -> None:
        """An ingest batch committed: ``events`` new events stored in ``seconds``, ``gaps`` of
        them past a gap in their host boot's numbering (``BatchResult.gaps``)."""
        self.events += events
        self.event_gaps += gaps
        self.batch_count += 1
        self.batch_seconds += seconds

    def receive_rejected(self, code: str) -> None:
        """A message refused (``FleetWireError.code``, or the ingest's own code)."""
        self.rejected[code] = self.rejected.get(code, 0) + 1


@dataclass(frozen=True, slots=True)
class FleetCounts:
    hosts: dict[str, int]
    services: dict[str, int]
    commands: dict[str, int]
    alerts: dict[str, int]


async def read_counts(pool: AsyncConnectionPool[Any]) -> FleetCounts:
    """One trip: each table's rows by state (a service of an unreachable host: unknown)."""
    async with pool.connection(timeout=SCRAPE_TIMEOUT) as connection:
        cursor = await connection.execute(
            "SELECT 'hosts', state, count(*) FROM hosts GROUP BY state "
            "UNION ALL SELECT 'services', CASE WHEN h.state = %s THEN %s ELSE s.state END, "
            "count(*) FROM services s JOIN hosts h ON h.host = s.host GROUP BY 2 "
            "UNION ALL SELECT 'commands', status, count(*) FROM commands GROUP BY status "
            "UNION ALL SELECT 'alerts', kind, count(*) FROM alerts GROUP BY kind",
            [UNREACHABLE, UNKNOWN],
        )
        rows = await cursor.fetchall()
    tables: dict[str, dict[str, int]] = {"hosts": {}, "services": {}, "commands": {}, "alerts": {}}
    for table, key, count in rows:
        tables[table][key] = count
    return FleetCounts(**tables)


def collect(counts: FleetCounts | None, counters: HubCounters) -> Iterator[Any]:
    """The metric families, as prometheus-client's collectors yield them."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        SummaryMetricFamily,
    )

    up = GaugeMetricFamily(
        "heartwatch_hub_database_up", "1 when the database answered this scrape in time"
    )
    up.add_metric([], 0.0 if counts is None else 1.0)
    yield up
    if counts is not None:
        yield _by(
            GaugeMetricFamily("heartwatch_hub_hosts", "hosts by state", labels=["state"]),
            counts.hosts,
            HOST_STATES,
        )
        yield _by(
            GaugeMetricFamily(
                "heartwatch_hub_services",
                "services by state (unknown: their host is unreachable)",
                labels=["state"],
            ),
            counts.services,
            SERVICE_STATES,
        )
        yield _by(
            GaugeMetricFamily(
                "heartwatch_hub_commands", "commands in the database by status", labels=["status"]
            ),
            counts.commands,
            COMMAND_STATUSES,
        )
        yield _by(
            CounterMetricFamily(
                "heartwatch_hub_alerts", "alerts decided by the hubs, by kind", labels=["kind"]
            ),
            counts.alerts,
            (),
        )
    events = CounterMetricFamily("heartwatch_hub_events", "events this hub stored")
    events.add_metric([], counters.events)
    yield events
    gaps = CounterMetricFamily(
        "heartwatch_hub_event_gaps",
        "events this hub stored past a gap in their host boot's numbering (events lost or late)",
    )
    gaps.add_metric([], counters.event_gaps)
    yield gaps
    rejected = CounterMetricFamily(
        "heartwatch_hub_messages_rejected", "messages this hub refused, by code", labels=["code"]
    )
    for code, count in sorted(counters.rejected.items()):
        rejected.add_metric([code], count)
    yield rejected
    batches = SummaryMetricFamily(
        "heartwatch_hub_ingest_batch_seconds", "this hub's ingest batches: count and duration"
    )
    batches.add_metric([], count_value=counters.batch_count, sum_value=counters.batch_seconds)
    yield batches
    clients = GaugeMetricFamily("heartwatch_hub_feed_clients", "/ws/events clients connected")
    clients.add_metric([], counters.feed_clients())
    yield clients
    dropped = CounterMetricFamily(
        "heartwatch_hub_feed_dropped", "/ws/events clients dropped for not keeping up"
    )
    dropped.add_metric([], counters.feed_dropped)
    yield dropped
    viewers = GaugeMetricFamily(
        "heartwatch_hub_log_viewers", "live log websockets relayed from agents"
    )
    viewers.add_metric([], counters.log_viewers())
    yield viewers


def _by(family: Any, values: dict[str, int], always: tuple[str, ...]) -> Any:
    """A family with a sample per key (those of ``always`` even when zero)."""
    for key in sorted(set(values) | set(always)):
        family.add_metric([key], values.get(key, 0))
    return family


def render(counts: FleetCounts | None, counters: HubCounters) -> bytes:
    from prometheus_client import generate_latest
    from prometheus_client.registry import Collector, CollectorRegistry

    class _Once(Collector):
        def collect(self) -> Iterator[Any]:
            return collect(counts, counters)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Once())
    return generate_latest(registry)


def create_metrics_router(pool: AsyncConnectionPool[Any], counters: HubCounters) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", response_class=Response, tags=["metrics"])
    async def metrics() -> Response:
        """The whole fleet's figures and this hub's own (Prometheus text format)."""
        try:
            counts: FleetCounts | None = await asyncio.wait_for(read_counts(pool), SCRAPE_TIMEOUT)
        except Exception:  # any failure of the database: the families are left out
            counts = None
        return Response(render(counts, counters), media_type=CONTENT_TYPE)

    return router
