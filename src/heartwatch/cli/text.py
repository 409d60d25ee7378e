"""What the quick commands print, without rich (it costs 50 ms to import): plain lines, a
table in columns, colours as ANSI codes only into a terminal (and never with ``NO_COLOR``).

Text from services, config files and the daemon is written as it is: nothing here reads
markup, so ``[red]`` in a reason is printed as ``[red]``. Control characters in it are shown
escaped (a service's status text must not move the cursor or retitle the terminal); ``say``
keeps a message's own line breaks (one line at a time is escaped).
"""

from __future__ import annotations

import os
import sys

from heartwatch.core.units import format_duration, format_size

TYPE_CHECKING = False  # not typing's: see heartwatch/__init__.py
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, TextIO

_ANSI = {
    "red": "31",
    "green": "32",
    "yellow": "33",
    "magenta": "35",
    "cyan": "36",
    "dim": "2",
    "bold red": "1;31",
}
STATE_COLOURS = {
    "running": "green",
    "starting": "cyan",
    "unresponsive": "red",
    "restarting": "yellow",
    "backoff": "yellow",
    "failed": "bold red",
    "exited": "magenta",
    "stopping": "yellow",
    "stopped": "dim",
}
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F) if code != 0x09}


def plain(text: object) -> str:
    """``text`` as a string with control characters (ESC, CR, ...) escaped."""
    return str(text).translate(_CONTROL)


def colours_for(stream: TextIO) -> bool:
    return "NO_COLOR" not in os.environ and stream.isatty()


def paint(text: str, style: str | None, colour: bool) -> str:
    code = _ANSI.get(style or "")
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text


def problem_lines(source: object, problems: Sequence[object]) -> list[str]:
    """A file's problems as every command prints them: a headline, then one indented line
    each (``  service[1] (collector).restart: ...``)."""
    return [f"{source}: {len(problems)} problem(s)", *(f"  {problem}" for problem in problems)]


def say(text: str, style: str | None = None, stream: TextIO | None = None) -> None:
    """A message to ``stream`` (default: standard error, where messages go): its lines as
    lines (a file's problems come joined), each with its control characters escaped."""
    stream = stream or sys.stderr
    colour = colours_for(stream)
    lines = (paint(plain(line), style, colour) for line in str(text).split("\n"))
    stream.write("\n".join(lines) + "\n")
    stream.flush()


def age(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def size(count: int | None) -> str:
    return "-" if count is None else format_size(count)


def data_summary(data: dict[str, Any]) -> str:
    parts = []
    for kind, d in data.items():
        when = f" ({age(d['last_age'])} ago)" if d.get("last_age") is not None else ""
        parts.append(f"{kind} {d['count']}{when}")
    return ", ".join(parts) or "-"


def table(
    header: Sequence[str], rows: Sequence[Sequence[tuple[str, str | None]]], colour: bool
) -> str:
    """Columns two spaces apart, the last one unpadded; each cell ``(text, style)``."""
    cells = [[(h, None) for h in header], *rows]
    cells = [[(plain(text), style) for text, style in row] for row in cells]
    widths = [max(len(row[i][0]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [
            paint(text.ljust(width) if i < len(widths) - 1 else text, style, colour)
            for i, ((text, style), width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _group_row(
    group: str, members: Sequence[dict[str, Any]], width: int
) -> list[tuple[str, str | None]]:
    """A ``[[service]]`` with instances, above them: how many run, their restarts in all."""
    running = sum(1 for m in members if m["state"] == "running")
    state = f"{running}/{len(members)} running"
    style = "green" if running == len(members) else "yellow"
    scaled = members[0].get("scale_override")
    note = f"instances set by scale: {scaled}" if scaled is not None else "-"
    restarts = str(sum(int(m["restarts"]) for m in members))
    cells: list[tuple[str, str | None]] = [(group, None), (state, style), ("", None), ("", None)]
    cells += [(restarts, None)] + [("", None)] * (width - 7) + [(note, None), ("", None)]
    return cells


def status_table(services: Sequence[dict[str, Any]], colour: bool) -> str:
    """``heartwatch status``: one row per service; CPU and memory when the daemon reports
    them; STATUS is the service's own words (``hb.status()``, ``STATUS=``). The instances of
    a ``[[service]]`` come under a row of their own for it (``collector  3/4 running``)."""
    resources = any(s.get("cpu_percent") is not None for s in services) or any(
        s.get("rss_bytes") is not None for s in services
    )
    probed = any(s.get("probes") for s in services)
    header = ["SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "LAST BEAT", "DATA"]
    header += ["READY"] if probed else []
    header += ["CPU", "MEM"] if resources else []
    header += ["STATUS", "REASON"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in services:
        if s.get("instance_of"):
            groups.setdefault(str(s["instance_of"]), []).append(s)
    rows = []
    for s in services:
        group = s.get("instance_of")
        if group and groups[group] and groups[group][0] is s:
            rows.append(_group_row(group, groups[group], len(header)))
        state = str(s["state"])
        alive = state not in ("stopped", "exited", "failed", "backoff")
        row: list[tuple[str, str | None]] = [
            (("  " if group else "") + str(s["name"]), None),
            (state, STATE_COLOURS.get(state)),
            (str(s["pid"] or "-"), None),
            (age(s.get("uptime")) if alive and s["pid"] else "-", None),
            (str(s["restarts"]), None),
            (age(s["last_heartbeat_age"]) if alive else "-", None),
            (data_summary(s["data"]), None),
        ]
        if probed:
            # What dependents see; "no" while running: a readiness probe is failing.
            ready = ("yes", None) if s.get("ready") else ("no", "yellow" if alive else None)
            row.append(ready if alive else ("-", None))
        if resources:
            cpu = s.get("cpu_percent") if alive else None
            rss = s.get("rss_bytes") if alive else None
            row += [("-" if cpu is None else f"{cpu:.0f}%", None), (size(rss), None)]
        row += [(s.get("status") or "-", None), (str(s["reason"]), None)]
        rows.append(row)
    return table(header, rows, colour)


def probe_lines(services: Sequence[dict[str, Any]]) -> list[str]:
    """One line per probe of each service: ``collector readiness  failing (3 in a row, 2.1 s
    ago): exited 1: error: device offline``."""
    lines = []
    for s in services:
        for kind, probe in (s.get("probes") or {}).items():
            passing = probe.get("passing")
            verdict = "no verdict yet" if passing is None else "passing" if passing else "failing"
            count = probe.get("consecutive_successes" if passing else "consecutive_failures", 0)
            when = [f"{count} in a row"] if passing is not None and count else []
            if probe.get("last_run_age") is not None:
                when.append(f"{age(probe['last_run_age'])} ago")
            detail = f" ({', '.join(when)})" if when else ""
            reason = f": {probe['reason']}" if probe.get("reason") else ""
            lines.append(plain(f"{s['name']} {kind:<9}  {verdict}{detail}{reason}"))
    return lines
