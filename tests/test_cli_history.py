"""``heartwatch history``'s drawing from fixed API answers (pure: no daemon): the strip's
columns and colours, unknown apart, the summary, the rate lines, the piped table."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text

from heartwatch.cli import history as cli_history
from heartwatch.cli.history import (
    BLOCK,
    GAP_STYLE,
    NO_RATE,
    UNKNOWN,
    UNKNOWN_BLOCK,
    UNKNOWN_STYLE,
    column_rates,
    column_states,
    columns,
    rate_blocks,
    render,
    run_history,
    segment_table,
    summary_line,
    window_seconds,
)
from heartwatch.cli.remote import Refused
from heartwatch.cli.text import STATE_COLOURS

SINCE = 1_767_225_600.0  # 2026-01-01 00:00 UTC
HOUR = 3600.0
UNTIL = SINCE + 24 * HOUR


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def segment(
    start: float, end: float, state: str, reason: str = "", entry_id: int | None = None
) -> dict[str, Any]:
    return {"start": start, "end": end, "state": state, "reason": reason, "entry_id": entry_id}


def answers() -> tuple[dict[str, Any], dict[str, Any]]:
    """A day: running, a 2-minute crash at 06:00, the daemon down 09:00-10:00, an hour hung
    at 18:00; a data kind ``row`` that stopped 16 minutes before the hang."""
    segments = [
        segment(SINCE, SINCE + 6 * HOUR, "running", "ready", 1),
        segment(SINCE + 6 * HOUR, SINCE + 6 * HOUR + 120, "backoff", "exited 1: [red]boom", 2),
        segment(SINCE + 6 * HOUR + 120, SINCE + 9 * HOUR, "running", "ready", 3),
        segment(SINCE + 9 * HOUR, SINCE + 10 * HOUR, UNKNOWN, "the daemon was down", None),
        segment(SINCE + 10 * HOUR, SINCE + 18 * HOUR, "running", "ready", 5),
        segment(SINCE + 18 * HOUR, SINCE + 19 * HOUR, "unresponsive", "no heartbeat for 30 s", 6),
        segment(SINCE + 19 * HOUR, UNTIL, "running", "ready", 7),
    ]
    history = {
        "service": "collector",
        "since": SINCE,
        "until": UNTIL,
        "segments": segments,
        "summary": {
            "uptime": 0.95545,
            "running_seconds": 22 * HOUR - 120,
            "wanted_seconds": 23 * HOUR,
            "unknown_seconds": HOUR,
            "incidents": 2,
            "mttr_seconds": 1860.0,
            "longest_outage_seconds": HOUR,
        },
        "recoveries": [],
    }
    step = 240.0  # 360 buckets over a day
    times = [SINCE + i * step for i in range(360)]
    heartbeat: list[float | None] = []
    row: list[float | None] = []
    for t in times:
        down = SINCE + 9 * HOUR <= t < SINCE + 10 * HOUR
        hung = SINCE + 18 * HOUR <= t < SINCE + 19 * HOUR
        data_stopped = SINCE + 18 * HOUR - 960 <= t < SINCE + 19 * HOUR
        heartbeat.append(None if down else 0.0 if hung else 60.0)
        row.append(None if down else 0.0 if data_stopped else 6.0)
    rates = {
        "service": "collector",
        "since": SINCE,
        "until": UNTIL,
        "step_seconds": step,
        "times": times,
        "kinds": {"heartbeat": heartbeat, "row": row},
        "timeouts": {"heartbeat": 30.0, "row": 120.0},
        "gaps": [{"kind": "row", "start": SINCE + 18 * HOUR - 960, "end": SINCE + 18 * HOUR}],
    }
    return history, rates


def test_a_short_outage_keeps_a_column_of_its_own_and_unknown_is_never_running() -> None:
    history, _ = answers()
    spans = columns(SINCE, UNTIL, 96)  # 15 minutes a column
    shown = column_states(history["segments"], spans)
    assert len(shown) == 96
    assert shown[24] == "backoff"  # 06:00-06:15 held a 2-minute crash: it shows
    assert shown.count("backoff") == 1
    assert shown[36:40] == [UNKNOWN] * 4  # 09:00-10:00, the daemon down
    assert shown[72:76] == ["unresponsive"] * 4
    assert shown.count("running") == 96 - 1 - 4 - 4


def test_a_column_partly_unknown_shows_unknown_and_no_segment_is_unknown() -> None:
    segments = [segment(0, 90, "running"), segment(90, 100, UNKNOWN)]
    assert column_states(segments, columns(0, 100, 2)) == ["running", UNKNOWN]
    # The daemon's absence outranks the start that follows it; a failure outranks both.
    restarted = [segment(0, 40, "running"), segment(40, 45, UNKNOWN), segment(45, 50, "starting")]
    assert column_states(restarted, columns(0, 50, 1)) == [UNKNOWN]
    crashed = [*restarted, segment(50, 51, "backoff"), segment(51, 60, "running")]
    assert column_states(crashed, columns(0, 60, 1)) == ["backoff"]
    assert column_states([], columns(0, 100, 3)) == [UNKNOWN] * 3


def test_the_strip_is_coloured_as_status_colours_states_and_unknown_apart() -> None:
    history, rates = answers()
    lines = render(history, rates, 107)  # 96 columns after the label
    strip = lines[1]
    assert strip.plain.startswith("state")
    bar = strip.plain[cli_history.LABEL_WIDTH :]
    assert len(bar) == 96
    styles = {}
    for span in strip.spans:
        for i in range(span.start, span.end):
            styles[i - cli_history.LABEL_WIDTH] = str(span.style)
    assert bar[24] == BLOCK and styles[24] == STATE_COLOURS["backoff"]
    assert bar[36] == UNKNOWN_BLOCK and styles[36] == UNKNOWN_STYLE
    assert bar[0] == BLOCK and styles[0] == STATE_COLOURS["running"]
    assert styles[72] == STATE_COLOURS["unresponsive"]
    assert UNKNOWN_BLOCK not in bar[:36] + bar[40:]
    # A span per run of one state, not per character: 7 runs (the label has none).
    assert len(strip.spans) == 7


def test_a_cut_window_says_so() -> None:
    history, rates = answers()
    assert "its end is cut" not in render(history, rates, 100)[-1].plain
    history["truncated"] = True
    assert "its end is cut" in render(history, rates, 100)[-1].plain


def test_every_line_fits_the_width_and_names_are_not_markup() -> None:
    history, rates = answers()
    history["service"] = "[bold red]collector\x1b]0;x"
    for width in (40, 80, 200):
        console = Console(width=width, record=True, markup=False, file=io.StringIO())
        for line in render(history, rates, width):
            assert line.cell_len <= width
            console.print(line, no_wrap=True, crop=True)
        text = console.export_text()
        assert "[bold red]collector\\x1b]0;x" in text  # as written, the escape shown escaped
        assert "\x1b" not in text


def test_the_summary_says_uptime_incidents_mttr_longest_outage_and_unknown_apart() -> None:
    history, _ = answers()
    line = summary_line(history["summary"])
    assert "uptime 95.54 %" in line  # truncated, never rounded up
    assert "21 h 58 min running of 23 h wanted" in line
    assert "incidents 2" in line
    assert "MTTR 31 min" in line
    assert "longest outage 1 h" in line
    assert "unknown 1 h (daemon down or no record; not counted)" in line
    never = summary_line(
        {"uptime": None, "incidents": 0, "mttr_seconds": None, "longest_outage_seconds": None}
    )
    assert never.startswith("uptime - (never wanted")
    assert "MTTR -" in never and "unknown" not in never
    assert summary_line({"uptime": 0.99999, "incidents": 1}).startswith("uptime 99.99 %")


def test_rate_lines_data_above_heartbeat_with_timeouts_gaps_and_the_daemon_down() -> None:
    history, rates = answers()
    lines = render(history, rates, 107)
    labels = [line.plain[: cli_history.LABEL_WIDTH].strip() for line in lines]
    row, heartbeat = labels.index("row"), labels.index("heartbeat")
    assert row < heartbeat  # the heartbeat beneath, for comparison
    row_bar = lines[row].plain[cli_history.LABEL_WIDTH :]
    beat_bar = lines[heartbeat].plain[cli_history.LABEL_WIDTH :]
    assert row_bar[0] == "█" and beat_bar[0] == "█"
    assert row_bar[36:40] == "    " and beat_bar[36:40] == "    "  # the daemon down: no count
    # Data stopped at 17:44, the heartbeat at 18:00: a column apart on the same axis.
    assert row_bar[69] == "█" and row_bar[70] == "▆"  # 4 buckets of 6/min, 1 of none
    assert row_bar[71:76] == NO_RATE * 5 and beat_bar[71] == "█"
    assert beat_bar[72:76] == NO_RATE * 4
    gap_cells = {
        i - cli_history.LABEL_WIDTH
        for span in lines[row].spans
        if str(span.style) == GAP_STYLE
        for i in range(span.start, span.end)
    }
    assert gap_cells == {70, 71}  # the gap begins in the column of 17:30-17:45
    assert "max 6.0/min, timeout 2 min, 1 gap(s) in red" in lines[row + 1].plain
    assert "max 60.0/min, timeout 30.0 s" in lines[heartbeat + 1].plain


def test_column_rates_average_overlapping_buckets_and_blocks_scale_to_the_top() -> None:
    times = [0.0, 60.0, 120.0, 180.0]
    values: list[float | None] = [2.0, 4.0, None, None]
    assert column_rates(times, 60.0, values, columns(0, 240, 2)) == [3.0, None]
    # A bucket wider than a column fills every column it covers.
    assert column_rates([0.0], 240.0, [5.0], columns(0, 240, 4)) == [5.0] * 4
    assert rate_blocks([8.0, 4.0, 1.0, 0.0, None]) == "█▄▁· "
    assert rate_blocks([10.0, 9.0, 0.1]) == "█▇▁"  # 10 % below the top is a block lower
    assert rate_blocks([0.0, None]) == "· "


def test_piped_a_plain_table_one_line_per_segment() -> None:
    history, _ = answers()
    lines = segment_table(history).splitlines()
    assert lines[0].split() == ["START", "END", "STATE", "REASON"]
    assert len(lines) == 1 + len(history["segments"])
    assert lines[1].split()[:5] == ["2026-01-01", "00:00:00", "2026-01-01", "06:00:00", "running"]
    assert lines[2].split()[3] == "06:02:00"  # to the second: a short segment is not 0 long
    assert lines[2].endswith("exited 1: [red]boom")
    assert lines[4].split()[4] == UNKNOWN
    assert "\x1b" not in "".join(lines)


def test_window_seconds_names_the_option() -> None:
    assert window_seconds("7d") == 7 * 86400
    with pytest.raises(ValueError, match="--since: 'soon' is not a duration"):
        window_seconds("soon")
    with pytest.raises(ValueError, match="--since: '30s' is shorter than a minute"):
        window_seconds("30s")


def test_run_history_piped_json_and_refusals(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    history, rates = answers()
    asked: list[tuple[str, float]] = []

    def fetch(name: str, seconds: float, *_: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        asked.append((name, seconds))
        if name == "nope":
            raise Refused("no service 'nope'", 1)
        return history, rates

    monkeypatch.setattr(cli_history, "fetch", fetch)
    config = Path("heartwatch.toml")
    assert run_history("collector", "24h", config, None, None, False) == 0
    piped = capsys.readouterr().out
    assert piped.splitlines()[0].split() == ["START", "END", "STATE", "REASON"]
    assert run_history("collector", "7d", config, None, None, True) == 0
    assert json.loads(capsys.readouterr().out) == {"history": history, "rates": rates}
    assert asked == [("collector", 86400.0), ("collector", 7 * 86400.0)]
    assert run_history("nope", "24h", config, None, None, False) == 1
    assert "no service 'nope'" in capsys.readouterr().err
    assert run_history("collector", "whenever", config, None, None, False) == 2
    assert "--since" in capsys.readouterr().err
    assert len(asked) == 3  # a bad option asks nothing


def test_the_legend_gives_each_state_its_time() -> None:
    history, rates = answers()
    legend = render(history, rates, 200)[-1]
    assert isinstance(legend, Text)
    assert "backoff 2.0 min" not in legend.plain  # format_duration's words
    assert "backoff 2 min" in legend.plain
    assert "unknown 1 h" in legend.plain
    assert "running 21 h 58 min" in legend.plain
