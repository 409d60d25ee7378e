"""A service's captured stdout/stderr: one file, rotated by size, with N numbered backups.

``collector.log`` is always the newest; on rotation it becomes ``collector.log.1``, which
becomes ``.2``, and the oldest falls off. Rename rotation means a reader following the file
(``tail -F``) sees an inode change and reopens, and never reads half-rotated data.

Writing never raises: a full disk or a failed rotation loses output, never the supervisor. What
is lost is counted (``write_errors``) and shown in the service's status and in ``/metrics``.
"""

from __future__ import annotations

import os
from pathlib import Path


class RotatingOutput:
    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._closed = False
        self.write_errors = 0  # writes whose output was lost

    def write(self, data: bytes) -> None:
        """Append ``data``, or count it lost; never raises."""
        if self._closed:
            return  # after shut-down: nobody is left to read it
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
