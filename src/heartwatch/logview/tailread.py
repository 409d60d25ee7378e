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
    cut: bool  # True if the first line shown is only the end of a longer line


def read_last_lines(
    read_at: ReadAt, size: int, count: int, *, max_bytes: int = 16 * 1024 * 1024
) -> Tail:
    """The last ``count`` complete lines of a file of ``size`` bytes.

    At most ``max_bytes`` are read backwards (a file of one enormous line must not be read
    whole); if that bound is hit, the oldest line returned is cut and ``cut`` says so.
    """
    if count <= 0 or size <= 0:
        return Tail([], max(size, 0), False)
    position = size
    chunks: list[bytes] = []
    newlines = 0
    end: int | None = None
    while position > 0 and size - position < max_bytes:
        start = max(0, position - BLOCK_SIZE)
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
        return Tail([], 0, False)  # no complete line at all: all of it is the follower's
    data = b"".join(reversed(chunks))
    lines = data.split(b"\n")[:-1]
    reached_start = position == 0
    if len(lines) > count:
        return Tail(lines[-count:], end, False)
    return Tail(lines, end, not reached_start)
