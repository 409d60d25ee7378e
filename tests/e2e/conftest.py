"""Fixtures for the end-to-end tests: a pipeline folder whose daemons and workers never outlive
the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.support import Pipeline


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    """A fresh folder for a config and its daemons; at teardown, nothing of it keeps running."""
    pipe = Pipeline(tmp_path)
    try:
        yield pipe
    finally:
        leftovers = pipe.close()
        print(pipe.report())  # shown by pytest only when the test fails
    if leftovers:
        pytest.fail(f"processes outlived the daemon and were killed at teardown: {leftovers}")
