"""Path rules for live logs, against a corpus of ways out of the roots."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from heartwatch.logpaths import (
    BAD_PATH,
    NO_SUCH_LOG,
    OUTSIDE_ROOTS,
    LogPathError,
    open_log,
    resolve_log_path,
)


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    logs = tmp_path / "logs"
    (logs / "app").mkdir(parents=True)
    (logs / "app" / "collector.log").write_text("hello\n")
    (logs / "top.log").write_text("top\n")
    (tmp_path / "logs2").mkdir()
    (tmp_path / "logs2" / "sibling.log").write_text("not yours\n")
    (tmp_path / "secret.txt").write_text("secret\n")
    (logs / "escape.log").symlink_to(tmp_path / "secret.txt")
    (logs / "inside-link.log").symlink_to(logs / "top.log")
    (logs / "dir-link").symlink_to(tmp_path)
    os.mkfifo(logs / "pipe.log")
    return [logs]


def test_allowed_paths_resolve(roots: list[Path]) -> None:
    """Absolute, relative and symlinked-within-root paths to regular files are served."""
    logs = roots[0]
    assert (
        resolve_log_path(str(logs / "app" / "collector.log"), roots) == logs / "app/collector.log"
    )
    assert resolve_log_path("app/collector.log", roots) == logs / "app" / "collector.log"
    assert resolve_log_path("inside-link.log", roots) == logs / "top.log"
    assert resolve_log_path("app/../top.log", roots) == logs / "top.log"


@pytest.mark.parametrize(
    ("requested", "code"),
    [
        ("../secret.txt", OUTSIDE_ROOTS),
        ("app/../../secret.txt", OUTSIDE_ROOTS),
        ("../logs2/sibling.log", OUTSIDE_ROOTS),
        ("/etc/passwd", OUTSIDE_ROOTS),
        ("escape.log", OUTSIDE_ROOTS),
        ("dir-link/secret.txt", OUTSIDE_ROOTS),
        ("app", OUTSIDE_ROOTS),
        ("pipe.log", OUTSIDE_ROOTS),
        ("/dev/zero", OUTSIDE_ROOTS),
        ("missing.log", NO_SUCH_LOG),
        ("app/missing.log", NO_SUCH_LOG),
        ("top.log\0.txt", BAD_PATH),
        ("", BAD_PATH),
        ("%2e%2e/secret.txt", NO_SUCH_LOG),
        ("..%2fsecret.txt", NO_SUCH_LOG),
        ("....//secret.txt", NO_SUCH_LOG),
    ],
)
def test_every_way_out_is_refused_quickly(roots: list[Path], requested: str, code: int) -> None:
    """Traversal, absolute paths outside, symlinks out, NUL, directories, FIFOs and devices."""
    started = time.monotonic()
    with pytest.raises(LogPathError) as caught:
        resolve_log_path(requested, roots)
    assert caught.value.code == code
    assert time.monotonic() - started < 1.0


def test_string_prefix_is_not_containment(roots: list[Path], tmp_path: Path) -> None:
    """/x/logs2 is not inside /x/logs, although the string starts the same."""
    with pytest.raises(LogPathError) as caught:
        resolve_log_path(str(tmp_path / "logs2" / "sibling.log"), roots)
    assert caught.value.reason == "outside the allowed log roots"


def test_open_log_never_blocks_on_a_fifo(roots: list[Path]) -> None:
    """Opening a FIFO (as if swapped in after the check) is refused at once, not hung on."""
    started = time.monotonic()
    with pytest.raises(LogPathError):
        open_log(roots[0] / "pipe.log")
    assert time.monotonic() - started < 1.0
    opened = open_log(roots[0] / "top.log")
    try:
        assert os.read(opened.fd, 100) == b"top\n"
    finally:
        os.close(opened.fd)
