"""What the API says about services and ingest: the response models and how they are read.

Read straight from the supervisor in the event loop's thread: no locks, no copies. Ages are
seconds, measured when the answer is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from heartwatch.core.watchdog import ServiceRecord
    from heartwatch.daemon.supervisor import Supervisor


class ErrorBody(BaseModel):
    """Every refusal's body (``docs/api.md``: the codes)."""

    code: str
    message: str


class DataStatus(BaseModel):
    count: int
    last_age: float | None  # seconds since the newest event of this kind
    timeout: float | None  # the configured data_timeout of this kind, if any
    last_sent_time: str | None  # the sender's own clock, as it sent it
    last_data: Any = None  # the newest event's payload


class IngestErrorCount(BaseModel):
    transport: str
    code: str
    count: int


class IngestStatus(BaseModel):
    messages: dict[str, int]  # accepted, by transport (tcp, udp, http, notify)
    errors: list[IngestErrorCount]  # refused, by transport and reason
    connections_open: int
    connections_total: int  # accepted, including those closed at once
    connections_evicted: int  # closed for a newcomer beyond the cap
    connections_refused: int  # newcomers closed at once: the cap was full of busy ones
    accept_pauses: int  # times the kernel refused to accept (no descriptors): paused
    reads_deferred: int  # busy connections paused so that others had their turn


class QueueStatus(BaseModel):
    name: str
    depth: int | None  # messages ready at the last reading
    stalled_after: float
    broker_problem: str | None  # why the last reading failed, if it did


class ProbeStatus(BaseModel):
    """One probe of the service's current run (``startup``, ``readiness``, ``liveness``)."""

    passing: bool | None  # None: no verdict yet (or no run under way)
    reason: str | None  # the last check's own words ("exited 1: error: device offline")
    consecutive_failures: int
    consecutive_successes: int
    last_run_age: float | None  # seconds since the last check ended


class ServiceStatus(BaseModel):
    name: str
    instance_of: str | None  # the [[service]] it is an instance of (instances = N), else None
    instance: int | None  # its number, 0 to N-1
    # The instance count `heartwatch scale` set for its [[service]], in force instead of the
    # file's (until the daemon restarts, or the file's count changes); None: the file's.
    scale_override: int | None
    state: str
    reason: str
    since_age: float  # seconds in this state
    uptime: float | None  # seconds since this run started (spawned, or watched afresh)
    pid: int | None
    restarts: int  # runs the daemon began to recover it (it, or one it goes with, failed)
    restarts_requested: int  # runs people asked for: restarts, and starts after a stop
    watch_only: bool
    autostart: bool  # started with the daemon (else when a person, or a dependent, starts it)
    requires: list[str]
    last_heartbeat_age: float | None  # seconds since any message from the service
    heartbeat_timeout: float | None
    heartbeat_expected: bool  # it should send messages (a deadline, or ready at its first)
    messages: int
    data: dict[str, DataStatus]
    last_exit: str | None
    status: str | None  # the service's own words (STATUS=, "status")
    client_dropped: int  # data events its client reported dropping
    output_write_errors: int  # writes of its stdout/stderr lost (a full disk): not in its log
    queue: QueueStatus | None
    ready: bool  # what dependents see: ready, and (with a readiness probe) it passes
    probes: dict[str, ProbeStatus]  # by role, for each configured probe
    # Its whole process tree (group and escaped descendants), at the last sample: CPU of one
    # core over the last sample interval, None until two samples; None when not running.
    cpu_percent: float | None
    rss_bytes: int | None


class ServicePulse(BaseModel):
    """The fast-moving part of a status: what a page needs to keep ages and counts right."""

    name: str
    last_heartbeat_age: float | None
    messages: int
    data: dict[str, int]
    cpu_percent: float | None
    rss_bytes: int | None


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else round(now - at, 3)


def read_status(supervisor: Supervisor, name: str) -> ServiceStatus:
    record = supervisor.watchdog.record(name)
    supervisor.sampler.receive_interest()  # someone looks: CPU and RSS are kept current
    usage = supervisor.resource_usage(name)
    spec = record.spec
    data_timeout = spec.liveness.data_timeout
    now = supervisor.now()
    last = record.last_data
    kinds = sorted(set(record.data_counts) | set(data_timeout))
    liveness = record.liveness
    return ServiceStatus(
        name=name,
        instance_of=spec.instance_of,
        instance=spec.instance,
        scale_override=None
        if spec.instance_of is None
        else supervisor.config.instance_overrides.get(spec.instance_of),
        state=record.state.value,
        reason=record.reason,
        since_age=round(now - record.state_since, 3),
        uptime=None if liveness is None else _age(now, liveness.started_at),
        pid=record.pid,
        restarts=record.restarts,
        restarts_requested=record.restarts_requested,
        watch_only=spec.watch_only,
        autostart=spec.autostart,
        requires=list(spec.requires),
        last_heartbeat_age=_age(now, record.last_seen_at),
        heartbeat_timeout=spec.liveness.heartbeat_timeout,
        heartbeat_expected=spec.liveness.heartbeat_timeout is not None
        or spec.liveness.ready_on_message,
        messages=record.messages,
        data={
            kind: DataStatus(
                count=record.data_counts.get(kind, 0),
                last_age=_age(now, last[kind].at) if kind in last else None,
                timeout=data_timeout.get(kind),
                last_sent_time=last[kind].sent_time if kind in last else None,
                last_data=last[kind].data if kind in last else None,
            )
            for kind in kinds
        },
        last_exit=record.last_exit,
        status=record.status_text,
        client_dropped=record.client_dropped,
        output_write_errors=supervisor.output_write_errors(name),
        ready=record.ready,
        probes=_read_probes(record, now),
        queue=None
        if record.queue is None or spec.queue is None
        else QueueStatus(
            name=spec.queue.name,
            depth=record.queue.depth,
            stalled_after=record.queue.stalled_after,
            broker_problem=record.queue.broker_problem,
        ),
        cpu_percent=None if usage is None else usage.cpu_percent,
        rss_bytes=None if usage is None else usage.rss_bytes,
    )


def _read_probes(record: ServiceRecord, now: float) -> dict[str, ProbeStatus]:
    """Each configured probe, as its current run has it (nothing counted without a run)."""
    if not record.spec.probes:
        return {}
    liveness = record.liveness
    current = liveness.probes.probes if liveness is not None and liveness.probes else {}
    statuses: dict[str, ProbeStatus] = {}
    for spec in record.spec.probes:
        probe = current.get(spec.role)
        statuses[spec.role] = ProbeStatus(
            passing=None if probe is None else probe.passing,
            reason=None if probe is None else probe.result,
            consecutive_failures=0 if probe is None else probe.consecutive_failures,
            consecutive_successes=0 if probe is None else probe.consecutive_successes,
            last_run_age=None if probe is None else _age(now, probe.last_run_at),
        )
    return statuses


def read_pulse(supervisor: Supervisor, name: str) -> ServicePulse:
    record = supervisor.watchdog.record(name)
    usage = supervisor.resource_usage(name)
    return ServicePulse(
        name=name,
        last_heartbeat_age=_age(supervisor.now(), record.last_seen_at),
        messages=record.messages,
        data=dict(record.data_counts),
        cpu_percent=None if usage is None else usage.cpu_percent,
        rss_bytes=None if usage is None else usage.rss_bytes,
    )


def read_ingest(supervisor: Supervisor) -> IngestStatus:
    stats = supervisor.stats
    return IngestStatus(
        messages=dict(stats.messages),
        errors=[
            IngestErrorCount(transport=t, code=c, count=n)
            for (t, c), n in sorted(stats.errors.items())
        ],
        connections_open=stats.connections_open,
        connections_total=stats.connections_total,
        connections_evicted=stats.connections_evicted,
        connections_refused=stats.connections_refused,
        accept_pauses=stats.accept_pauses,
        reads_deferred=stats.reads_deferred,
    )
