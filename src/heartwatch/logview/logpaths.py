"""Which files may be shown: the path rules for live logs. Pure: strings in, decisions out.

A requested path is turned into (root, components below it) here, and opened by the driver
(``daemon/beneath.py``) in one step relative to the root's folder, so that nothing can be
swapped between a check and the open. The rules:

1. the request is non-empty, at most ``MAX_PATH`` characters, and holds no NUL;
2. a relative path is taken below each root in turn (the first that opens wins); an absolute
   one must start with a root, as configured or as its real path, compared by components
   (``/var/log2`` is not inside ``/var/log``);
3. ``.`` and empty components are dropped and ``..`` is collapsed *as written*; one that climbs
   above its root is refused. Collapsing as written is exact because of rule 4: with no
   symbolic link below a root, a path's spelling is its real path;
4. no component below the root may be a symbolic link, not even one that stays inside (the
   kernel enforces it: ``openat2`` with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS``, or a walk with
   ``O_NOFOLLOW`` per component). A root itself may be a symlink: it is the operator's;
5. it names a regular file: no directory, FIFO, socket or device.

Every refusal carries a websocket close code and a reason a person can act on.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass

OUTSIDE_ROOTS = 4403
NO_SUCH_LOG = 4404
BAD_PATH = 4400
MAX_PATH = 4096  # the kernel's PATH_MAX: nothing longer can name a file


class LogPathError(Exception):
    """The path is refused; ``code`` is the websocket close code, ``reason`` says why."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


@dataclass(frozen=True, slots=True)
class Beneath:
    """A file to open: ``parts`` below root number ``root``, none of them ``.`` or ``..``."""

    root: int
    parts: tuple[str, ...]

    @property
    def relative(self) -> str:
        return "/".join(self.parts)


def check_requested(requested: str) -> None:
    """Refuse what cannot be a path at all."""
    if not requested or "\0" in requested:
        raise LogPathError(BAD_PATH, "a log path must be non-empty and contain no NUL")
    if len(requested) > MAX_PATH:
        raise LogPathError(BAD_PATH, f"a log path is at most {MAX_PATH} characters")


def split_below(relative: str) -> tuple[str, ...]:
    """The components of ``relative`` (a path below some folder), ``..`` collapsed as written.

    ``LogPathError`` if it climbs above its folder or names the folder itself.
    """
    check_requested(relative)
    parts: list[str] = []
    for part in relative.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise LogPathError(OUTSIDE_ROOTS, "outside the allowed log roots")
            parts.pop()
        else:
            parts.append(part)
    if not parts:
        raise LogPathError(OUTSIDE_ROOTS, "not a regular file")
    return tuple(parts)


def _absolute_parts(path: str) -> list[str]:
    """An absolute path's components, ``..`` collapsed as written (``/..`` is ``/``)."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return parts


def plan_log_path(requested: str, roots: Sequence[Sequence[str]]) -> list[Beneath]:
    """Where ``requested`` may be, in the order to try: ``LogPathError`` if nowhere.

    ``roots[i]`` holds the absolute spellings of root ``i`` (as configured, and its real
    path): an absolute request must start with one of them.
    """
    check_requested(requested)
    if not roots:
        raise LogPathError(
            OUTSIDE_ROOTS, "no log roots are configured ([logs] roots): only services' output"
        )
    if not requested.startswith("/"):
        parts = split_below(requested)
        return [Beneath(index, parts) for index in range(len(roots))]
    wanted = _absolute_parts(requested)
    found: list[Beneath] = []
    for index, spellings in enumerate(roots):
        for spelling in dict.fromkeys(spellings):
            root = _absolute_parts(spelling)
            if len(wanted) > len(root) and wanted[: len(root)] == root:
                below = Beneath(index, tuple(wanted[len(root) :]))
                if below not in found:
                    found.append(below)
    if not found:
        raise LogPathError(OUTSIDE_ROOTS, "outside the allowed log roots")
    return found


def refusal_for(error_number: int, strerror: str | None = None) -> LogPathError:
    """What an open's failure tells the viewer, by its errno."""
    if error_number in (errno.ENOENT, errno.ENOTDIR):
        return LogPathError(NO_SUCH_LOG, "no such log")
    if error_number in (errno.ELOOP, errno.EMLINK):
        return LogPathError(
            OUTSIDE_ROOTS, "outside the allowed log roots (symbolic links below a root are refused)"
        )
    if error_number == errno.EXDEV:
        return LogPathError(OUTSIDE_ROOTS, "outside the allowed log roots")
    if error_number == errno.ENAMETOOLONG:
        return LogPathError(BAD_PATH, "a component of the log path is too long")
    if error_number in (errno.EACCES, errno.EPERM):
        return LogPathError(OUTSIDE_ROOTS, "permission denied")
    name = strerror or errno.errorcode.get(error_number, str(error_number))
    return LogPathError(OUTSIDE_ROOTS, f"cannot open: {name}")


def first_refusal(refusals: Sequence[LogPathError]) -> LogPathError:
    """Of the refusals of every candidate, the one to tell: any but "no such log" first (a
    file that exists but may not be shown says why), else "no such log"."""
    for refusal in refusals:
        if refusal.code != NO_SUCH_LOG:
            return refusal
    return refusals[0] if refusals else LogPathError(NO_SUCH_LOG, "no such log")
