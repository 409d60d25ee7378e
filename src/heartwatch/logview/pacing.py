"""Reading a followed file, paced by its fastest viewer. Pure.

What the follower reads is *held* here first, and let into the shared ``LineRing`` only while
the fastest viewer, judged by what it has *sent*, is less than a history (the ring's capacity,
in entries and bytes) behind. While lines are held, reading waits: the file itself is the
buffer, as for ``tail -f`` over a slow link. It goes on when that viewer's next frame is out
and everything held got in. History is trimmed to the ring's bounds, but never past what a
viewer waiting for lines (not stuck in a send) has yet to take: such a viewer keeps up, and
runs next.

So the fastest viewer never skips, a slower one skips only what the history moved past, and
memory stays bounded: the ring's bounds, plus what one read brought.

The driver (``daemon/logfollow.py``) asks ``may_read`` before each read, hands what it read to
``receive_entries``, and tells ``receive_progress`` when a viewer sent a frame (joined, left);
it wakes the viewers when entries got in, and reads on when told to.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Generic, NamedTuple, Protocol, TypeVar

from heartwatch.logview.linering import Entry, LineRing, Marker


class Cursor(Protocol):
    """What pacing needs of a viewer (``viewer.LogView``)."""

    @property
    def cursor(self) -> int: ...

    @property
    def sent(self) -> int: ...

    @property
    def in_flight(self) -> bool: ...


V = TypeVar("V", bound=Cursor)


class Progress(NamedTuple):
    released: int  # entries that got into the ring: viewers waiting for lines are to be woken
    resumed: bool  # reading, which waited, goes on now


class ReadPacer(Generic[V]):
    """The ring, what was read but waits for room in it, and the viewers of both."""

    def __init__(self, ring: LineRing) -> None:
        self.ring = ring
        self.views: set[V] = set()
        self.held: deque[Entry] = deque()  # read, waiting for room in the ring
        self.paused = False  # reading waits for the fastest viewer's next frame

    @property
    def waiting(self) -> bool:
        """Lines read wait for room in the ring (and reading may wait for them)."""
        return self.paused or bool(self.held)

    def fastest(self) -> int:
        """Where the viewer furthest ahead in what it has sent stands."""
        return max((view.sent for view in self.views), default=self.ring.end)

    def protected(self, fastest: int) -> int:
        """History from here on is kept: what the fastest sent, and what viewers waiting for
        lines (not stuck in a send) have yet to take."""
        waiting = [view.cursor for view in self.views if not view.in_flight]
        return min(fastest, *waiting) if waiting else fastest

    def may_read(self) -> bool:
        """Whether to read on now; if not, reading waits (``resume`` says when it goes on)."""
        if self.held:
            self.paused = True
            return False
        return True

    def receive_entries(self, entries: Sequence[Entry]) -> int:
        """Entries read (lines, heartwatch's notices): held, then let in while there is room;
        how many got into the ring."""
        if not entries:
            return 0
        self.held.extend(entries)
        return self.release()

    def release(self) -> int:
        """Move held entries into the ring while the fastest viewer has room, then trim; how
        many moved (viewers waiting for lines are to be woken if any did)."""
        fastest = self.fastest()
        released = self.ring.fill(self.held, fastest)
        self.ring.trim(self.protected(fastest))
        return released

    def receive_progress(self) -> Progress:
        """A viewer sent a frame, joined or left: let held entries in; reading that waited
        goes on once everything held got in."""
        released = self.release()
        resumed = self.paused and not self.held
        if resumed:
            self.paused = False
        return Progress(released, resumed)

    def held_of_open_file(self) -> int | None:
        """How many of the held entries are lines of the file now open (the newest ones, after
        the last notice); ``None`` if some held lines come from an older file, so that nothing
        of the open file can be shown before them."""
        held = 0
        for entry in reversed(self.held):
            if isinstance(entry, Marker):
                return None if entry.new_file else held
            held += 1
        return held
