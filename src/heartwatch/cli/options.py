"""The options several commands share, as plain data: typer builds its options from these
(``cli/app.py``), and the fast path (``cli/fast.py``) recognises the same flags, so the
command's interface has one definition. Imports nothing: the fast path runs on it."""

from __future__ import annotations


class Flag:
    """One option: its flags (long first), help, environment variable, and whether it takes
    no value (a switch). A plain class: ``dataclasses`` would cost ``heartwatch beat`` 15 ms."""

    __slots__ = ("envvar", "flags", "help", "switch")

    def __init__(
        self, flags: tuple[str, ...], help: str, envvar: str | None = None, switch: bool = False
    ) -> None:
        self.flags = flags
        self.help = help
        self.envvar = envvar
        self.switch = switch

    @property
    def name(self) -> str:
        """The parameter's name in the command function (``--config`` → ``config``)."""
        return self.flags[0].lstrip("-").replace("-", "_")


DEFAULT_CONFIG_NAME = "heartwatch.toml"  # what init writes and every command reads

CONFIG = Flag(("--config", "-c"), "The configuration file.", envvar="HEARTWATCH_CONFIG")
URL = Flag(("--url",), "The daemon's HTTP address (default: from the config file).")
TOKEN = Flag(
    ("--token",),
    "The daemon's token (default: HEARTWATCH_TOKEN, else the config file's [server] token).",
    envvar="HEARTWATCH_TOKEN",
)
JSON = Flag(("--json",), "Print JSON.", switch=True)
ADDR = Flag(
    ("--addr",),
    "The daemon's heartbeat address, host:port (default: HEARTWATCH_ADDR, else the config file's).",
)
SEND_TOKEN = Flag(
    ("--token",),
    "The token for a daemon on another machine (default: HEARTWATCH_INGEST_TOKEN, else "
    "HEARTWATCH_TOKEN); never sent to one on this machine, which needs none.",
)
KIND = Flag(("--kind",), "heartbeat, or a data kind such as poiid.")
DATA = Flag(("--data",), "A JSON payload for a data event.")
