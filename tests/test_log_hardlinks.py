"""A hard link below a root is refused: its other name may lie outside the roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from heartwatch.daemon.beneath import open_log
from heartwatch.logview.logpaths import OUTSIDE_ROOTS, LogPathError


def test_a_hard_link_to_a_file_outside_is_not_served(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.log").write_text("SECRET\n")
    os.link(outside / "secret.log", root / "innocent.log")
    (root / "plain.log").write_text("fine\n")

    with pytest.raises(LogPathError) as refused:
        open_log(root, ("innocent.log",))
    assert refused.value.code == OUTSIDE_ROOTS
    assert "hard link" in refused.value.reason
    fd = open_log(root, ("plain.log",))  # one name: served as before
    try:
        assert os.read(fd, 100) == b"fine\n"
    finally:
        os.close(fd)
