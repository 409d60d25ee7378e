"""Per-minute counts as a chart can draw them: buckets of whole minutes (at most as many as
asked), the rate per minute in each, ``None`` where the daemon was not there to count, and the
gaps where a service beat but a data kind stayed silent for longer than its timeout. Pure.

A bucket's rate is its messages over the minutes of it the daemon was up (a bucket half in an
absence is not halved); a bucket the daemon missed entirely is ``None``, never 0: nothing was
counted, which is not the same as nothing came.

Two ways in, one arithmetic: the store sums buckets and finds silences itself (SQL, so a
7-day chart never walks 10,080 minutes per kind in Python) and hands ``chart`` and ``gaps``
the results; ``rates`` does the same from plain per-minute counts (tests, small windows), by
the same two functions.
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
class Silence:
    """A stretch with no event of ``kind``: from the end of a minute with some (or the
    window's start) to the start of the next such minute (``None``: none came), and the
    first and last minute inside it in which the service sent anything at all."""

    kind: str
    quiet_from: float
    quiet_to: float | None
    first_alive: int | None
    last_alive: int | None


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
    while count > points:  # a count rounded up: widen by a minute (bounded: count shrinks)
        step += MINUTE
        count = max(1, math.ceil((until - first) / step))
    return first, step, count


def _overlap(start: float, end: float, spans: Sequence[tuple[float, float]]) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)


def chart(
    totals: Iterable[tuple[int, str, int]],
    *,
    first: int,
    step: int,
    count: int,
    since: float,
    until: float,
    kinds: Iterable[str] = (),
    absent: Sequence[tuple[float, float]] = (),
) -> dict[str, list[float | None]]:
    """Per-minute rates per kind from ``totals`` ((bucket index, kind, messages)); every kind
    in ``kinds`` (and the heartbeat) gets a line even with no messages."""
    lines: dict[str, list[int]] = {HEARTBEAT: [0] * count}
    for kind in kinds:
        lines.setdefault(kind, [0] * count)
    for index, kind, n in totals:
        if 0 <= index < count:
            lines.setdefault(kind, [0] * count)[index] += n
    # How many seconds of each bucket the daemon was there for (inside the window).
    present = []
    for i in range(count):
        lo, hi = max(first + i * step, since), min(first + (i + 1) * step, until)
        present.append(max(0.0, (hi - lo) - _overlap(lo, hi, absent)))
    return {
        kind: [
            None if seconds < 1 else sums[i] / max(seconds / MINUTE, 1.0)
            for i, seconds in enumerate(present)
        ]
        for kind, sums in lines.items()
    }


def gaps(
    silences: Iterable[Silence], timeouts: Mapping[str, float], since: float, until: float
) -> list[Gap]:
    """The silences of kinds with a timeout in which the service beat, measured from the first
    to the end of the last minute it sent anything in them, longer than the timeout."""
    found = []
    for silence in silences:
        timeout = timeouts.get(silence.kind)
        if timeout is None or silence.first_alive is None or silence.last_alive is None:
            continue
        start = max(silence.first_alive, silence.quiet_from, since)
        end = min(silence.last_alive + MINUTE, until)
        if silence.quiet_to is not None:
            end = min(end, silence.quiet_to)
        if end - start > timeout:
            found.append(Gap(silence.kind, start, end))
    found.sort(key=lambda g: (g.start, g.kind))
    return found


def silences_of(
    kind: str, minutes: Iterable[int], alive: Sequence[int], first: int
) -> list[Silence]:
    """The silences of ``kind`` given the minutes it had events (any order) and the sorted
    minutes the service sent anything, from the window's first minute on."""
    seen = sorted(set(minutes))
    found = []
    for before, after in itertools.pairwise([first - MINUTE, *seen, None]):
        assert before is not None
        quiet_from = before + MINUTE
        lo = bisect.bisect_left(alive, quiet_from)
        hi = len(alive) if after is None else bisect.bisect_left(alive, after)
        inside = alive[lo:hi] if hi > lo else []
        found.append(
            Silence(
                kind,
                quiet_from,
                after,
                inside[0] if inside else None,
                inside[-1] if inside else None,
            )
        )
    return found


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
    totals: dict[tuple[int, str], int] = {}
    by_kind: dict[str, set[int]] = {kind: set() for kind in timeouts}
    alive: set[int] = set()
    for minute, kind, n in counts:
        if first <= minute < until and n > 0:
            key = ((minute - first) // step, kind)
            totals[key] = totals.get(key, 0) + n
            by_kind.setdefault(kind, set()).add(minute)
            alive.add(minute)
    lines = chart(
        ((index, kind, n) for (index, kind), n in totals.items()),
        first=first,
        step=step,
        count=count,
        since=since,
        until=until,
        kinds=timeouts,
        absent=absent,
    )
    beating = sorted(alive)
    quiet = [s for kind in timeouts for s in silences_of(kind, by_kind[kind], beating, first)]
    return Rates(
        step, [first + i * step for i in range(count)], lines, gaps(quiet, timeouts, since, until)
    )
