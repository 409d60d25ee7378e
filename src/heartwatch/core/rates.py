"""Per-minute counts as a chart can draw them: buckets of whole minutes (at most as many as
asked), the rate per minute in each, ``None`` where the daemon was not there to count, and the
gaps where a service beat but a data kind stayed silent for longer than its timeout. Pure.

A bucket's rate is its messages over the minutes of it the daemon was up (a bucket half in an
absence is not halved); a bucket the daemon missed entirely is ``None``, never 0: nothing was
counted, which is not the same as nothing came.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from heartwatch.core.wire import HEARTBEAT

MINUTE = 60
DEFAULT_POINTS = 360
MAX_POINTS = 2000


@dataclass(frozen=True, slots=True)
class Gap:
    kind: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Rates:
    step_seconds: int
    times: list[int]  # each bucket's start, Unix time
    kinds: dict[str, list[float | None]]  # per minute, averaged over the bucket
    gaps: list[Gap]


def bucket_step(since: float, until: float, points: int) -> tuple[int, int, int]:
    """(first bucket start, step in seconds, number of buckets): the step a multiple of 60,
    the smallest that gives at most ``points`` buckets covering [since, until)."""
    if points < 1:
        raise ValueError("points must be at least 1")
    if until < since:
        raise ValueError("until is before since")
    first = math.floor(since / MINUTE) * MINUTE
    minutes = max(1, math.ceil((until - first) / MINUTE))
    step = MINUTE * max(1, math.ceil(minutes / points))
    count = max(1, math.ceil((until - first) / step))
    while count > points:  # alignment to the minute can add one bucket: widen once more
        step += MINUTE
        count = max(1, math.ceil((until - first) / step))
    return first, step, count


def _overlap(start: float, end: float, spans: Sequence[tuple[float, float]]) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)


def rates(
    counts: Iterable[tuple[int, str, int]],
    *,
    since: float,
    until: float,
    points: int = DEFAULT_POINTS,
    timeouts: Mapping[str, float] | None = None,
    absent: Sequence[tuple[float, float]] = (),
) -> Rates:
    """Buckets of ``counts`` ((minute, kind, count), any order, a minute may come twice and
    adds up) over [``since``, ``until``).

    ``timeouts``: the data kinds' ``data_timeout`` (each kind in it gets a line, even with no
    counts, and its gaps). ``absent``: the spans the daemon did not count (it was down, or
    nothing is recorded): buckets inside them are ``None``.
    """
    timeouts = dict(timeouts or {})
    first, step, count = bucket_step(since, until, points)
    per_minute: dict[str, dict[int, int]] = {HEARTBEAT: {}}
    for kind in timeouts:
        per_minute.setdefault(kind, {})
    for minute, kind, n in counts:
        if since - MINUTE < minute < until:
            minutes = per_minute.setdefault(kind, {})
            minutes[minute] = minutes.get(minute, 0) + n
    times = [first + i * step for i in range(count)]
    # How many seconds of each bucket the daemon was there for (inside the window).
    present = []
    for start in times:
        lo, hi = max(start, since), min(start + step, until)
        present.append(max(0.0, (hi - lo) - _overlap(lo, hi, absent)))
    kinds: dict[str, list[float | None]] = {}
    for kind, minutes in per_minute.items():
        totals = [0] * count
        for minute, n in minutes.items():
            index = (minute - first) // step
            if 0 <= index < count:
                totals[index] += n
        kinds[kind] = [
            None if seconds < 1 else totals[i] / max(seconds / MINUTE, 1.0)
            for i, seconds in enumerate(present)
        ]
    alive: set[int] = set()
    for minutes in per_minute.values():
        alive.update(m for m, n in minutes.items() if n > 0)
    gaps = [
        gap
        for kind, timeout in timeouts.items()
        for gap in _gaps(kind, timeout, per_minute[kind], alive, since, until)
    ]
    gaps.sort(key=lambda g: (g.start, g.kind))
    return Rates(step, times, kinds, gaps)


def _gaps(
    kind: str,
    timeout: float,
    minutes: Mapping[int, int],
    alive: set[int],
    since: float,
    until: float,
) -> list[Gap]:
    """Stretches with no ``kind`` event, measured from the first to the last minute the
    service sent anything in them, longer than ``timeout``: data stopped while it beat."""
    found = []
    seen = sorted(m for m, n in minutes.items() if n > 0)
    beating = sorted(alive)
    edges = [since - MINUTE, *seen, math.inf]
    for before, after in itertools.pairwise(edges):
        # The silence runs from the end of one minute with events to the next such minute.
        quiet_from, quiet_to = before + MINUTE, after
        lo = bisect.bisect_left(beating, quiet_from)
        hi = bisect.bisect_left(beating, quiet_to)
        if hi <= lo:
            continue
        start = max(beating[lo], since)
        end = min(beating[hi - 1] + MINUTE, until, quiet_to)
        if end - start > timeout:
            found.append(Gap(kind, start, end))
    return found
