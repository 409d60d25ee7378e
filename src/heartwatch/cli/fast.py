"""The fast path: ``heartwatch status``, ``beat`` and ``run`` without loading typer.

typer, click and rich take about 120 ms to import, more than the whole of
``supervisorctl status``. ``status`` and ``beat`` run from scripts, cron jobs and fingers
many times a day; the daemon (``run``) would keep typer and click in its memory for life for
one parse of ``-c FILE``. So ``main`` first offers the arguments to ``run_fast``. It takes
only what it fully understands: the options the typer command declares (the same
``options.Flag`` values; ``tests/test_cli_fast.py`` checks that the two sets agree), each at
most once, plus the positional arguments. Anything else (``--help``, a typo, a missing
value, ``--``, shell completion) returns ``None`` and typer handles it, with its own help
and errors: the interface has one definition, and this is only a quicker way through it.
"""

from __future__ import annotations

import os

from heartwatch.cli import options
from heartwatch.cli.options import Flag

# Not typing's, and no dataclasses: what this module imports, every quick command pays for.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


class FastCommand:
    __slots__ = ("flags", "positional", "run")

    def __init__(
        self,
        flags: tuple[Flag, ...],
        positional: tuple[int, int | None],  # how many: at least, at most (None: any)
        run: Callable[[list[str], dict[str, Any]], int],
    ) -> None:
        self.flags = flags
        self.positional = positional
        self.run = run


def _status(arguments: list[str], values: dict[str, Any]) -> int:
    from pathlib import Path

    from heartwatch.cli.hot import run_status

    config = Path(values["config"])
    return run_status(arguments, config, values["url"], values["token"], values["json"])


def _beat(arguments: list[str], values: dict[str, Any]) -> int:
    from heartwatch.cli.hot import run_beat

    kind = values["kind"] or "heartbeat"
    config, token = values["config"], values["token"]
    return run_beat(arguments[0], kind, values["data"], values["addr"], config, token)


def _run(arguments: list[str], values: dict[str, Any]) -> int:
    from pathlib import Path

    from heartwatch.cli.daemon_run import run_daemon_command

    return run_daemon_command(Path(values["config"]))


FAST_COMMANDS = {
    "run": FastCommand((options.CONFIG,), (0, 0), _run),
    "status": FastCommand(
        (options.CONFIG, options.URL, options.TOKEN, options.JSON), (0, None), _status
    ),
    "beat": FastCommand(
        (options.KIND, options.DATA, options.ADDR, options.CONFIG, options.SEND_TOKEN),
        (1, 1),
        _beat,
    ),
}


def parse_fast(argv: Sequence[str]) -> tuple[FastCommand, list[str], dict[str, Any]] | None:
    """The command, its positional arguments and its option values, or ``None`` to leave
    ``argv`` to typer."""
    if not argv or argv[0] not in FAST_COMMANDS or "_HEARTWATCH_COMPLETE" in os.environ:
        return None
    command = FAST_COMMANDS[argv[0]]
    by_flag = {text: flag for flag in command.flags for text in flag.flags}
    values: dict[str, Any] = {}
    arguments: list[str] = []
    rest = list(argv[1:])
    while rest:
        word = rest.pop(0)
        if not word.startswith("-") or word == "-":
            arguments.append(word)
            continue
        # As click reads them: ``--long=VALUE``, and a short flag's value stuck to it,
        # ``-cVALUE`` (so ``-c=x`` is the file ``=x``, as typer has it).
        if word.startswith("--"):
            text, equals, inline = word.partition("=")
            stuck = bool(equals)
        else:
            text, inline = word[:2], word[2:]
            stuck = bool(inline)
        flag = by_flag.get(text)
        if flag is None or flag.name in values:
            return None  # --help, --, a typo, a repeat: typer says what it says
        if flag.switch:
            if stuck:
                return None  # --json=yes, or short switches run together: typer's
            values[flag.name] = True
        elif stuck:
            values[flag.name] = inline
        elif rest and not rest[0].startswith("-"):
            values[flag.name] = rest.pop(0)
        else:
            return None  # a missing value: typer's error
    low, high = command.positional
    if len(arguments) < low or (high is not None and len(arguments) > high):
        return None
    for flag in command.flags:
        if flag.name not in values:
            from_env = os.environ.get(flag.envvar) if flag.envvar else None
            values[flag.name] = False if flag.switch else (from_env or None)
    values["config"] = values["config"] or options.DEFAULT_CONFIG_NAME  # a str: see hot.py
    return command, arguments, values


def run_fast(argv: Sequence[str]) -> int | None:
    """The exit code of the command, if the fast path took it."""
    parsed = parse_fast(argv)
    if parsed is None:
        return None
    command, arguments, values = parsed
    return command.run(arguments, values)
