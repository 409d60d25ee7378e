"""A fair share of the event loop for busy readers: a few read at a time, the rest wait in turn.

An event loop reads every ready connection once per turn, and only then runs its due timers.
With a hundred connections sending flat out, a turn is a hundred reads (tens of milliseconds),
and every heartbeat deadline waits as long. So a connection whose read filled its buffer (a
*busy* one: more is waiting in the kernel) must hold one of ``slots`` to keep reading. Without
a free slot it is paused (the kernel's flow control then holds its sender back) and queued;
whenever a slot holder reads again while others wait, it yields its slot to the first in the
queue and goes to the back: round robin, one read per turn each. A turn thus handles at most
``slots`` busy reads however many connections flood, and the loop stays as busy as it can be
(nobody is paused while a slot is free), so a single bulk sender still gets the whole loop.

Connections that are not busy (a worker's few heartbeats a second, the client library's at most
ten) never wait. A slot holder that goes quiet gives its slot up at its next read that does not
fill the buffer, or, if it does not read at all, at the next ``sweep`` after ``idle_after``.

Pure: readers are any hashable handles, the caller passes ``now`` and carries out the pauses
and resumes this module decides.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

R = TypeVar("R", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Turn(Generic[R]):
    """What the caller does after a read: pause this reader or not, and whom to resume."""

    pause: bool = False
    resume: tuple[R, ...] = ()


@dataclass(slots=True)
class _Slot:
    read_at: float  # the holder's last read (or when it was given the slot)
    reads_left: int  # busy reads before it yields to a waiting reader


@dataclass
class FairShare(Generic[R]):
    slots: int = 4
    quantum: int = 4  # busy reads a holder has before it yields its slot to a waiting reader
    idle_after: float = 0.05  # seconds without a read after which a slot holder lets go
    _holders: dict[R, _Slot] = field(default_factory=dict)
    _waiting: OrderedDict[R, None] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if self.slots < 1 or self.quantum < 1:
            raise ValueError("at least one slot and one read per turn at it")

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def holds_slot(self, reader: R) -> bool:
        return reader in self._holders

    def read(self, reader: R, busy: bool, now: float) -> Turn[R]:
        """``reader`` read; ``busy``: the read filled its buffer (more is waiting)."""
        holders = self._holders
        if not busy:
            if holders.pop(reader, None) is None:
                return _KEEP  # the common case: a light reader, nothing to decide
            return Turn(resume=self._fill(now))
        slot = holders.get(reader)
        if slot is not None:
            slot.read_at = now
            slot.reads_left -= 1
            if slot.reads_left > 0 or not self._waiting:
                return _KEEP
            del holders[reader]  # its turn is over: to the back of the queue
            self._waiting[reader] = None
            return Turn(pause=True, resume=self._fill(now))
        if reader in self._waiting:  # a read that was already under way when it was paused
            return Turn(pause=True)
        if len(holders) < self.slots:
            holders[reader] = _Slot(now, self.quantum)
            return _KEEP
        self._waiting[reader] = None
        return Turn(pause=True)

    def sweep(self, now: float) -> tuple[R, ...]:
        """Free the slots of holders that have not read for ``idle_after``; whom to resume."""
        if not self._waiting:
            return ()
        quiet = [r for r, s in self._holders.items() if now - s.read_at >= self.idle_after]
        for reader in quiet:
            del self._holders[reader]
        return self._fill(now)

    def forget(self, reader: R, now: float) -> tuple[R, ...]:
        """``reader`` is gone (closed); whom to resume in its place."""
        self._waiting.pop(reader, None)
        if self._holders.pop(reader, None) is None:
            return ()
        return self._fill(now)

    def _fill(self, now: float) -> tuple[R, ...]:
        resumed = []
        while self._waiting and len(self._holders) < self.slots:
            reader, _ = self._waiting.popitem(last=False)
            self._holders[reader] = _Slot(now, self.quantum)  # it reads on a later turn
            resumed.append(reader)
        return tuple(resumed)


_KEEP: Turn[Any] = Turn()
