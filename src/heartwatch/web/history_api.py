"""The past of a service, as the history page and ``heartwatch history`` draw it.

    GET /api/v1/history?since=&until=&window=&service=   every service's strip and summary
    GET /api/v1/history/{name}?since=&until=&window=     segments, summary, recoveries
    GET /api/v1/history/{name}/rates?since=&until=&points=   per-kind rates, bucketed
    GET /api/v1/recoveries?service=&since=&until=&limit=     each recovery's steps

Everything is computed here from the store by the pure functions of ``core/uptime.py``,
``core/rates.py`` and ``core/recoveries.py``; the server aggregates, so a 30-day chart gets a
few hundred buckets per kind, not 43,200 minutes. Reads are bounded: a window of at most
``MAX_SPAN``, at most ``MAX_HISTORY_ENTRIES`` entries per service and ``MAX_ANSWER_ENTRIES``
in all per answer (``truncated`` says when that cut it short); the pure work runs in a worker
thread, not on the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict

from heartwatch.core.rates import DEFAULT_POINTS, MAX_POINTS, bucket_step, chart, gaps
from heartwatch.core.recoveries import TRIGGER_EXIT_LOOKBACK, Recovery, recovery_steps
from heartwatch.core.uptime import UNKNOWN, History, service_history
from heartwatch.web.history import MAX_UNIX_TIME

if TYPE_CHECKING:
    from heartwatch.daemon.recorder import Recorder
    from heartwatch.daemon.supervisor import Supervisor

WINDOWS = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}
DEFAULT_WINDOW = "24h"
MAX_SPAN = 400 * 86400.0  # beyond any retention: a bound on the work, not a policy
MAX_HISTORY_ENTRIES = 50_000
# All the entries one answer may read, shared by the services it holds (the overview's 50
# services get 4,000 each): a bound on the daemon's memory and time per request, whoever asks.
MAX_ANSWER_ENTRIES = 200_000
MAX_RECOVERIES = 500
# How long after its entry a recovery's steps are looked for (a start may wait on backoff).
RECOVERY_HORIZON = 3600.0
# Entries read for the steps of one recovery (its members' within the horizon): with
# MAX_RECOVERIES, at most MAX_ANSWER_ENTRIES per answer.
STEP_ENTRIES = MAX_ANSWER_ENTRIES // MAX_RECOVERIES
MAX_OVERVIEW_SERVICES = 1000

Window = Literal["1h", "24h", "7d", "30d"]
TimeQuery = Annotated[
    float | None, Query(ge=0, le=MAX_UNIX_TIME, allow_inf_nan=False, description="Unix time")
]
WindowQuery = Annotated[
    Window | None,
    Query(description="the span before `until` when `since` is not given (default 24h)"),
]


class _FromCore(BaseModel):
    """An answer read from the core's frozen value of the same fields (``model_validate``)."""

    model_config = ConfigDict(from_attributes=True)


class SegmentOut(_FromCore):
    start: float
    end: float
    state: str  # a service state, or "unknown" (the daemon was down, or no record)
    reason: str
    entry_id: int | None  # the journal entry that began it
    wanted: bool  # counted in uptime's denominator


class IncidentOut(_FromCore):
    start: float
    end: float | None  # None: not over at the window's end
    reason: str
    entry_id: int
    recovered: bool


class SummaryOut(_FromCore):
    uptime: float | None  # running / wanted, 0..1; None: nothing was wanted
    running_seconds: float
    wanted_seconds: float
    unknown_seconds: float
    incidents: int
    mttr_seconds: float | None
    longest_outage_seconds: float | None


class StepOut(_FromCore):
    service: str
    stop_sent: float | None
    gone: float | None
    spawned: float | None
    ready: float | None


class RecoveryOut(_FromCore):
    id: int  # the recovery entry's id
    at: float
    trigger: str
    reason: str
    members: list[str]  # in start order, as the dependency graph gave
    steps: list[StepOut]  # one per member, in start order
    duration_seconds: float | None  # the recovery entry to the last member ready


class ServiceStripOut(BaseModel):
    service: str
    since: float
    until: float
    segments: list[SegmentOut]
    summary: SummaryOut
    incidents: list[IncidentOut]
    truncated: bool  # more entries than one answer reads: the rest is "unknown"


class ServiceHistoryOut(ServiceStripOut):
    recoveries: list[RecoveryOut]  # newest first


class HistoryOverviewOut(BaseModel):
    since: float
    until: float
    services: list[ServiceStripOut]  # in start order, or in the order asked for


class GapOut(BaseModel):
    kind: str
    start: float
    end: float


class RatesOut(BaseModel):
    service: str
    since: float
    until: float
    step_seconds: int
    times: list[int]
    kinds: dict[str, list[float | None]]
    timeouts: dict[str, float]
    gaps: list[GapOut]


class RecoveryList(BaseModel):
    recoveries: list[RecoveryOut]  # newest first


def resolve_window(
    since: float | None, until: float | None, window: str | None, now: float
) -> tuple[float, float]:
    """[since, until] of a query: ``until`` defaults to now (and is held to it: the future
    has no history to draw), ``since`` to ``window`` before it."""
    end = now if until is None else min(until, now)
    start = max(end - WINDOWS[window or DEFAULT_WINDOW] if since is None else since, 0.0)
    if start >= end:
        raise HTTPException(
            422,
            {"code": "bad_range", "message": f"since ({start:g}) is not before until ({end:g})"},
        )
    if end - start > MAX_SPAN:
        raise HTTPException(
            422,
            {"code": "bad_range", "message": f"a window of at most {MAX_SPAN / 86400:g} days"},
        )
    return start, end


def recovery_out(recovery: Recovery) -> RecoveryOut:
    return RecoveryOut.model_validate(recovery)


async def read_recoveries(
    recorder: Recorder,
    *,
    service: str | None,
    since: float | None,
    until: float | None,
    limit: int,
) -> list[RecoveryOut]:
    found, later, around = await recorder.recovery_reads(
        service=service,
        since=since,
        until=until,
        limit=limit,
        lookback=TRIGGER_EXIT_LOOKBACK,
        horizon=RECOVERY_HORIZON,
        step_limit=STEP_ENTRIES,
    )
    # Pure work over what was read, off the loop (as the histories').
    return await asyncio.to_thread(
        lambda: [
            recovery_out(recovery_steps(r, entries, later))
            for r, entries in zip(found, around, strict=True)
        ]
    )


async def _known(supervisor: Supervisor, recorder: Recorder, name: str) -> None:
    """404 for a name that is neither a service now nor one with history."""
    if name in supervisor.services or await recorder.entries(service=name, limit=1):
        return
    raise HTTPException(404, {"code": "unknown_service", "message": f"no service {name!r}"})


async def _read_histories(
    recorder: Recorder, names: Sequence[str], since: float, until: float
) -> list[tuple[History, bool]]:
    """Each service's history over the window, and whether the entries read were cut short."""
    limit = min(MAX_HISTORY_ENTRIES, max(1000, MAX_ANSWER_ENTRIES // max(1, len(names))))
    reads = await recorder.histories(names, since=since, until=until, limit=limit)

    def compute() -> list[tuple[History, bool]]:
        found = []
        for name, (entries, last_alive) in zip(names, reads, strict=True):
            truncated = len(entries) >= limit
            history = service_history(
                entries,
                service=name,
                since=since,
                until=until,
                last_alive=last_alive,
                read_until=entries[-1].at if truncated else None,
            )
            found.append((history, truncated))
        return found

    # Pure work over what was read, in a worker thread: a long history must not hold the
    # loop (heartbeat deadlines, the API) for as long as it takes; the interpreter switches
    # threads every few milliseconds.
    return await asyncio.to_thread(compute)


async def _read_history(
    recorder: Recorder, name: str, since: float, until: float
) -> tuple[History, bool]:
    return (await _read_histories(recorder, [name], since, until))[0]


async def _json_off_loop(build: Callable[[], BaseModel]) -> Response:
    """The answer's model built and written as JSON in a worker thread: a long history is
    megabytes of JSON, which would hold the loop for as long (FastAPI passes a ``Response``
    through; the route's ``response_model`` still documents it)."""
    body = await asyncio.to_thread(lambda: build().model_dump_json().encode())
    return Response(body, media_type="application/json")


def _strip(
    name: str, history: History, truncated: bool, since: float, until: float
) -> ServiceStripOut:
    return ServiceStripOut(
        service=name,
        since=since,
        until=until,
        segments=[SegmentOut.model_validate(s) for s in history.segments],
        summary=SummaryOut.model_validate(history.summary),
        incidents=[
            IncidentOut.model_validate(i)
            for i in history.incidents
            if i.start < until and (i.end is None or i.end > since)
        ],
        truncated=truncated,
    )


def _timeouts(supervisor: Supervisor, name: str) -> dict[str, float]:
    if name not in supervisor.watchdog:
        return {}
    return dict(supervisor.watchdog.record(name).spec.liveness.data_timeout)


def create_history_router(supervisor: Supervisor, recorder: Recorder) -> APIRouter:
    router = APIRouter()
    answers: dict[int | str, dict[str, Any]] = {
        404: {"description": "no such service, now or in the history"},
        422: {"description": "a bad range: since not before until, or too long"},
    }

    @router.get(
        "/api/v1/history",
        response_model=HistoryOverviewOut,
        tags=["history"],
        responses=answers,
    )
    async def history_overview(
        since: TimeQuery = None,
        until: TimeQuery = None,
        window: WindowQuery = None,
        service: Annotated[
            list[str] | None,
            Query(description="only these services (repeatable); default: every one"),
        ] = None,
    ) -> Response:
        """Every service's strip in one answer (segments, summary, incidents; no recoveries):
        what an overview of all services draws, read in one trip to the store."""
        start, end = resolve_window(since, until, window, time.time())
        if service:
            names = list(dict.fromkeys(service))[:MAX_OVERVIEW_SERVICES]
            for name in names:
                await _known(supervisor, recorder, name)
        else:
            names = [record.name for record in supervisor.watchdog.records()]
        histories = await _read_histories(recorder, names, start, end)
        return await _json_off_loop(
            lambda: HistoryOverviewOut(
                since=start,
                until=end,
                services=[
                    _strip(name, history, truncated, start, end)
                    for name, (history, truncated) in zip(names, histories, strict=True)
                ],
            )
        )

    @router.get(
        "/api/v1/history/{name}",
        response_model=ServiceHistoryOut,
        tags=["history"],
        responses=answers,
    )
    async def service_history_view(
        name: str,
        since: TimeQuery = None,
        until: TimeQuery = None,
        window: WindowQuery = None,
    ) -> Response:
        """States over the window as contiguous segments ("unknown" where the daemon was
        down), uptime, incidents, time to recover, and the recoveries that touched it."""
        start, end = resolve_window(since, until, window, time.time())
        await _known(supervisor, recorder, name)
        history, truncated = await _read_history(recorder, name, start, end)
        recoveries = await read_recoveries(
            recorder, service=name, since=start, until=end, limit=MAX_RECOVERIES
        )
        return await _json_off_loop(
            lambda: ServiceHistoryOut(
                **dict(_strip(name, history, truncated, start, end)), recoveries=recoveries
            )
        )

    @router.get(
        "/api/v1/history/{name}/rates",
        response_model=RatesOut,
        tags=["history"],
        responses=answers,
    )
    async def service_rates(
        name: str,
        since: TimeQuery = None,
        until: TimeQuery = None,
        window: WindowQuery = None,
        points: Annotated[
            int, Query(ge=1, le=MAX_POINTS, description="at most this many buckets")
        ] = DEFAULT_POINTS,
    ) -> RatesOut:
        """Heartbeats and each data kind per minute, averaged over buckets of whole minutes
        (null where the daemon was down), each kind's data_timeout, and the gaps where the
        service beat but a kind stayed silent longer than its timeout."""
        start, end = resolve_window(since, until, window, time.time())
        await _known(supervisor, recorder, name)
        history, _ = await _read_history(recorder, name, start, end)
        absent = [(s.start, s.end) for s in history.segments if s.state == UNKNOWN]
        timeouts = _timeouts(supervisor, name)
        first, step, count = bucket_step(start, end, points)
        totals, silences = await recorder.rate_inputs(
            service=name, first=first, step=step, until=end, timeouts=timeouts
        )
        lines = chart(
            totals,
            first=first,
            step=step,
            count=count,
            since=start,
            until=end,
            kinds=timeouts,
            absent=absent,
        )
        found = gaps(silences, timeouts, start, end)
        return RatesOut(
            service=name,
            since=start,
            until=end,
            step_seconds=step,
            times=[first + i * step for i in range(count)],
            kinds=lines,
            timeouts=timeouts,
            gaps=[GapOut(kind=g.kind, start=g.start, end=g.end) for g in found],
        )

    @router.get(
        "/api/v1/recoveries",
        response_model=RecoveryList,
        tags=["history"],
        responses=answers,
    )
    async def list_recoveries(
        service: str | None = None,
        since: TimeQuery = None,
        until: TimeQuery = None,
        limit: Annotated[int, Query(ge=1, le=MAX_RECOVERIES)] = 100,
    ) -> RecoveryList:
        """Each recovery (newest first): its trigger and reason, its members in start order,
        and per member when the stop went out, the process was gone, spawned, ready."""
        if since is not None and until is not None and since >= until:
            raise HTTPException(422, {"code": "bad_range", "message": "since is not before until"})
        if service is not None:
            await _known(supervisor, recorder, service)
        found = await read_recoveries(
            recorder, service=service, since=since, until=until, limit=limit
        )
        return RecoveryList(recoveries=found)

    return router
