"""A service's output file: lost writes are counted, never raised, and rotation recovers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from heartwatch.daemon import output as output_module
from heartwatch.daemon.output import RotatingOutput

FULL = Path("/dev/full")


@pytest.mark.skipif(not FULL.exists(), reason="no /dev/full")
def test_writes_to_a_full_disk_are_counted_not_raised(tmp_path: Path) -> None:
    (tmp_path / "noisy.log").symlink_to(FULL)
    sink = RotatingOutput(tmp_path / "noisy.log", 1 << 20, 1)
    for _ in range(3):
        sink.write(b"a line\n")
    assert sink.write_errors == 3
    sink.close()
    sink.write(b"after shut-down\n")  # nobody reads it: not an error
    assert sink.write_errors == 3


def test_a_rotation_that_cannot_reopen_loses_output_counted_then_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "svc.log"
    sink = RotatingOutput(path, 10, 2)
    sink.write(b"0123456789")
    real_open = os.open
    refusals = iter([OSError(28, "No space left on device")])

    def open_once_refused(*args: object, **kwargs: object) -> int:
        refusal = next(refusals, None)
        if refusal is not None:
            raise refusal
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(output_module.os, "open", open_once_refused)
    sink.write(b"lost\n")  # rotates: renamed, then the reopen fails
    sink.write(b"kept\n")  # rotates again: reopened
    sink.close()
    assert sink.write_errors == 1
    assert path.read_bytes() == b"kept\n"
    assert (tmp_path / "svc.log.1").read_bytes() == b"0123456789"
