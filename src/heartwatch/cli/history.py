"""``heartwatch history NAME``: a service's past in the terminal, from the daemon's history API.

Two calls, ``GET /api/v1/history/{name}`` (state segments, uptime, incidents, time to recover)
and ``GET /api/v1/history/{name}/rates`` over the same ``since``/``until`` (the first answer's:
the daemon's clock decides the window), so the figures are those the history page shows,
computed by the same core functions. Nothing is recomputed here but the drawing.

In a terminal (rich, markup off: a reason is printed as written):

- the state strip, one block character per column over the terminal's width; a column shows
  the most serious state it holds (a 30-second crash in a 30-day strip is still one column
  wide and red; the uptime figures are exact, from the daemon); *unknown* (the daemon was down,
  or nothing was recorded) is drawn with a shade of its own, never as running;
- uptime, incidents, mean time to recover, longest outage, the daemon's absence apart;
- one rate line per kind over the same time axis (``▁▂▃▄▅▆▇█`` scaled to the kind's highest
  column, ``·`` none at all, blank where the daemon was down), red where the daemon found a
  gap (the service beat but the kind sent nothing for longer than its ``data_timeout``).

Piped, a plain table (start, end, state, reason), one line per segment, for grep and awk;
``--json`` both answers as they came.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from heartwatch.cli.remote import Refused, call, locate, token_to_show
from heartwatch.cli.text import STATE_COLOURS, plain, say, table
from heartwatch.core.units import format_duration, parse_duration

TYPE_CHECKING = False  # not typing's: see heartwatch/__init__.py
if TYPE_CHECKING:
    from rich.text import Text

UNKNOWN = "unknown"
BLOCK = "█"
UNKNOWN_BLOCK = "░"
UNKNOWN_STYLE = "bright_black"
RATE_BLOCKS = "▁▂▃▄▅▆▇█"
NO_RATE = "·"  # the daemon was up and counted nothing
DOWN_RATE = " "  # the daemon was down: no count at all
GAP_STYLE = "bold red"
LABEL_WIDTH = 11
MIN_BAR_WIDTH = 10
# Which state a column shows when several fall into it: the most serious first, so that a
# short outage stays visible however long the window. Unknown comes right after the failures,
# before the passing states that follow one (a daemon's restart is "starting" for every
# service): a column the daemon did not see in part is not claimed to have been fine.
SEVERITY = (
    "failed",
    "unresponsive",
    "exited",
    "backoff",
    UNKNOWN,
    "restarting",
    "stopping",
    "starting",
    "stopped",
    "running",
)


def window_seconds(text: str) -> float:
    """``--since`` as seconds (``24h``, ``7d``, ``90m``): ``ValueError`` naming the option."""
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        raise ValueError(f"--since: {error}") from None
    if seconds < 60:
        raise ValueError(f"--since: {text!r} is shorter than a minute, the history's step")
    return seconds


def fetch(
    name: str, since_seconds: float, config: Path, url: str | None, token: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The daemon's two answers for ``name`` over the last ``since_seconds``: history, rates
    (``Refused`` when it cannot or will not answer, an unknown service included)."""
    base, place = locate(config, url)
    shown = token_to_show(token, place)
    path = f"/api/v1/history/{quote(name, safe='@')}"
    since = time.time() - since_seconds
    history: dict[str, Any] = call(
        base, "GET", f"{path}?{urlencode({'since': f'{since:.3f}'})}", token=shown
    )
    window = urlencode({"since": history["since"], "until": history["until"]})
    rates: dict[str, Any] = call(base, "GET", f"{path}/rates?{window}", token=shown)
    return history, rates


# -- the drawing (pure: fixed answers in, rich Text out) -----------------------------------


def columns(since: float, until: float, width: int) -> list[tuple[float, float]]:
    """``width`` equal spans of [since, until): the time each character stands for."""
    step = (until - since) / width
    return [(since + i * step, since + (i + 1) * step) for i in range(width)]


def column_states(
    segments: Sequence[dict[str, Any]], spans: Sequence[tuple[float, float]]
) -> list[str]:
    """Per column, the most serious state of the segments overlapping it (unknown where no
    segment does: the API covers the window, but a strip never guesses "running")."""
    rank = {state: i for i, state in enumerate(SEVERITY)}
    starts = [float(s["start"]) for s in segments]
    shown = []
    for low, high in spans:
        # Segments are contiguous and in order: those overlapping [low, high).
        first = max(0, bisect.bisect_right(starts, low) - 1)
        found = []
        for segment in itertools.islice(segments, first, None):
            if float(segment["start"]) >= high:
                break  # the rest begin later still: each column reads only its own
            if float(segment["end"]) > low:
                found.append(str(segment["state"]))
        if not found:
            shown.append(UNKNOWN)
            continue
        found.sort(key=lambda state: rank.get(state, -1))  # a state unknown to us comes first
        shown.append(found[0])
    return shown


def state_style(state: str) -> str:
    return UNKNOWN_STYLE if state == UNKNOWN else STATE_COLOURS.get(state, "white")


def runs(cells: Sequence[tuple[str, str | None]]) -> Text:
    """Characters with their styles as one Text, a span per run of one style (a terminal
    gets one colour code per run, not one per character)."""
    from rich.text import Text

    text = Text()
    start = 0
    for i in range(1, len(cells) + 1):
        if i == len(cells) or cells[i][1] != cells[start][1]:
            text.append("".join(char for char, _ in cells[start:i]), style=cells[start][1])
            start = i
    return text


def strip(segments: Sequence[dict[str, Any]], spans: Sequence[tuple[float, float]]) -> Text:
    return runs(
        [
            (UNKNOWN_BLOCK if state == UNKNOWN else BLOCK, state_style(state))
            for state in column_states(segments, spans)
        ]
    )


def column_rates(
    times: Sequence[float],
    step: float,
    values: Sequence[float | None],
    spans: Sequence[tuple[float, float]],
) -> list[float | None]:
    """Per column, the mean of the buckets overlapping it that have a value (``None``: the
    daemon was down through all of them, or no bucket falls there)."""
    shown: list[float | None] = []
    for low, high in spans:
        first = max(0, bisect.bisect_right(times, low) - 1)
        found = []
        for start, value in zip(times[first:], values[first:], strict=False):
            if start >= high:
                break
            if start + step > low and value is not None:
                found.append(value)
        shown.append(sum(found) / len(found) if found else None)
    return shown


def gap_columns(
    gaps: Sequence[dict[str, Any]], kind: str, spans: Sequence[tuple[float, float]]
) -> set[int]:
    ranges = [(float(g["start"]), float(g["end"])) for g in gaps if g.get("kind") == kind]
    return {
        i for i, (low, high) in enumerate(spans) if any(s < high and e > low for s, e in ranges)
    }


def rate_blocks(rates: Sequence[float | None]) -> str:
    """``▁``..``█`` scaled to the highest value, ``·`` for zero, blank for none."""
    top = max((r for r in rates if r is not None), default=0.0)
    chars = []
    for rate in rates:
        if rate is None:
            chars.append(DOWN_RATE)
        elif rate <= 0 or top <= 0:
            chars.append(NO_RATE)
        else:
            # Rounded, not rounded up: a column 10 % below the top (a short stop in a long
            # window) is one block lower, not drawn as the top.
            level = min(len(RATE_BLOCKS), max(1, round(rate / top * len(RATE_BLOCKS))))
            chars.append(RATE_BLOCKS[level - 1])
    return "".join(chars)


def rate_line(
    kind: str, rates: dict[str, Any], spans: Sequence[tuple[float, float]]
) -> tuple[Text, str]:
    """One kind's bar (gaps in red) and what it means (its highest rate, timeout, gaps)."""

    times = [float(t) for t in rates.get("times") or []]
    values = rates["kinds"][kind]
    shown = column_rates(times, float(rates["step_seconds"]), values, spans)
    gaps = gap_columns(rates.get("gaps") or [], kind, spans)
    bar = runs(
        [(char, GAP_STYLE if i in gaps else None) for i, char in enumerate(rate_blocks(shown))]
    )
    top = max((r for r in shown if r is not None), default=None)
    notes = ["no count" if top is None else f"max {_per_minute(top)}/min"]
    timeout = (rates.get("timeouts") or {}).get(kind)
    if timeout is not None:
        notes.append(f"timeout {format_duration(float(timeout))}")
    gap_count = sum(1 for g in rates.get("gaps") or [] if g.get("kind") == kind)
    if gap_count:
        notes.append(f"{gap_count} gap(s) in red")
    return bar, ", ".join(notes)


def _per_minute(rate: float) -> str:
    return f"{rate:.1f}" if rate < 100 else f"{rate:.0f}"


def clock(at: float, long: bool, seconds: bool = False) -> str:
    """A local time as the axis (minutes) and the table (seconds) print it."""
    shown = ("%Y-%m-%d %H:%M" if long else "%H:%M") + (":%S" if seconds else "")
    return time.strftime(shown, time.localtime(at))


def axis(since: float, until: float, width: int) -> str:
    """The strip's time axis: its start at the left, its end at the right."""
    long = until - since > 86400 or time.localtime(since)[:3] != time.localtime(until)[:3]
    left, right = clock(since, long), clock(until, long)
    if len(left) + len(right) + 1 > width:
        return left[:width]
    return left + " " * (width - len(left) - len(right)) + right


def summary_parts(summary: dict[str, Any]) -> list[str]:
    """Uptime (running over wanted), incidents, MTTR, longest outage, and the time nobody
    knows about (the daemon down) apart: it counts neither for nor against the uptime."""
    uptime = summary.get("uptime")
    if uptime is None:
        parts = ["uptime - (never wanted running in this window)"]
    else:
        running = format_duration(float(summary.get("running_seconds") or 0))
        wanted = format_duration(float(summary.get("wanted_seconds") or 0))
        parts = [f"uptime {_percent(float(uptime))} ({running} running of {wanted} wanted)"]
    parts.append(f"incidents {summary.get('incidents', 0)}")
    mttr = summary.get("mttr_seconds")
    parts.append(f"MTTR {'-' if mttr is None else format_duration(float(mttr))}")
    longest = summary.get("longest_outage_seconds")
    parts.append(f"longest outage {'-' if longest is None else format_duration(float(longest))}")
    unknown = float(summary.get("unknown_seconds") or 0)
    if unknown > 0:
        parts.append(f"unknown {format_duration(unknown)} (daemon down or no record; not counted)")
    return parts


def summary_line(summary: dict[str, Any]) -> str:
    return "  ".join(summary_parts(summary))


def fit(parts: Sequence[str], width: int) -> list[str]:
    """``parts`` two spaces apart, on as many lines as ``width`` needs (a part never split)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += "  " + part
        else:
            lines.append(part)
    return lines


def _percent(fraction: float) -> str:
    # 99.99 % is not 100 %: a number that rounds up to a perfect record is shown truncated.
    value = math.floor(fraction * 10000) / 100
    return f"{value:.2f} %"


def legend(segments: Sequence[dict[str, Any]], width: int) -> list[Text]:
    """Each state the window holds, in its colour, with its time in all; as many lines as
    ``width`` needs."""
    from rich.text import Text

    seconds: dict[str, float] = {}
    for s in segments:
        state = str(s["state"])
        seconds[state] = seconds.get(state, 0.0) + float(s["end"]) - float(s["start"])
    rank = {state: i for i, state in enumerate(SEVERITY)}
    lines: list[Text] = []
    for state in sorted(seconds, key=lambda st: (rank.get(st, -1), st)):
        item = Text(UNKNOWN_BLOCK if state == UNKNOWN else BLOCK, style=state_style(state))
        item.append(f" {plain(state)} {format_duration(seconds[state])}")
        if lines and lines[-1].cell_len + 2 + item.cell_len <= width:
            lines[-1].append("  ")
            lines[-1].append_text(item)
        else:
            lines.append(item)
    return lines


def render(history: dict[str, Any], rates: dict[str, Any], width: int) -> list[Text]:
    """What a terminal shows, as lines of rich Text, ``width`` characters at most."""
    from rich.text import Text

    since, until = float(history["since"]), float(history["until"])
    bar_width = max(MIN_BAR_WIDTH, width - LABEL_WIDTH)
    spans = columns(since, until, bar_width)
    segments = history.get("segments") or []
    title = Text(plain(history["service"]), style="bold")
    title.append(f"  the {format_duration(until - since)} to {clock(until, True)}")
    lines = [title, Text("state".ljust(LABEL_WIDTH)) + strip(segments, spans)]
    lines.append(Text(" " * LABEL_WIDTH + axis(since, until, bar_width), style="dim"))
    parts = summary_parts(history.get("summary") or {})
    lines += [Text(line) for line in fit(parts, width)]
    kinds = list(rates.get("kinds") or {})
    # The heartbeat last, beneath the data kinds: "data stopped before the hang" reads down.
    kinds.sort(key=lambda kind: kind == "heartbeat")
    for kind in kinds:
        bar, notes = rate_line(kind, rates, spans)
        label = plain(kind)
        label = label if len(label) < LABEL_WIDTH else label[: LABEL_WIDTH - 2] + "…"
        lines.append(Text(label.ljust(LABEL_WIDTH)) + bar)
        lines.append(Text(" " * LABEL_WIDTH + notes, style="dim"))
    lines += legend(segments, width)
    if history.get("truncated"):
        lines.append(
            Text("the window holds more entries than one answer reads: its end is cut", "yellow")
        )
    for line in lines:
        line.no_wrap = True
        line.truncate(width, overflow="ellipsis")
    return lines


def segment_table(history: dict[str, Any]) -> str:
    """Piped: one line per segment, start, end, state, reason (no colour)."""
    rows = [
        [
            (clock(float(s["start"]), True, seconds=True), None),
            (clock(float(s["end"]), True, seconds=True), None),
            (str(s["state"]), None),
            (str(s.get("reason") or "-"), None),
        ]
        for s in history.get("segments") or []
    ]
    return table(["START", "END", "STATE", "REASON"], rows, colour=False)


# -- the command ---------------------------------------------------------------------------


def run_history(
    name: str,
    since: str,
    config: Path,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> int:
    """``heartwatch history NAME``; the exit code (1 refused or unknown, 2 a bad option)."""
    try:
        seconds = window_seconds(since)
    except ValueError as error:
        say(str(error), "red")
        return 2
    try:
        history, rates = fetch(name, seconds, config, url, token)
    except Refused as refused:
        say(refused.message, "red")
        return refused.exit_code
    if as_json:
        sys.stdout.write(json.dumps({"history": history, "rates": rates}, indent=2) + "\n")
        return 0
    if not sys.stdout.isatty():
        sys.stdout.write(segment_table(history) + "\n")
        return 0
    from rich.console import Console

    console = Console(markup=False, emoji=False, highlight=False)
    for line in render(history, rates, console.width):
        console.print(line, no_wrap=True, crop=True)
    return 0
