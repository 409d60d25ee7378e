"""The last N lines of a file, read backwards from the end in blocks. Pure over ``read_at``.

The cost depends on N and on the lines' length, never on the file's size: a 2 GB log answers
as fast as a 2 KB one. Reading stops at the last newline: a partial last line (still being
written) is left to the follower, which waits for its newline, so it is never shown twice or
cut in two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

BLOCK_SIZE = 64 * 1024

# read_at(offset, size) -> up to size bytes from offset (os.pread on an open file).
ReadAt = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class Tail:
    lines: list[bytes]  # without their newlines, oldest first
    end: int  # offset just after the last complete line: where following starts


def read_last_lines(
    read_at: ReadAt,
    size: int,
    count: int,
    *,
    max_bytes: int = 16 * 1024 * 1024,
    block_size: int = BLOCK_SIZE,
) -> Tail:
    """The last ``count`` complete lines of a file of ``size`` bytes, read ``block_size``
    bytes at a time.

    At most ``max_bytes`` are read backwards (a file of one enormous line must not be read
    whole); if that bound is hit, the oldest line returned is only the end of its line.
    """
    if count <= 0 or size <= 0:
        return Tail([], max(size, 0))
    position = size
    chunks: list[bytes] = []
    newlines = 0
    end: int | None = None
    while position > 0 and size - position < max_bytes:
        start = max(0, position - block_size)
        block = read_at(start, position - start)
        if not block:
            break
        if end is None:
            last = block.rfind(b"\n")
            if last < 0:
                position = start
                chunks.append(block)
                continue
            end = start + last + 1
            block = block[: last + 1]
            chunks = []  # what followed the last newline is the follower's
        chunks.append(block)
        newlines += block.count(b"\n")
        position = start
        # count + 1 newlines means the oldest wanted line's start is known
        if newlines > count:
            break
    if end is None:
        return Tail([], 0)  # no complete line at all: all of it is the follower's
    lines = b"".join(reversed(chunks)).split(b"\n")[:-1]
    return Tail(lines[-count:], end)


def follow_from(read_at: ReadAt, size: int, *, max_partial: int) -> int:
    """Where following a file of ``size`` bytes starts: after its last complete line (a line
    still being written is the follower's, shown once it is complete), unless more than
    ``max_partial`` bytes follow that line: so huge an unterminated tail is not replayed,
    following starts at the end."""
    if size <= 0:
        return 0
    end = read_last_lines(read_at, size, 1, max_bytes=max_partial).end
    return size if size - end > max_partial else end
