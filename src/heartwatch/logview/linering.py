"""The lines of one followed file, numbered, shared by all its viewers. Pure.

Every entry gets a sequence number; a viewer is a cursor (the number of the next entry it
wants). The ring keeps:

- everything a viewer that keeps up has not taken yet (pacing says from where:
  ``trim(protected)``), so such a viewer never loses a line, however small the history is;
- beyond that, at most ``capacity`` entries and ``max_bytes`` bytes of history for slower
  viewers. A viewer whose cursor falls below ``start`` has lost ``start - cursor`` entries and
  is told so.

Entries are let in with ``fill(held, fastest)`` (by ``pacing.py``) only while the fastest
viewer is less than ``capacity`` entries (and ``max_bytes``) behind, and stops reading until
that viewer catches up. The file on disk is then the buffer, as it is for ``tail -f`` over a
slow link, so memory stays bounded (history plus one read) and only viewers slower than the
fastest ever skip.

Entries are lines (``str``) or ``Marker``s, heartwatch's own notices (a truncation, a rotation),
which are a type of their own so that no line of the file can pass for one.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Marker:
    """A notice about the file itself, shown as ``[heartwatch] <text>``.

    ``new_file``: the lines after it come from another file (a rotation, a file reappeared).
    """

    text: str
    new_file: bool = False


Entry = str | Marker


def utf8_size(text: str) -> int:
    """Bytes ``text`` costs as UTF-8 (ASCII, the usual case, without encoding it)."""
    return len(text) if text.isascii() else len(text.encode())


def entry_size(entry: Entry) -> int:
    """Bytes an entry costs as UTF-8."""
    return utf8_size(entry.text if isinstance(entry, Marker) else entry)


class LineRing:
    """Sequence-numbered entries, trimmed to what some viewer may still want."""

    def __init__(self, capacity: int, max_bytes: int) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._entries: list[Entry] = []
        self._sizes: list[int] = []  # _sizes[i]: bytes appended before _entries[i]
        self._head = 0  # index in _entries of the oldest kept entry
        self._base = 0  # sequence number of _entries[0]
        self._total = 0  # bytes appended since the beginning

    @property
    def start(self) -> int:
        """Sequence number of the oldest entry kept."""
        return self._base + self._head

    @property
    def end(self) -> int:
        """Sequence number the next entry will get."""
        return self._base + len(self._entries)

    def __len__(self) -> int:
        return len(self._entries) - self._head

    def __getitem__(self, seq: int) -> Entry:
        """The entry numbered ``seq`` (``start <= seq < end``)."""
        if not self.start <= seq < self.end:
            raise IndexError(f"entry {seq} is not kept (kept: {self.start}..{self.end - 1})")
        return self._entries[seq - self._base]

    def fill(self, held: deque[Entry], fastest: int) -> int:
        """Move entries from the front of ``held`` while the viewer at ``fastest`` has room
        (``capacity`` entries, ``max_bytes`` bytes beyond it); return how many moved."""
        room = self.capacity - (self.end - fastest)
        byte_room = self.max_bytes - self.bytes_from(fastest)
        moved = 0
        entries, sizes, total = self._entries, self._sizes, self._total
        while held and moved < room and byte_room > 0:
            entry = held.popleft()
            size = entry_size(entry)
            sizes.append(total)
            entries.append(entry)
            total += size
            byte_room -= size
            moved += 1
        self._total = total
        return moved

    def bytes_from(self, seq: int) -> int:
        """Bytes of the kept entries numbered ``seq`` and later."""
        seq = max(seq, self.start)
        if seq >= self.end:
            return 0
        return self._total - self._sizes[seq - self._base]

    def trim(self, protected: int) -> None:
        """Drop history beyond the bounds, but nothing numbered ``protected`` or later."""
        keep = max(self.end - self.capacity, self._first_within_bytes())
        keep = min(keep, protected, self.end)
        if keep <= self.start:
            return
        self._head = keep - self._base
        # Compact once the dropped head outweighs what is kept: amortised O(1) per entry.
        if self._head >= 1024 and self._head * 2 >= len(self._entries):
            del self._entries[: self._head]
            del self._sizes[: self._head]
            self._base += self._head
            self._head = 0

    def _first_within_bytes(self) -> int:
        """The first sequence number from which the kept entries fit in ``max_bytes``."""
        floor = self._total - self.max_bytes
        index = bisect.bisect_left(self._sizes, floor, lo=self._head)
        return self._base + index
