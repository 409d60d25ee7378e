"""Open a file below a folder in one step, following no symbolic link on the way.

``open_beneath(root, relative)`` resolves and opens ``relative`` relative to the folder
``root`` (a path, which may itself be a symlink, or an open descriptor of it) so that no
component can be swapped between a check and the open: there is no separate check. Where the
kernel has it (Linux 5.6+), that is one ``openat2`` with ``RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS``; elsewhere (older kernels, seccomp filters that refuse it, other systems)
it walks the components from the root's descriptor, each folder opened with ``O_NOFOLLOW |
O_DIRECTORY`` relative to the previous one. Either way a symlink anywhere below the root fails
with ``ELOOP``, and ``..`` never reaches the kernel (``logpaths.split_below`` collapses it as
written, exact when no symlink is followed).

``open_log`` adds what a log viewer needs: non-blocking open (a FIFO cannot hang the server),
a regular-file check on the open descriptor, and refusals as ``LogPathError``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from heartwatch.logview.logpaths import (
    OUTSIDE_ROOTS,
    Beneath,
    LogPathError,
    first_refusal,
    refusal_for,
    split_below,
)

_SYS_OPENAT2 = 437  # the same number on every Linux architecture (added after the unification)
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_O_PATH = getattr(os, "O_PATH", 0)  # a handle for lookups only (Linux); else read access
_DIR_FLAGS = (_O_PATH or os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
LOG_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


class _Openat2:
    """``openat2`` through ``syscall(2)``: Python has no binding. Probed once."""

    def __init__(self) -> None:
        self._syscall: Callable[..., int] | None = None
        self.available: bool | None = None if sys.platform.startswith("linux") else False

    def _probe(self) -> bool:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            syscall = libc.syscall
        except (OSError, AttributeError):
            return False
        syscall.restype = ctypes.c_long
        syscall.argtypes = [
            ctypes.c_long,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.POINTER(_OpenHow),
            ctypes.c_size_t,
        ]
        self._syscall = syscall
        try:
            fd = self._call(os.open("/", _DIR_FLAGS), ".", _DIR_FLAGS, close_dir=True)
        except OSError:
            # ENOSYS: an old kernel; EPERM: a seccomp filter; E2BIG/EINVAL: not this struct.
            return False
        os.close(fd)
        return True

    def _call(self, dir_fd: int, path: str, flags: int, *, close_dir: bool = False) -> int:
        assert self._syscall is not None
        how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS)
        try:
            while True:
                result = self._syscall(
                    _SYS_OPENAT2, dir_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how)
                )
                if result >= 0:
                    return int(result)
                number = ctypes.get_errno()
                # EAGAIN: a rename elsewhere raced the lookup (the kernel refuses to guess).
                if number not in (errno.EINTR, errno.EAGAIN):
                    raise OSError(number, os.strerror(number), path)
        finally:
            if close_dir:
                os.close(dir_fd)

    def open(self, dir_fd: int, path: str, flags: int) -> int | None:
        """The descriptor, or ``None`` if this kernel has no usable ``openat2``."""
        if self.available is None:
            self.available = self._probe()
        if not self.available:
            return None
        return self._call(dir_fd, path, flags)


_openat2 = _Openat2()


def open_root(root: Path | str) -> int:
    """A descriptor of the folder ``root`` (symlinks in the root's own path are followed)."""
    return os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)


def open_beneath(
    root: int | Path | str,
    relative: str | Sequence[str],
    flags: int = os.O_RDONLY | os.O_CLOEXEC,
    *,
    walk: bool = False,
) -> int:
    """Open ``relative`` below the folder ``root`` following no symlink; ``OSError`` if it
    cannot be (``ELOOP``: a symlink on the way; ``ENOENT``; ``EACCES``...).

    ``relative`` is a path string (``..`` collapsed as written; climbing above ``root`` raises
    ``LogPathError``) or components already split. ``walk`` forces the portable walk.
    """
    parts = split_below(relative) if isinstance(relative, str) else tuple(relative)
    if not parts or any(part in ("", ".", "..") or "/" in part for part in parts):
        raise ValueError(f"not components below a folder: {parts!r}")
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    dir_fd = root if isinstance(root, int) else open_root(root)
    try:
        if not walk:
            fd = _openat2.open(dir_fd, "/".join(parts), flags)
            if fd is not None:
                return fd
        return _walk(dir_fd, parts, flags)
    finally:
        if not isinstance(root, int):
            os.close(dir_fd)


def _walk(root_fd: int, parts: Sequence[str], flags: int) -> int:
    """One component at a time, each relative to the folder before it."""
    fd = root_fd
    try:
        for part in parts[:-1]:
            try:
                step = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except NotADirectoryError:
                # O_NOFOLLOW | O_DIRECTORY on a symlink says ENOTDIR: say what it is.
                if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), part) from None
                raise
            if fd != root_fd:
                os.close(fd)
            fd = step
        return os.open(parts[-1], flags, dir_fd=fd)
    finally:
        if fd != root_fd:
            os.close(fd)


def open_folder_of(root: Path | str, parts: Sequence[str]) -> int:
    """A lookup-only descriptor of the folder that holds ``parts`` below ``root``, reached
    like ``open_beneath``; ``OSError`` if it cannot be."""
    if len(parts) == 1:
        return open_root(root)
    return open_beneath(root, parts[:-1], _DIR_FLAGS)


def stat_beneath(root: Path | str, parts: Sequence[str]) -> os.stat_result | None:
    """What holds the name ``parts`` below ``root`` (a symlink itself, not what it points to),
    or ``None`` if nothing does or the way there is not servable."""
    try:
        dir_fd = open_folder_of(root, parts)
    except (OSError, LogPathError):
        return None
    try:
        return os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(dir_fd)


def open_log(root: Path | str, parts: Sequence[str]) -> int:
    """A blocking read descriptor of the regular file ``parts`` below ``root``; a refusal
    (``LogPathError``) for anything else. Opened non-blocking, so a FIFO cannot hang us."""
    try:
        fd = open_beneath(root, parts, LOG_FLAGS)
    except OSError as error:
        raise refusal_for(error.errno or 0, error.strerror) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LogPathError(OUTSIDE_ROOTS, "not a regular file")
        if info.st_nlink > 1:
            # A second name for a file may be a way in from outside the roots (a hard link
            # made by someone who may write below a root): no path check can tell which.
            raise LogPathError(OUTSIDE_ROOTS, "a file with more than one name (a hard link)")
        os.set_blocking(fd, True)  # regular files never block; plain reads from here on
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_planned(roots: Sequence[Path], candidates: Sequence[Beneath]) -> tuple[Beneath, int]:
    """The first candidate that opens as a log, with its descriptor; else the refusal that
    says most (``logpaths.first_refusal``)."""
    refusals: list[LogPathError] = []
    for candidate in candidates:
        try:
            return candidate, open_log(roots[candidate.root], candidate.parts)
        except LogPathError as refusal:
            refusals.append(refusal)
    raise first_refusal(refusals)
