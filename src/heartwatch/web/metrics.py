"""``/metrics`` in Prometheus's text format, read from the supervisor when scraped.

Nothing is counted for Prometheus on the hot path: the watchdog and the ingest already keep
every total, so a custom collector turns them into metric families at scrape time. The
prometheus-client library is imported at the first scrape, so a daemon nobody scrapes never
pays for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Response

from heartwatch.core.events import ServiceState

if TYPE_CHECKING:
    from heartwatch.daemon.alerts import Alerter
    from heartwatch.daemon.supervisor import Supervisor

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def collect(supervisor: Supervisor, alerter: Alerter | None) -> Iterator[Any]:
    """The metric families, as prometheus-client's collectors yield them."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    state = GaugeMetricFamily(
        "heartwatch_service_state",
        "1 for the service's current state, 0 for the others",
        labels=["service", "state"],
    )
    up = GaugeMetricFamily("heartwatch_service_up", "1 when running", labels=["service"])
    restarts = CounterMetricFamily(
        "heartwatch_service_restarts",
        "runs the daemon started to recover the service (it, or one it goes with, failed)",
        labels=["service"],
    )
    restarts_requested = CounterMetricFamily(
        "heartwatch_service_restarts_requested",
        "runs people asked for: restarts, and starts after a stop",
        labels=["service"],
    )
    age = GaugeMetricFamily(
        "heartwatch_service_last_heartbeat_age_seconds",
        "seconds since any message from the service, while it has a run",
        labels=["service"],
    )
    data = CounterMetricFamily(
        "heartwatch_data_events", "data events received", labels=["service", "kind"]
    )
    data_age = GaugeMetricFamily(
        "heartwatch_data_last_age_seconds",
        "seconds since the newest data event of each kind, while the service has a run",
        labels=["service", "kind"],
    )
    lost_output = CounterMetricFamily(
        "heartwatch_service_output_write_errors",
        "writes of the service's stdout/stderr to its log that failed (output lost)",
        labels=["service"],
    )
    cpu = GaugeMetricFamily(
        "heartwatch_service_cpu_percent",
        "CPU of the service's process tree over the last sample interval, in % of one core",
        labels=["service"],
    )
    rss = GaugeMetricFamily(
        "heartwatch_service_rss_bytes",
        "resident memory of the service's process tree (the sum over its processes)",
        labels=["service"],
    )
    supervisor.sampler.receive_interest()  # a scraper looks: CPU and RSS are kept current
    now = supervisor.now()
    for record in supervisor.watchdog.records():
        name = record.name
        for member in ServiceState:
            state.add_metric([name, member.value], 1.0 if record.state is member else 0.0)
        up.add_metric([name], 1.0 if record.state is ServiceState.RUNNING else 0.0)
        restarts.add_metric([name], record.restarts)
        restarts_requested.add_metric([name], record.restarts_requested)
        # Ages only while a run is watched: a stopped service's growing age is no silence.
        has_run = record.liveness is not None
        if has_run and record.last_seen_at is not None:
            age.add_metric([name], now - record.last_seen_at)
        for kind, count in sorted(record.data_counts.items()):
            data.add_metric([name, kind], count)
        if has_run:
            for kind, seen in sorted(record.last_data.items()):
                data_age.add_metric([name, kind], now - seen.at)
        lost_output.add_metric([name], supervisor.output_write_errors(name))
        usage = supervisor.resource_usage(name)  # none while not running or not yet sampled
        if usage is not None and usage.cpu_percent is not None:
            cpu.add_metric([name], usage.cpu_percent)
        if usage is not None and usage.rss_bytes is not None:
            rss.add_metric([name], usage.rss_bytes)
    yield from (state, up, restarts, restarts_requested, age, data, data_age, lost_output)
    yield from (cpu, rss)
    yield from _probe_families(supervisor)
    yield _info_family(supervisor)

    stats = supervisor.stats
    messages = CounterMetricFamily(
        "heartwatch_ingest_messages", "messages accepted", labels=["transport"]
    )
    for transport, count in sorted(stats.messages.items()):
        messages.add_metric([transport], count)
    errors = CounterMetricFamily(
        "heartwatch_ingest_errors", "messages refused, by reason", labels=["transport", "code"]
    )
    for (transport, code), count in sorted(stats.errors.items()):
        errors.add_metric([transport, code], count)
    connections = GaugeMetricFamily(
        "heartwatch_ingest_connections_open", "open heartbeat connections"
    )
    connections.add_metric([], stats.connections_open)
    closed = CounterMetricFamily(
        "heartwatch_ingest_connections_closed",
        "heartbeat connections closed by the cap: evicted (idle, for a newcomer) or refused "
        "(a newcomer, the cap full of busy ones)",
        labels=["why"],
    )
    closed.add_metric(["evicted"], stats.connections_evicted)
    closed.add_metric(["refused"], stats.connections_refused)
    pauses = CounterMetricFamily(
        "heartwatch_ingest_accept_pauses", "times accepting paused: no descriptor was left"
    )
    pauses.add_metric([], stats.accept_pauses)
    yield from (messages, errors, connections, closed, pauses)

    alerts = CounterMetricFamily(
        "heartwatch_alerts", "alerts sent, failed or suppressed", labels=["alert", "outcome"]
    )
    if alerter is not None:
        for (kind, outcome), count in sorted(alerter.counts.items()):
            alerts.add_metric([kind, outcome], count)
    yield alerts


def _info_family(supervisor: Supervisor) -> Any:
    """``heartwatch_service_info``: which ``[[service]]`` each service is (an instance of).

    An info metric (always 1) rather than a label on every family: instances group by a join,
    ``sum by (instance_of) (heartwatch_service_up * on (service) group_left (instance_of)
    heartwatch_service_info)``, and the other families keep the labels they had. (Not a label
    named ``instance``: Prometheus gives that one to the scraped target.)"""
    from prometheus_client.core import GaugeMetricFamily

    info = GaugeMetricFamily(
        "heartwatch_service_info",
        "1 for each service; instance_of: its [[service]] (its own name without instances)",
        labels=["service", "instance_of"],
    )
    for record in supervisor.watchdog.records():
        spec = record.spec
        info.add_metric([record.name, spec.instance_of or record.name], 1.0)
    return info


def _probe_families(supervisor: Supervisor) -> Iterator[Any]:
    """Readiness as dependents see it, and each probe's verdict and runs (pass, fail)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    ready = GaugeMetricFamily(
        "heartwatch_service_ready",
        "1 when dependents may rely on the service (ready, and its readiness probe passes)",
        labels=["service"],
    )
    passing = GaugeMetricFamily(
        "heartwatch_probe_passing",
        "1 while the probe passes, 0 while it fails (absent before a verdict in this run)",
        labels=["service", "probe"],
    )
    runs = CounterMetricFamily(
        "heartwatch_probe_runs",
        "probe checks since the daemon started, by result (pass, fail)",
        labels=["service", "probe", "result"],
    )
    for record in supervisor.watchdog.records():
        name = record.name
        ready.add_metric([name], 1.0 if record.ready else 0.0)
        current = record.liveness.probes if record.liveness is not None else None
        for spec in record.spec.probes:
            probe = current.probes.get(spec.role) if current is not None else None
            if probe is not None and probe.passing is not None:
                passing.add_metric([name, spec.role], 1.0 if probe.passing else 0.0)
            for result, passed in (("pass", True), ("fail", False)):
                count = record.probe_runs.get((spec.role, passed), 0)
                runs.add_metric([name, spec.role, result], count)
    yield from (ready, passing, runs)


def create_metrics_router(supervisor: Supervisor, alerter: Alerter | None) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/metrics",
        response_class=Response,
        tags=["metrics"],
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"}},
    )
    async def metrics() -> Response:
        """Every service's state, restarts, heartbeat age and data counts; ingest; alerts."""
        from prometheus_client import CollectorRegistry, generate_latest

        class _Collector:
            def collect(self) -> Iterator[Any]:
                return collect(supervisor, alerter)

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector())
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)

    return router
