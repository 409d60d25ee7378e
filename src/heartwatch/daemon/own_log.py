"""The daemon's own log: loguru to stderr, and to a file with rotation and retention.

Defaults: a new file every week or at 50 MB, whichever comes first; two months kept.

What the log never holds:

- credentials: every message, and every traceback's text, passes through ``redact``;
- variable values: a traceback is the standard library's (file, line, code), not loguru's
  ``diagnose`` view with each variable's value, which printed a queue's URL and its password.
  At ``DEBUG`` and ``TRACE`` an operator asks for detail, and gets loguru's full view;
- a library's expected failures as tracebacks: pika's loggers are kept quiet (the queue watch
  says once, in plain words, what they would say every poll), and a library's *warning* that
  carries an exception becomes one line with the exception's reason. Errors keep their
  traceback: an exception in heartwatch's own code (an ASGI handler, a task) is logged once
  with it.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from loguru import logger

from heartwatch.config import Config, ConfigError, Problem
from heartwatch.core.redact import redact

if TYPE_CHECKING:
    from loguru import Message, Record

_LINE = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {message}"
_COLOURED_LINE = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> {message}"
)
_VERBOSE_LEVELS = ("TRACE", "DEBUG")
# Libraries whose every record is left out (below CRITICAL) unless the level is TRACE.
# aio-pika and aiormq: the fleet agent says once per outage what they would say every retry.
_QUIET_LIBRARIES = ("pika", "aio_pika", "aiormq")

Rotation = Callable[["Message", TextIO], bool]


def configure_logging(config: Config, *, to_stderr: bool = True) -> Path:
    """Send the daemon's log where the configuration says; return the log file's path."""
    daemon = config.daemon
    path = config.resolve(daemon.log_dir) / daemon.log_file
    verbose = daemon.log_level in _VERBOSE_LEVELS
    rotation = _rotation(daemon.log_rotation)
    options: dict[str, Any] = {
        "level": daemon.log_level,
        "backtrace": verbose,  # frames above the catching one: noise, outside debugging
        "diagnose": verbose,  # variable values: they hold URLs, tokens, passwords
    }
    logger.remove()
    logger.configure(patcher=_redact_message)
    if to_stderr:
        logger.add(sys.stderr, format=_formatter(_COLOURED_LINE, verbose), colorize=None, **options)
    try:
        logger.add(
            path,
            format=_formatter(_LINE, verbose),
            rotation=rotation,
            retention=daemon.log_retention,
            enqueue=False,
            encoding="utf-8",
            **options,
        )
    except ValueError as error:  # loguru names the bad rotation or retention value
        key = "log_rotation" if "rotation" in str(error).lower() else "log_retention"
        raise ConfigError([Problem(f"daemon.{key}", str(error))]) from None
    # uvicorn and asyncio log through the standard library; send that into the same sinks.
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.WARNING, force=True)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(
            logging.DEBUG if daemon.log_level == "TRACE" else logging.CRITICAL
        )
    return path


def _redact_message(record: Record) -> None:
    record["message"] = redact(record["message"])


def _formatter(line: str, verbose: bool) -> Callable[[Record], str]:
    """The sink's format: ``line``, then the exception if any. Outside debugging the traceback
    is formatted here, by the standard library, and redacted; it is put in as a field, so its
    text is never read as a format or as colour markup."""

    def format_record(record: Record) -> str:
        if record["exception"] is None:
            return line + "\n"
        if verbose:
            return line + "\n{exception}"
        kind, value, trace = record["exception"]
        text = "".join(traceback.format_exception(kind, value, trace))
        record["extra"]["traceback"] = redact(text)
        return line + "\n{extra[traceback]}"

    return format_record


def _rotation(value: str | Sequence[str]) -> str | Rotation:
    """A rotation loguru takes: a string as it is; a list as one callable that rotates when any
    of its conditions says so ("1 week" or "50 MB", whichever comes first)."""
    if isinstance(value, str):
        return value
    # loguru 0.7 takes one condition; its own parser builds each (so every form it documents
    # works in a list), and the list is their union.
    from loguru._file_sink import FileSink

    make = cast("Callable[[str], Rotation]", FileSink._make_rotation_function)
    conditions: list[Rotation] = []
    problems = []
    for index, text in enumerate(value):
        try:
            conditions.append(make(text))
        except (ValueError, TypeError) as error:
            problems.append(Problem(f"daemon.log_rotation[{index}]", str(error)))
    if problems:
        raise ConfigError(problems)
    return _AnyOf(conditions)


class _AnyOf:
    """Rotates when any condition is met. Every condition is asked each time: a time condition
    moves its deadline on when it passes, even if a size condition rotated first, so a file
    rotated by size is not rotated again, nearly empty, by the time limit a line later."""

    def __init__(self, conditions: Sequence[Rotation]) -> None:
        self._conditions = list(conditions)

    def __call__(self, message: Message, file: TextIO) -> bool:
        answers = [condition(message, file) for condition in self._conditions]
        return any(answers)


class _InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        message, exc_info = record.getMessage(), record.exc_info
        if exc_info and exc_info[1] is not None and record.levelno < logging.ERROR:
            # A library's warning about a failure it expects (a peer gone, a retry): the
            # reason on the line, not a traceback each time it happens.
            message = f"{message}: {type(exc_info[1]).__name__}: {exc_info[1]}"
            exc_info = None
        logger.opt(depth=6, exception=exc_info).log(level, message)
