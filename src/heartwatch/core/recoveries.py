"""Each recovery as steps people can check: for every member, when its stop signal went out,
when its process was gone, when it was spawned again, when it was ready. Pure.

A recovery entry (kind "recovery", service: the trigger, ``detail.members`` in start order)
is followed in the journal by what the supervisor did to each member: an ``exit`` entry
(``detail.stop_sent``: the Unix time the stop signal went out, on an exit that ended a stop),
a ``restart`` entry (the spawn, ``detail.cause`` "recovery") and a transition to ``running``
(ready). A trigger that crashed was gone before its recovery began: its exit is the last one
before the recovery entry, after its previous start. A member's steps end at the next
recovery it takes part in; a step that never happened (a watch-only service has no process;
a start still waiting) is ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from heartwatch.core.journal import JournalEntry

# How far before a recovery entry its trigger's exit may lie (a crash is journaled in the
# same loop turn as the recovery it causes; this bound only keeps an old exit out).
TRIGGER_EXIT_LOOKBACK = 60.0


@dataclass(frozen=True, slots=True)
class Step:
    service: str
    stop_sent: float | None
    gone: float | None
    spawned: float | None
    ready: float | None


@dataclass(frozen=True, slots=True)
class Recovery:
    id: int
    at: float
    trigger: str
    reason: str
    members: list[str]
    steps: list[Step]
    duration_seconds: float | None  # the recovery entry to the last member ready


def members_of(entry: JournalEntry) -> list[str]:
    members = entry.detail.get("members") if entry.detail else None
    if isinstance(members, list) and all(isinstance(m, str) for m in members):
        return list(members)
    return [entry.service] if entry.service is not None else []


def _number(entry: JournalEntry, key: str) -> float | None:
    value = entry.detail.get(key) if entry.detail else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def recovery_steps(
    recovery: JournalEntry,
    entries: Sequence[JournalEntry],
    later_recoveries: Sequence[JournalEntry] = (),
) -> Recovery:
    """The steps of ``recovery`` from ``entries`` (the members' entries in journal order,
    from a little before it: ``TRIGGER_EXIT_LOOKBACK``). ``later_recoveries``: recoveries
    after it; a member's steps stop at the next one it belongs to."""
    if recovery.kind != "recovery":
        raise ValueError(f"entry {recovery.id} is a {recovery.kind}, not a recovery")
    members = members_of(recovery)
    trigger = recovery.service or ""
    steps = []
    for member in members:
        next_id = min(
            (r.id for r in later_recoveries if r.id > recovery.id and member in members_of(r)),
            default=None,
        )
        own = [e for e in entries if e.service == member]
        stop_sent = gone = spawned = ready = None
        if member == trigger:
            gone = _exit_before(own, recovery)
        for entry in own:
            if entry.id <= recovery.id:
                continue
            if next_id is not None and entry.id >= next_id:
                break
            if entry.kind == "exit" and gone is None and spawned is None:
                gone = entry.at
                stop_sent = _number(entry, "stop_sent")
            elif entry.kind == "restart" and spawned is None:
                spawned = entry.at
            elif (
                entry.kind == "transition"
                and entry.state == "running"
                and spawned is not None
                and ready is None
            ):
                ready = entry.at
        steps.append(Step(member, stop_sent, gone, spawned, ready))
    readies = [s.ready for s in steps]
    duration = (
        max(r for r in readies if r is not None) - recovery.at
        if readies and all(r is not None for r in readies)
        else None
    )
    return Recovery(
        id=recovery.id,
        at=recovery.at,
        trigger=trigger,
        reason=recovery.reason,
        members=members,
        steps=steps,
        duration_seconds=duration,
    )


def _exit_before(own: Sequence[JournalEntry], recovery: JournalEntry) -> float | None:
    """The trigger's exit that caused the recovery: its last exit before the recovery entry,
    with no start of it in between."""
    found: float | None = None
    for entry in own:
        if entry.id >= recovery.id:
            break
        if entry.kind == "exit" and entry.at >= recovery.at - TRIGGER_EXIT_LOOKBACK:
            found = entry.at
        elif entry.kind == "restart" or (
            entry.kind == "transition" and entry.state in ("starting", "running")
        ):
            found = None
    return found
