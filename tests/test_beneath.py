"""Opening below a root in one step: openat2 where the kernel has it, else the walk."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from heartwatch.daemon import beneath
from heartwatch.daemon.beneath import open_beneath, open_log, stat_beneath
from heartwatch.logview.logpaths import NO_SUCH_LOG, OUTSIDE_ROOTS, LogPathError

MODES = [pytest.param(False, id="openat2-or-walk"), pytest.param(True, id="walk")]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "sub" / "deep" / "a.log").write_text("inside\n")
    (root / "top.log").write_text("top\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "a.log").write_text("secret\n")
    (root / "out-dir").symlink_to(tmp_path / "outside")
    (root / "in-dir").symlink_to(root / "sub")
    (root / "in-file.log").symlink_to(root / "top.log")
    os.mkfifo(root / "fifo")
    return root


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


@pytest.mark.parametrize("walk", MODES)
def test_opens_regular_files_below_the_root(tree: Path, walk: bool) -> None:
    assert _read(open_beneath(tree, "sub/deep/a.log", walk=walk)) == b"inside\n"
    assert _read(open_beneath(tree, "sub/./deep/../deep//a.log", walk=walk)) == b"inside\n"
    root_fd = beneath.open_root(tree)
    try:
        assert _read(open_beneath(root_fd, ("top.log",), walk=walk)) == b"top\n"
    finally:
        os.close(root_fd)


@pytest.mark.parametrize("walk", MODES)
@pytest.mark.parametrize(
    "relative", ["out-dir/a.log", "in-dir/deep/a.log", "in-file.log", "sub/../out-dir/a.log"]
)
def test_every_symlink_below_the_root_is_refused(tree: Path, relative: str, walk: bool) -> None:
    """Out of the root or not: a symlink on the way (or at the end) is ELOOP."""
    with pytest.raises(OSError, match="Too many levels of symbolic links") as caught:
        open_beneath(tree, relative, walk=walk)
    assert caught.value.errno == errno.ELOOP


def test_a_root_may_itself_be_a_symlink(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "root-link").symlink_to(tree)
    assert _read(open_beneath(tmp_path / "root-link", "top.log")) == b"top\n"


def test_climbing_out_never_reaches_the_kernel(tree: Path) -> None:
    with pytest.raises(LogPathError) as caught:
        open_beneath(tree, "sub/../../outside/a.log")
    assert caught.value.code == OUTSIDE_ROOTS


def test_open_log_refuses_fifos_at_once_and_missing_files(tree: Path) -> None:
    started = time.monotonic()
    with pytest.raises(LogPathError) as caught:
        open_log(tree, ("fifo",))
    assert caught.value.code == OUTSIDE_ROOTS and "regular file" in caught.value.reason
    assert time.monotonic() - started < 1.0
    with pytest.raises(LogPathError) as caught:
        open_log(tree, ("sub", "missing.log"))
    assert caught.value.code == NO_SUCH_LOG
    with pytest.raises(LogPathError) as caught:
        open_log(tree, ("top.log", "x"))  # a file used as a folder
    assert caught.value.code == NO_SUCH_LOG


def test_stat_beneath_sees_a_symlink_as_itself(tree: Path) -> None:
    info = stat_beneath(tree, ("in-file.log",))
    assert info is not None and not os.path.samestat(info, os.stat(tree / "top.log"))
    assert stat_beneath(tree, ("out-dir", "a.log")) is None
    assert stat_beneath(tree, ("sub", "deep", "a.log")) is not None


@pytest.mark.parametrize("walk", MODES)
def test_no_swap_of_a_folder_for_a_symlink_ever_leaks(tmp_path: Path, walk: bool) -> None:
    """A thread swaps ``sub`` and a symlink out 3000 times while we open below it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "a.log").write_text("inside\n")
    (outside / "a.log").write_text("secret\n")
    stop = threading.Event()

    def swap() -> None:
        for _ in range(3000):
            os.rename(root / "sub", root / "parked")
            os.symlink(outside, root / "link")
            os.rename(root / "link", root / "sub")
            time.sleep(0)
            os.unlink(root / "sub")
            os.rename(root / "parked", root / "sub")
        stop.set()

    thread = threading.Thread(target=swap)
    thread.start()
    seen: dict[bytes | int, int] = {}
    try:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                got: bytes | int = _read(open_beneath(root, "sub/a.log", walk=walk))
            except OSError as error:
                got = error.errno or 0
            seen[got] = seen.get(got, 0) + 1
    finally:
        stop.set()
        thread.join(60)
    assert b"secret\n" not in seen, seen
    # ENOTDIR: the walk met the symlink, which was gone again when it looked why.
    assert set(seen) <= {b"inside\n", errno.ENOENT, errno.ELOOP, errno.ENOTDIR}, seen
