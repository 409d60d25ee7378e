"""``heartwatch top``: a live view of the services (as ``pm2 monit``), with rich's ``Live``.

Every ``interval`` it asks ``GET /api/v1/services`` and draws one row per service: the state
in its colour, pid, uptime, restarts, heartbeat age, the message and data rates since the
last refresh, CPU and memory (when the daemon measures them), and the service's own status
text. ``q`` or Ctrl-C quits. Piped (not a terminal), it prints one snapshot and exits. On a
narrow terminal the least needed columns go first (``COLUMNS``, by priority).

Cells are ``rich.text.Text``: what a service wrote (``[red]``) is shown as written.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heartwatch.cli.hot import fetch_services
from heartwatch.cli.remote import Refused
from heartwatch.cli.text import STATE_COLOURS, age, plain, size
from heartwatch.core.selection import UnknownNames

# Columns by priority: on a narrow terminal, those at the end are dropped first.
COLUMNS: tuple[tuple[str, int], ...] = (
    ("SERVICE", 10),
    ("STATE", 12),
    ("PID", 7),
    ("BEAT", 8),
    ("RESTARTS", 8),
    ("UPTIME", 10),
    ("CPU", 5),
    ("MEM", 9),
    ("MSG/S", 6),
    ("STATUS", 16),
    ("DATA/S", 16),
)
_DOWN = ("stopped", "exited", "failed", "backoff")


@dataclass(frozen=True, slots=True)
class Sample:
    """What the daemon said, and when (monotonic seconds on this side)."""

    at: float
    services: Sequence[dict[str, Any]]


def rates(previous: Sample | None, current: Sample) -> dict[str, tuple[float, dict[str, float]]]:
    """Per service: messages per second and data events per second by kind, since
    ``previous`` (nothing without one, or for a service it did not have)."""
    if previous is None or current.at <= previous.at:
        return {}
    seconds = current.at - previous.at
    before = {s["name"]: s for s in previous.services}
    found = {}
    for service in current.services:
        old = before.get(service["name"])
        if old is None:
            continue
        messages = max(0, service["messages"] - old["messages"]) / seconds
        kinds = {
            kind: max(0, d["count"] - old["data"].get(kind, {}).get("count", 0)) / seconds
            for kind, d in service["data"].items()
        }
        found[service["name"]] = (messages, kinds)
    return found


def choose_columns(width: int) -> list[str]:
    """The columns that fit ``width`` (at least SERVICE and STATE)."""
    chosen: list[str] = []
    used = 0
    for name, need in COLUMNS:
        if chosen and len(chosen) >= 2 and used + need + 2 > width:
            break
        chosen.append(name)
        used += need + 2
    return chosen


def _rate(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def cells(service: dict[str, Any], rate: tuple[float, dict[str, float]] | None) -> dict[str, Any]:
    from rich.text import Text

    state = str(service["state"])
    alive = state not in _DOWN
    cpu = service.get("cpu_percent") if alive else None
    rss = service.get("rss_bytes") if alive else None
    text = {
        "SERVICE": str(service["name"]),
        "PID": str(service["pid"] or "-"),
        # An age only while a run is watched (a service restarting has none: its last beat
        # was its previous run's).
        "BEAT": age(service["last_heartbeat_age"]) if service.get("uptime") is not None else "-",
        "RESTARTS": str(service["restarts"]),
        "UPTIME": age(service.get("uptime")) if alive and service["pid"] else "-",
        "CPU": "-" if cpu is None else f"{cpu:.0f}%",
        "MEM": size(rss),
        "MSG/S": "-" if rate is None else _rate(rate[0]),
        "STATUS": service.get("status") or service["reason"] or "-",
        "DATA/S": "-"
        if rate is None or not rate[1]
        else ", ".join(f"{k} {_rate(v)}" for k, v in rate[1].items()),
    }
    row = {name: Text(plain(value)) for name, value in text.items()}
    row["STATE"] = Text(state, style=STATE_COLOURS.get(state, "white"))
    return row


def render(previous: Sample | None, current: Sample, width: int, note: str = "") -> Any:
    from rich.table import Table

    columns = choose_columns(width)
    title = f"heartwatch top: {len(current.services)} service(s)"
    table = Table(box=None, pad_edge=False, title=title + (f": {note}" if note else ""))
    for name in columns:
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    found = rates(previous, current)
    for service in current.services:
        row = cells(service, found.get(service["name"]))
        table.add_row(*(row[name] for name in columns))
    return table


@contextlib.contextmanager
def _keys() -> Iterator[Any]:
    """Single key presses from the terminal (cbreak: no Enter needed), restored after."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _quit_pressed(fd: int | None, timeout: float) -> bool:
    """Wait up to ``timeout`` for a key; whether it was ``q``."""
    if fd is None:
        time.sleep(timeout)
        return False
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready) and os.read(fd, 32).strip().lower().startswith(b"q")


def run_top(
    names: Sequence[str], config: Path, url: str | None, token: str | None, interval: float
) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console(markup=False, emoji=False, highlight=False)

    def sample() -> Sample:
        return Sample(time.monotonic(), fetch_services(names, config, url, token))

    try:
        current = sample()
    except UnknownNames as unknown:
        console.print(str(unknown), style="red")
        return 1
    except Refused as refused:
        console.print(refused.message, style="red")
        return refused.exit_code
    if not console.is_terminal:
        console.width = 10_000  # into a pipe: a row stays one line, for grep
        console.print(render(None, current, console.width))
        return 0
    previous: Sample | None = None
    interactive = sys.stdin.isatty()
    keys = _keys() if interactive else contextlib.nullcontext(None)
    try:
        with keys as fd, Live(console=console, auto_refresh=False, screen=False) as live:
            note = "q quits"
            while True:
                live.update(render(previous, current, console.width, note), refresh=True)
                if _quit_pressed(fd, interval):
                    return 0
                try:
                    previous, current = current, sample()
                    note = "q quits"
                except Refused as refused:  # the daemon restarting: keep trying
                    note = refused.message
    except KeyboardInterrupt:
        return 0
