"""The options several commands share, as plain data: typer builds its options from these
(``cli/app.py``), and the fast path (``cli/fast.py``) recognises the same flags, so the
command's interface has one definition. Standard library only: the fast path imports it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Flag:
    """One option: its flags (long first), help, environment variable, and whether it takes
    no value (a switch)."""

    flags: tuple[str, ...]
    help: str
    envvar: str | None = None
    switch: bool = False

    @property
    def name(self) -> str:
        """The parameter's name in the command function (``--config`` → ``config``)."""
        return self.flags[0].lstrip("-").replace("-", "_")


DEFAULT_CONFIG = Path("heartwatch.toml")  # what init writes and every command reads

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
KIND = Flag(("--kind",), "heartbeat, or a data kind such as poiid.")
DATA = Flag(("--data",), "A JSON payload for a data event.")
