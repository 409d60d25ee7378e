"""A fixture that runs the daemon's ``configure_logging`` in the test process, and undoes it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from heartwatch.config import parse_config
from heartwatch.daemon.own_log import configure_logging

Configure = Callable[..., Path]


@pytest.fixture
def daemon_log(tmp_path: Path) -> Iterator[Configure]:
    """``daemon_log(**daemon_section)`` sets up the daemon's logging in ``tmp_path/logs`` (no
    stderr) and returns the log file; what it changed is put back after the test."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("pika",)}

    def configure(**daemon: Any) -> Path:
        section = {"log_dir": str(tmp_path / "logs"), **daemon}
        return configure_logging(parse_config({"daemon": section}, tmp_path), to_stderr=False)

    try:
        yield configure
    finally:
        logger.remove()
        logger.configure(patcher=None)
        logger.add(sys.stderr)
        root.handlers[:], root.level = saved_handlers, saved_level
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
