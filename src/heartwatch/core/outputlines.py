"""A service's captured output, line by line: timestamps at line starts, and its last words.

A child's stdout and stderr come through separate pipes (so the daemon knows which line came
from where) and, with heartwatch's own ``[heartwatch]`` lines, into one file. Chunks arrive as
they are read, cut anywhere, so both helpers here work on bytes and keep a partial line:

- ``LineStamper`` puts the daemon's wall-clock time (given, as bytes) before every line that
  starts (``output_timestamps = true``). A stream's partial line is continued by its next
  chunk; if another stream writes in between, the file's line is ended first, so every line
  of the file is one stream's and starts with its time.
- ``LastLine`` keeps a stream's last non-empty line, for a crash's reason (``exit code 1:
  ModuleNotFoundError: No module named 'heartwatch'``): as text a person can read in one line,
  with colour codes and other control characters removed, bounded in length, and credentials
  in URLs masked (``core/redact.py``): the reason goes to status, history and alerts, beyond
  the machine, and a crashing client often prints the URL it could not reach.
"""

from __future__ import annotations

import re

from heartwatch.core.redact import redact

# Terminal escape sequences (CSI such as colours, OSC such as titles, two-byte ones), then any
# control character left (C0, DEL, C1) and the bidirectional overrides that reorder text.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?")
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+")

LAST_LINE_CHARS = 300  # of a line quoted in a reason; longer ones end in "…"
_HELD_BYTES = 4096  # of the line being written: enough for LAST_LINE_CHARS of any UTF-8


class LineStamper:
    """Timestamps at the start of each line of one file fed by several streams."""

    def __init__(self) -> None:
        self._open: str | None = None  # the stream whose line the file is in the middle of

    def stamp(self, stream: str, data: bytes, stamp: bytes) -> bytes:
        """``data`` from ``stream`` as it goes into the file: ``stamp`` before each line."""
        if not data:
            return b""
        out = bytearray()
        if self._open is not None and self._open != stream:
            out += b"\n"  # another stream's line was left unfinished: end it in the file
            self._open = None
        at_start = self._open is None
        *complete, rest = data.split(b"\n")
        for line in complete:
            if at_start:
                out += stamp
            out += line
            out += b"\n"
            at_start = True
        if rest:
            if at_start:
                out += stamp
            out += rest
            self._open = stream
        else:
            self._open = None
        return bytes(out)

    def reset(self) -> None:
        """The file was emptied: whatever comes next starts a line."""
        self._open = None


class LastLine:
    """The last non-empty line a stream wrote (an unfinished one counts)."""

    def __init__(self, max_chars: int = LAST_LINE_CHARS) -> None:
        self.max_chars = max_chars
        self._partial = bytearray()  # the line being written, its first _HELD_BYTES
        self._last = b""  # the last complete line that says something

    def receive(self, data: bytes) -> None:
        *complete, rest = data.split(b"\n")
        if complete:
            lines = [bytes(self._partial) + complete[0], *complete[1:]]
            for line in reversed(lines):
                if readable_line(line[:_HELD_BYTES], self.max_chars):
                    self._last = line[:_HELD_BYTES]
                    break
            self._partial = bytearray(rest[:_HELD_BYTES])
        else:
            self._partial += rest[: max(0, _HELD_BYTES - len(self._partial))]

    def text(self) -> str | None:
        """The last line that says something, readable and redacted, or ``None``."""
        line = readable_line(bytes(self._partial), self.max_chars) or readable_line(
            self._last, self.max_chars
        )
        return redact(line) if line else None


def without_controls(text: str) -> str:
    """``text`` without terminal escape sequences, its control characters (and bidi
    overrides) as spaces: what a program printed, safe to quote in a reason, a log or a CSV."""
    return _CONTROLS.sub(" ", _ESCAPES.sub("", text))


def readable_line(line: bytes, max_chars: int = LAST_LINE_CHARS) -> str:
    """One line of a program's output as plain text for a reason: what a terminal would show
    last (after a carriage return), without escape or control characters, at most
    ``max_chars`` (longer: cut, ending in "…"); "" if nothing readable is left."""
    text = line.decode("utf-8", errors="replace")
    for segment in reversed(text.split("\r")):
        clean = without_controls(segment).strip()
        if clean:
            return clean if len(clean) <= max_chars else clean[: max_chars - 1] + "…"
    return ""
