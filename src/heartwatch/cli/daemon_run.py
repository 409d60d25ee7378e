"""``heartwatch run``: the daemon in the foreground, until SIGTERM or Ctrl-C.

Its own module so that the fast path (``cli/fast.py``) starts the daemon without typer and
click, which would otherwise stay in the daemon's memory for its whole life for one parse of
``-c FILE`` (about 1.6 MB of its idle RSS; ``docs/benchmarks.md``).
"""

from __future__ import annotations

import signal
from pathlib import Path

from heartwatch.cli.text import problem_lines, say


def run_daemon_command(config: Path) -> int:
    """Load ``config``, then run the daemon; the exit code (2: the file's problems, 1: it
    could not start)."""
    # SIGHUP's default action ends a process; the daemon's handler (a reload) is installed
    # once it listens, after the imports, the history and the listeners (most of a second).
    # Until then it is ignored, from here on, first thing: an init system's reload or a
    # closed terminal must not kill a daemon that is starting. Services start only after the
    # handler replaced this, so they get SIGHUP's default, not an inherited ignoring.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    import asyncio

    from heartwatch.assembly.daemon import run_daemon
    from heartwatch.config import ConfigError, config_warnings, load_config
    from heartwatch.daemon.oserrors import describe_os_error
    from heartwatch.daemon.own_log import configure_logging
    from heartwatch.daemon.statedir import DaemonAlreadyRunning

    try:
        loaded = load_config(config)
    except ConfigError as error:
        headline, *problems = problem_lines(error.source or config, error.problems)
        say(headline, "red")
        for line in problems:
            say(line)
        return 2
    try:
        configure_logging(loaded)
        from loguru import logger

        for warning in config_warnings(loaded):  # what ``check`` would warn about, logged
            logger.warning("{}: {}", config, warning)
        asyncio.run(run_daemon(loaded))
    except ConfigError as error:
        for problem in error.problems:
            say(f"{config}: {problem}")
        return 2
    except DaemonAlreadyRunning as error:
        say(str(error), "red")
        return 1
    except OSError as error:
        say(f"cannot start: {describe_os_error(error)}", "red")
        return 1
    return 0
