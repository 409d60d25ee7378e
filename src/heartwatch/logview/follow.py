"""Following a file like ``tail -F``: what to do next, decided from ``stat`` results. Pure.

The driver keeps one file open and, whenever something may have changed (an inotify event,
or a poll), gives ``Follow.next_step`` two stats: of the open file (``fstat``) and of the path
(``stat``, ``None`` if nothing is there). Identity is ``(st_dev, st_ino)``:

- the open file grew: read from the offset to its size;
- the open file shrank below the offset (``copytruncate``): say so, start over at 0;
- the path now names another file (rename rotation: loguru, logrotate ``create``): open
  that file at once and keep it (``Track``), finish reading the old one to its end, then go
  on with the kept one from its start (``Advance``). Opening at once matters: a writer may
  rotate again before the old file is read to its end (reading waits for slow viewers), and a
  file kept open can still be read after it was renamed away. Up to ``max_tracked`` files are
  kept; beyond that, generations in between are lost, as with ``tail -F``;
- the path is gone (deleted, or between rename and create): keep reading the old file, and
  track a file that reappears;
- nothing open yet (the file did not exist): open it when it appears, from its start.

A truncation followed by fast writes past the old offset between two stats cannot be told
from growth by ``stat`` alone; ``tail -F`` has the same blind spot.

``LineAssembler`` turns the bytes read into lines: UTF-8 decoded incrementally with
replacement (a character split across reads is never garbled), a partial last line held back
until its newline or until it is flushed after a delay, over-long lines cut with a marker.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FileStat:
    dev: int
    ino: int
    size: int

    def same_file(self, other: FileStat) -> bool:
        return (self.dev, self.ino) == (other.dev, other.ino)


@dataclass(frozen=True, slots=True)
class Read:
    """Read the open file from ``start`` up to ``end``."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Truncated:
    """The open file was cut below what was read: lines may have been lost; read from 0."""

    lost_after: int

    @property
    def reason(self) -> str:
        return f"file truncated (lines after byte {self.lost_after} may be lost)"


@dataclass(frozen=True, slots=True)
class Reopen:
    """Close the open file (if any) and open the path anew, reading from its start."""

    reason: str


@dataclass(frozen=True, slots=True)
class Track:
    """Open the path now and keep that file: it comes after the open one."""


@dataclass(frozen=True, slots=True)
class Advance:
    """The open file is read to its end: close it, go on with the first kept file."""

    reason: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do until the next change."""


Step = Read | Truncated | Reopen | Track | Advance | Wait


class Follow:
    """The read position in the currently open file, the files kept to read next, the rules."""

    def __init__(self, opened: FileStat | None, offset: int, max_tracked: int = 8) -> None:
        self.opened = opened
        self.offset = offset
        self.max_tracked = max_tracked
        self.tracked: list[FileStat] = []  # opened, not read yet, oldest first
        self.untrackable: FileStat | None = None  # holds the name, but could not be opened

    def next_step(
        self, open_file: FileStat | None, at_path: FileStat | None, reading: bool = True
    ) -> Step:
        """What to do now; call again after acting on it, until it says ``Wait``.

        ``reading`` false: reading waits (for viewers); only what cannot wait is asked for,
        keeping a new file (``Track``: it may be renamed away soon) and saying that the open
        one was truncated (``Truncated``: its old offset means nothing any more)."""
        if not reading:
            if self.opened is None or open_file is None:
                return Wait()
            step = self._track_or_truncate(open_file, at_path)
            return Wait() if step is None else step
        if self.opened is None or open_file is None:
            if self.tracked:
                return Advance("the file was rotated")
            return Reopen("the file appeared") if at_path is not None else Wait()
        step = self._track_or_truncate(open_file, at_path)
        if step is not None:
            return step
        if open_file.size > self.offset:
            return Read(self.offset, open_file.size)
        if self.tracked:
            return Advance("the file was rotated")
        if (
            at_path is not None
            and not at_path.same_file(open_file)
            and not (self.untrackable is not None and at_path.same_file(self.untrackable))
        ):
            return Reopen("the file was rotated")  # more generations than could be kept
        return Wait()

    def _track_or_truncate(
        self, open_file: FileStat, at_path: FileStat | None
    ) -> Track | Truncated | None:
        if (
            at_path is not None
            and len(self.tracked) < self.max_tracked
            and not at_path.same_file(open_file)
            and not any(at_path.same_file(kept) for kept in self.tracked)
            and not (self.untrackable is not None and at_path.same_file(self.untrackable))
        ):
            return Track()
        if open_file.size < self.offset:
            lost = self.offset
            self.offset = 0
            return Truncated(lost)
        return None

    def receive_tracked(self, stat: FileStat) -> None:
        """The path was opened and kept; ``stat`` is what was actually opened."""
        if self.opened is not None and stat.same_file(self.opened):
            return  # the name went back to the open file in between: nothing new
        if not any(stat.same_file(kept) for kept in self.tracked):
            self.tracked.append(stat)

    def receive_track_failed(self, stat: FileStat) -> None:
        """The file now at the path could not be opened: do not try it again while it is there
        (the open file is still read to its end)."""
        self.untrackable = stat

    def receive_advanced(self) -> None:
        """The open file was closed; the first kept one is open now, read from its start."""
        self.opened = self.tracked.pop(0)
        self.offset = 0

    def receive_read(self, nbytes: int) -> None:
        """``nbytes`` were read at the offset."""
        self.offset += nbytes

    def receive_opened(self, stat: FileStat, offset: int = 0) -> None:
        self.opened = stat
        self.offset = offset

    def receive_closed(self) -> None:
        self.opened = None
        self.offset = 0


CUT_MARKER = " [… line cut at {limit} bytes]"
MAX_LINE = 64 * 1024


class LineAssembler:
    """Bytes in, complete lines out; a partial line waits ``flush_after`` seconds at most."""

    def __init__(self, max_line: int = MAX_LINE, flush_after: float = 0.5) -> None:
        self.max_line = max_line
        self.flush_after = flush_after
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._partial_since: float | None = None
        self._cutting = False  # inside an over-long line: drop until its newline

    def receive(self, data: bytes, now: float, final: bool = False) -> list[str]:
        """Lines completed by ``data``; ``final`` when no more bytes will follow (rotation)."""
        text = self._partial + self._decoder.decode(data, final=final)
        pieces = text.split("\n")
        self._partial = pieces.pop()
        lines = []
        for piece in pieces:
            if self._cutting:
                self._cutting = False
                continue
            lines.append(clip_line(piece.removesuffix("\r"), self.max_line))
        if len(self._partial) > self.max_line:
            if not self._cutting:
                lines.append(clip_line(self._partial, self.max_line))
            self._cutting = True
            self._partial = ""
        if self._partial and self._partial_since is None:
            self._partial_since = now
        elif not self._partial:
            self._partial_since = None
        return lines

    def flush_deadline(self) -> float | None:
        """When the held partial line is to be shown anyway."""
        return None if self._partial_since is None else self._partial_since + self.flush_after

    def flush(self) -> list[str]:
        """The partial line, shown now: its writer paused mid-line.

        Bytes of a character not yet complete stay in the decoder, so the rest of the line,
        when it comes, starts with that character whole, never with a replacement.
        """
        tail = self._partial
        self._partial, self._partial_since = "", None
        if not tail or self._cutting:
            return []
        return [clip_line(tail.removesuffix("\r"), self.max_line)]

    def finish(self) -> list[str]:
        """The partial line, shown now: no more bytes will come (the file was rotated away)."""
        tail = self._partial + self._decoder.decode(b"", final=True)
        cutting = self._cutting
        self.reset()
        if not tail or cutting:
            return []
        return [clip_line(tail.removesuffix("\r"), self.max_line)]

    def reset(self) -> None:
        """Start over (truncation, a new file): forget any partial line and decoder state."""
        self._decoder.reset()
        self._partial, self._partial_since, self._cutting = "", None, False


def clip_line(line: str, max_line: int) -> str:
    """``line``, cut at ``max_line`` characters with a marker saying so."""
    if len(line) <= max_line:
        return line
    return line[:max_line] + CUT_MARKER.format(limit=max_line)
