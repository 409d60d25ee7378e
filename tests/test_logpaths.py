"""Path rules for live logs, against a corpus of ways out of the roots.

The pure planner (``logpaths``) turns a request into components below a root; the driver
(``daemon/beneath.py``) opens them in one step. Both are exercised here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from heartwatch.daemon.beneath import open_planned
from heartwatch.logview.logpaths import (
    BAD_PATH,
    MAX_PATH,
    NO_SUCH_LOG,
    OUTSIDE_ROOTS,
    Beneath,
    LogPathError,
    plan_log_path,
    split_below,
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


def _spellings(roots: list[Path]) -> list[tuple[str, str]]:
    return [(str(root), os.path.realpath(root)) for root in roots]


def _open(requested: str, roots: list[Path]) -> tuple[Beneath, str]:
    """Plan and open as the route does; the file's content."""
    real = [Path(os.path.realpath(root)) for root in roots]
    found, fd = open_planned(real, plan_log_path(requested, _spellings(roots)))
    try:
        return found, os.read(fd, 100).decode()
    finally:
        os.close(fd)


def test_split_below_collapses_as_written_and_refuses_climbing() -> None:
    assert split_below("a/./b//c") == ("a", "b", "c")
    assert split_below("a/../b") == ("b",)
    for climbing in ("..", "../x", "a/../../x"):
        with pytest.raises(LogPathError) as caught:
            split_below(climbing)
        assert caught.value.code == OUTSIDE_ROOTS
    with pytest.raises(LogPathError):
        split_below("a/..")  # the root itself


def test_absolute_paths_must_start_with_a_root_by_components() -> None:
    roots = [("/srv/logs", "/data/logs")]
    assert plan_log_path("/srv/logs/a/b.log", roots) == [Beneath(0, ("a", "b.log"))]
    assert plan_log_path("/data/logs/b.log", roots) == [Beneath(0, ("b.log",))]
    assert plan_log_path("/srv/x/../logs/b.log", roots) == [Beneath(0, ("b.log",))]
    for outside in ("/srv/logs2/b.log", "/srv/logs", "/srv/logs/../x.log", "/etc/passwd"):
        with pytest.raises(LogPathError) as caught:
            plan_log_path(outside, roots)
        assert caught.value.code == OUTSIDE_ROOTS, outside


def test_relative_paths_are_tried_below_every_root_in_order() -> None:
    roots = [("/a", "/a"), ("/b", "/b")]
    assert plan_log_path("x.log", roots) == [Beneath(0, ("x.log",)), Beneath(1, ("x.log",))]


def test_no_roots_says_so_and_bad_strings_are_bad_requests() -> None:
    with pytest.raises(LogPathError) as caught:
        plan_log_path("x.log", [])
    assert "no log roots are configured" in caught.value.reason
    for bad in ("", "a\0b", "x" * (MAX_PATH + 1)):
        with pytest.raises(LogPathError) as caught:
            plan_log_path(bad, [("/a", "/a")])
        assert caught.value.code == BAD_PATH


def test_allowed_paths_open(roots: list[Path]) -> None:
    """Absolute and relative paths to regular files are served, ``..`` collapsed as written."""
    logs = roots[0]
    assert _open(str(logs / "app" / "collector.log"), roots)[1] == "hello\n"
    assert _open("app/collector.log", roots) == (Beneath(0, ("app", "collector.log")), "hello\n")
    assert _open("app/../top.log", roots)[1] == "top\n"


@pytest.mark.parametrize(
    ("requested", "code"),
    [
        ("../secret.txt", OUTSIDE_ROOTS),
        ("app/../../secret.txt", OUTSIDE_ROOTS),
        ("../logs2/sibling.log", OUTSIDE_ROOTS),
        ("/etc/passwd", OUTSIDE_ROOTS),
        ("escape.log", OUTSIDE_ROOTS),
        ("inside-link.log", OUTSIDE_ROOTS),  # symlinks below a root: refused, even inside
        ("dir-link/secret.txt", OUTSIDE_ROOTS),
        ("dir-link/logs/top.log", OUTSIDE_ROOTS),
        ("app", OUTSIDE_ROOTS),
        ("pipe.log", OUTSIDE_ROOTS),
        ("/dev/zero", OUTSIDE_ROOTS),
        ("missing.log", NO_SUCH_LOG),
        ("app/missing.log", NO_SUCH_LOG),
        ("top.log/x", NO_SUCH_LOG),
        ("top.log\0.txt", BAD_PATH),
        ("", BAD_PATH),
        ("%2e%2e/secret.txt", NO_SUCH_LOG),
        ("..%2fsecret.txt", NO_SUCH_LOG),
        ("....//secret.txt", NO_SUCH_LOG),
        ("x" * 300, BAD_PATH),  # a component over NAME_MAX
    ],
)
def test_every_way_out_is_refused_quickly(roots: list[Path], requested: str, code: int) -> None:
    """Traversal, absolute paths outside, symlinks, NUL, directories, FIFOs and devices."""
    started = time.monotonic()
    with pytest.raises(LogPathError) as caught:
        _open(requested, roots)
    assert caught.value.code == code, caught.value.reason
    assert time.monotonic() - started < 1.0


def test_string_prefix_is_not_containment(roots: list[Path], tmp_path: Path) -> None:
    """/x/logs2 is not inside /x/logs, although the string starts the same."""
    with pytest.raises(LogPathError) as caught:
        _open(str(tmp_path / "logs2" / "sibling.log"), roots)
    assert caught.value.reason == "outside the allowed log roots"


def test_a_refusal_that_says_why_beats_no_such_log(tmp_path: Path) -> None:
    """Missing below the first root, a symlink below the second: the symlink is named."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (second / "x.log").symlink_to(tmp_path / "first")
    with pytest.raises(LogPathError) as caught:
        _open("x.log", [first, second])
    assert caught.value.code == OUTSIDE_ROOTS and "symbolic link" in caught.value.reason
