"""A service's past as segments of state, and the figures people ask for: uptime, incidents,
time to recover, the longest outage. Pure: journal entries in, numbers out.

Definitions (docs/api.md says the same):

- *unknown*: the daemon itself was not running (between its "stopping" entry, or its last
  sign of life when it was killed and wrote none, and its next "started" entry), or nothing
  is recorded yet. Unknown time is neither running nor wanted: it is counted apart.
- *wanted*: every state but ``stopped``, ``stopping`` and an ``exited`` that was not a
  failure (a person's word, or a clean end with no restart asked for). ``starting``,
  ``unresponsive``, ``restarting``, ``backoff``, ``failed`` and an exit by failure are wanted
  and down.
- *uptime*: running time over wanted time, ``None`` when nothing was wanted (a service never
  started is not 0 % up, nor 100 %).
- An unresponsive (or hung) service is down from its missed deadline's ``down_since`` (the
  last sign of life), not from when the miss was noticed: the running segment before it is
  cut there.
- *incident*: from a failure transition (``detail.failure``; from its ``down_since`` when it
  has one) until the service is running again; a second failure before that belongs to the
  same incident. One that ends because a person stopped the service is over, but not
  recovered: it counts as an incident, not in the time to recover.
- *MTTR*: the mean duration of the recovered incidents that ended inside the window (their
  whole duration, even when they began before it).
- *longest outage*: the longest incident that overlaps the window (an ongoing one measured to
  the window's end).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from heartwatch.core.events import ServiceState
from heartwatch.core.journal import DAEMON_STARTED, DAEMON_STOPPING, JournalEntry

UNKNOWN = "unknown"
NOT_WANTED = frozenset({ServiceState.STOPPED.value, ServiceState.STOPPING.value})
REASON_DAEMON_DOWN = "heartwatch was not running"
REASON_DAEMON_KILLED = "heartwatch was not running (it ended without stopping: killed?)"
REASON_NO_RECORD = "nothing recorded"
REASON_NOT_READ = "more history than one answer reads: choose a shorter window"


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    state: str  # a ServiceState value, or "unknown"
    reason: str
    entry_id: int | None  # the entry that began it (None: no entry, e.g. the window's edge)
    wanted: bool


@dataclass(frozen=True, slots=True)
class Incident:
    start: float  # the last sign of life (down_since) or the failure's time
    end: float | None  # None: still going at the window's end
    reason: str
    entry_id: int  # the failure transition
    recovered: bool  # ended by running again (not by a person's stop)


@dataclass(frozen=True, slots=True)
class Summary:
    uptime: float | None
    running_seconds: float
    wanted_seconds: float
    unknown_seconds: float
    incidents: int
    mttr_seconds: float | None
    longest_outage_seconds: float | None


@dataclass(frozen=True, slots=True)
class History:
    segments: list[Segment]
    incidents: list[Incident]
    summary: Summary


def daemon_started(entry: JournalEntry) -> bool:
    return entry.kind == "daemon" and entry.reason.startswith(DAEMON_STARTED)


def daemon_stopping(entry: JournalEntry) -> bool:
    return entry.kind == "daemon" and entry.reason.startswith(DAEMON_STOPPING)


def killed_starts(entries: Iterable[JournalEntry]) -> list[JournalEntry]:
    """The daemon starts that no "stopping" entry preceded: the daemon before was killed (its
    absence begins at its last sign of life, which the store finds)."""
    found = []
    previous: JournalEntry | None = None
    for entry in entries:
        if entry.kind == "daemon":
            if daemon_started(entry) and previous is not None and daemon_started(previous):
                found.append(entry)
            previous = entry
    return found


def _wanted(state: str, failure: bool) -> bool:
    if state == UNKNOWN or state in NOT_WANTED:
        return False
    if state == ServiceState.EXITED.value:
        return failure
    return True


def _failure(entry: JournalEntry) -> bool:
    return bool(entry.detail and entry.detail.get("failure"))


def _down_since(entry: JournalEntry) -> float | None:
    value = entry.detail.get("down_since") if entry.detail else None
    return float(value) if isinstance(value, int | float) else None


def service_history(
    entries: Iterable[JournalEntry],
    *,
    service: str,
    since: float,
    until: float,
    last_alive: Mapping[int, float] | None = None,
    read_until: float | None = None,
) -> History:
    """Segments covering [``since``, ``until``] and the summary, from ``entries``.

    ``entries``: ``service``'s transitions and the daemon's own entries, in journal order,
    starting early enough to know the state at ``since`` and any incident open then (the
    store's ``history_entries`` gives that). Other services' transitions and other kinds
    only show that the daemon was alive.
    ``last_alive``: for a "started" entry that no "stopping" entry preceded (the daemon before
    it was killed), the last sign of life of the previous daemon (entry id -> Unix time); its
    absence begins there. Without it, at the last entry given before that start.
    ``read_until``: the entries given end there (the store's read was cut short): what
    follows is unknown, not the last state drawn on.
    """
    if until < since:
        raise ValueError("until is before since")
    last_alive = last_alive or {}
    # The open segment's state as the journal says, before clipping to the window.
    state, reason, entry_id, failure = UNKNOWN, REASON_NO_RECORD, None, False
    opened = since
    # The daemon, as its entries tell: "absent" (none yet, or gone), "up", or "going" (its
    # "stopping" written: it stops the services, whose transitions still come, then ends).
    daemon = "absent"
    stopping_id: int | None = None
    last_seen: float | None = None  # the last entry's time: the daemon was alive then
    raw: list[Segment] = []
    incidents: list[Incident] = []
    incident: tuple[float, str, int] | None = None

    def close(at: float) -> None:
        raw.append(Segment(opened, at, state, reason, entry_id, _wanted(state, failure)))

    def end_incident(at: float, recovered: bool) -> None:
        nonlocal incident
        if incident is not None:
            incidents.append(Incident(incident[0], at, incident[1], incident[2], recovered))
            incident = None

    def daemon_gone(gone: float, why: str, why_id: int | None, limit: float) -> None:
        """The daemon ended at ``gone``: unknown from there (held inside the open segment)."""
        nonlocal state, reason, entry_id, failure, opened
        gone = min(max(gone, opened), limit)
        close(gone)
        state, reason, entry_id, failure, opened = UNKNOWN, why, why_id, False, gone

    for entry in entries:
        at = entry.at
        if at > until:
            if not daemon_started(entry):
                last_seen = at  # the daemon still wrote this: it was there to the window's end
            break
        if daemon_started(entry):
            if daemon == "up":  # no "stopping": the daemon before was killed
                seen = last_seen if last_seen is not None else at
                daemon_gone(last_alive.get(entry.id, seen), REASON_DAEMON_KILLED, None, at)
            elif daemon == "going":  # it stopped after its last entry
                daemon_gone(
                    last_seen if last_seen is not None else at, REASON_DAEMON_DOWN, stopping_id, at
                )
            close(at)
            # A new daemon starts with every service stopped, until it starts them.
            state, reason, entry_id, failure = (
                ServiceState.STOPPED.value,
                entry.reason,
                entry.id,
                False,
            )
            opened = at
            daemon = "up"
        elif daemon_stopping(entry):
            daemon, stopping_id = "going", entry.id
        elif entry.kind == "transition" and entry.state is not None and entry.service == service:
            start = at
            down_since = _down_since(entry)
            if down_since is not None and state == ServiceState.RUNNING.value:
                start = min(max(down_since, opened), at)  # down from its last sign of life
            close(start)
            state, reason, entry_id = entry.state, entry.reason, entry.id
            failure = _failure(entry)
            opened = start
            if failure and incident is None:
                incident = (start, entry.reason, entry.id)
            elif state == ServiceState.RUNNING.value:
                end_incident(at, True)
            elif not _wanted(state, failure):
                end_incident(at, False)
        last_seen = at
    if daemon == "going" and last_seen is not None:
        daemon_gone(last_seen, REASON_DAEMON_DOWN, stopping_id, until)
    if read_until is not None and read_until < until:
        close(max(read_until, opened))
        state, reason, entry_id, failure = UNKNOWN, REASON_NOT_READ, None, False
        opened = max(read_until, opened)
    close(until)
    if incident is not None:
        incidents.append(Incident(incident[0], None, incident[1], incident[2], False))
    segments = _clip(raw, since, until)
    return History(segments, incidents, _summarize(segments, incidents, since, until))


def _clip(raw: Sequence[Segment], since: float, until: float) -> list[Segment]:
    """The segments inside [since, until], contiguous; zero-length ones dropped, and
    neighbours of the same state and reason merged (a window that starts before any
    record is one unknown segment, not one per empty stretch)."""
    segments: list[Segment] = []
    for segment in raw:
        start, end = max(segment.start, since), min(segment.end, until)
        if end <= start:
            continue
        previous = segments[-1] if segments else None
        if (
            previous is not None
            and previous.state == segment.state == UNKNOWN
            and previous.end == start
        ):
            segments[-1] = Segment(
                previous.start, end, UNKNOWN, previous.reason, previous.entry_id, False
            )
            continue
        segments.append(
            Segment(start, end, segment.state, segment.reason, segment.entry_id, segment.wanted)
        )
    if not segments:  # an empty window (since == until)
        segments.append(Segment(since, until, UNKNOWN, REASON_NO_RECORD, None, False))
    return segments


def _summarize(
    segments: Sequence[Segment], incidents: Sequence[Incident], since: float, until: float
) -> Summary:
    running = sum(s.end - s.start for s in segments if s.state == ServiceState.RUNNING.value)
    wanted = sum(s.end - s.start for s in segments if s.wanted)
    unknown = sum(s.end - s.start for s in segments if s.state == UNKNOWN)
    overlapping = [i for i in incidents if i.start < until and (i.end is None or i.end > since)]
    recovered = [
        i.end - i.start
        for i in overlapping
        if i.recovered and i.end is not None and since <= i.end <= until
    ]
    durations = [(i.end if i.end is not None else until) - i.start for i in overlapping]
    return Summary(
        uptime=running / wanted if wanted > 0 else None,
        running_seconds=running,
        wanted_seconds=wanted,
        unknown_seconds=unknown,
        incidents=len(overlapping),
        mttr_seconds=sum(recovered) / len(recovered) if recovered else None,
        longest_outage_seconds=max(durations) if durations else None,
    )
