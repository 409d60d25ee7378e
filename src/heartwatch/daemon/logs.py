"""The daemon's own log: loguru to stderr, and to a file with rotation and retention.

Defaults follow the original monitor: a new file every week, two months kept.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from loguru import logger

from heartwatch.config import Config, ConfigError, Problem

_FORMAT = "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> {message}"


def configure_logging(config: Config, *, to_stderr: bool = True) -> Path:
    """Send the daemon's log where the configuration says; return the log file's path."""
    daemon = config.daemon
    path = config.resolve(daemon.log_dir) / daemon.log_file
    logger.remove()
    if to_stderr:
        logger.add(sys.stderr, level=daemon.log_level, format=_FORMAT, colorize=None)
    try:
        logger.add(
            path,
            level=daemon.log_level,
            format="{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {message}",
            rotation=daemon.log_rotation,
            retention=daemon.log_retention,
            enqueue=False,
            encoding="utf-8",
        )
    except ValueError as error:  # loguru names the bad rotation or retention value
        key = "log_rotation" if "rotation" in str(error).lower() else "log_retention"
        raise ConfigError([Problem(f"daemon.{key}", str(error))]) from None
    # uvicorn and asyncio log through the standard library; send that into the same sinks.
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.WARNING, force=True)
    return path


class _InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())
