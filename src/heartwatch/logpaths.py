"""Which files may be shown: the path rules for live logs.

A path is served only if:

1. it contains no NUL;
2. its real path (every symlink resolved, ``..`` collapsed) lies inside one of the configured
   roots, compared component by component, never as a string prefix (``/var/log2`` is not
   inside ``/var/log``); a symlink inside a root that points outside is therefore refused;
3. it names a regular file: no directory, FIFO, socket or device.

It is opened with ``O_NONBLOCK`` (a FIFO swapped in between the check and the open cannot
block the server) and checked again with ``fstat`` on the open descriptor, so what is read is
what was checked. Refusals carry a websocket close code and a reason a person can act on.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

OUTSIDE_ROOTS = 4403
NO_SUCH_LOG = 4404
BAD_PATH = 4400


class LogPathError(Exception):
    """The path is refused; ``code`` is the websocket close code, ``reason`` says why."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


@dataclass(frozen=True, slots=True)
class OpenedLog:
    path: Path  # the real path
    fd: int


def resolve_log_path(requested: str, roots: Sequence[Path]) -> Path:
    """The real path of ``requested`` if the rules allow it; ``LogPathError`` otherwise.

    A relative path is taken relative to each root in turn; the first that exists wins.
    """
    if not requested or "\0" in requested:
        raise LogPathError(BAD_PATH, "a log path must be non-empty and contain no NUL")
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    if not real_roots:
        raise LogPathError(OUTSIDE_ROOTS, "no log roots are configured")
    candidates = (
        [Path(requested)] if os.path.isabs(requested) else [r / requested for r in real_roots]
    )
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))
        if not any(real.is_relative_to(root) for root in real_roots):
            continue
        try:
            mode = os.stat(real).st_mode
        except OSError:
            continue
        if not stat.S_ISREG(mode):
            raise LogPathError(OUTSIDE_ROOTS, "not a regular file")
        return real
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))
        if not any(real.is_relative_to(root) for root in real_roots):
            raise LogPathError(OUTSIDE_ROOTS, "outside the allowed log roots")
    raise LogPathError(NO_SUCH_LOG, "no such log")


def open_log(real: Path) -> OpenedLog:
    """Open a resolved path for reading, never blocking, and re-check it is a regular file."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LogPathError(NO_SUCH_LOG, "no such log") from None
    except OSError as error:
        raise LogPathError(OUTSIDE_ROOTS, f"cannot open: {error.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LogPathError(OUTSIDE_ROOTS, "not a regular file")
    os.set_blocking(fd, True)  # regular files never block; plain reads from here on
    return OpenedLog(real, fd)
