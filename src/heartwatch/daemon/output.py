"""A service's captured stdout/stderr: one file, rotated by size, with N numbered backups.

``collector.log`` is always the newest; on rotation it becomes ``collector.log.1``, which
becomes ``.2``, and the oldest falls off. Rename rotation means a reader following the file
(``tail -F``) sees an inode change and reopens, and never reads half-rotated data.

Writing never raises: a full disk or a failed rotation loses output, never the supervisor. What
is lost is counted (``write_errors``) and shown in the service's status and in ``/metrics``.

Each write says which stream it is from (``stdout``, ``stderr``, ``heartwatch`` for the
daemon's own lines); with ``timestamps`` (``output_timestamps``) every line gets the daemon's
wall-clock time in front, ISO 8601 with milliseconds (``core/outputlines.LineStamper``).
``clear`` empties the file and removes its backups (``DELETE /api/v1/services/{name}/output``).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from heartwatch.core.outputlines import LineStamper

HEARTWATCH_STREAM = "heartwatch"  # the daemon's own [heartwatch] lines


class RotatingOutput:
    def __init__(self, path: Path, max_bytes: int, backups: int, timestamps: bool = False) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.timestamps = timestamps  # the service's output_timestamps, set at each spawn
        self._stamper = LineStamper()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._closed = False
        self.write_errors = 0  # writes whose output was lost

    def write(self, data: bytes, stream: str = HEARTWATCH_STREAM) -> None:
        """Append ``data`` from ``stream``, or count it lost; never raises."""
        if self._closed:
            return  # after shut-down: nobody is left to read it
        if self.timestamps:
            data = self._stamper.stamp(stream, data, _wall_clock_stamp())
        try:
            if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            if self._fd < 0:
                self.write_errors += 1  # a rotation failed to reopen: tried again next time
                return
            os.write(self._fd, data)
            self._size += len(data)
        except OSError:
            self.write_errors += 1

    def clear(self) -> int:
        """Empty the file and remove its numbered backups; return the bytes removed.

        The file is truncated in place (its writer appends, so the next line starts it
        again; a follower sees a truncation), not replaced. Raises ``OSError``."""
        removed = 0
        prefix = self.path.name + "."
        for entry in os.scandir(self.path.parent):
            suffix = entry.name[len(prefix) :]
            if entry.name.startswith(prefix) and suffix.isdigit() and entry.is_file():
                removed += entry.stat().st_size
                os.unlink(entry.path)
        if self._fd >= 0:
            removed += os.fstat(self._fd).st_size
            os.ftruncate(self._fd, 0)
        elif self.path.exists():
            removed += self.path.stat().st_size
            os.truncate(self.path, 0)
        self._size = 0
        self._stamper.reset()
        return removed

    def close(self) -> None:
        self._closed = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _rotate(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1  # never keep a closed number another file could be given
        # Not when a rotation moved it away, then could not open the new one: then only reopen.
        if self.path.exists():
            if self.backups:
                for index in range(self.backups - 1, 0, -1):
                    older = self.path.with_name(f"{self.path.name}.{index}")
                    if older.exists():
                        older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
                self.path.replace(self.path.with_name(f"{self.path.name}.1"))
            else:
                self.path.unlink()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = 0


def _wall_clock_stamp() -> bytes:
    """Now, as a line's prefix: local time, ISO 8601 with milliseconds and the UTC offset."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds").encode() + b" "
