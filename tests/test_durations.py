"""One style for durations: the daemon's ``format_duration`` and the dashboard's
``formatDuration`` say the same for the same seconds (node runs the page's module)."""

from __future__ import annotations

import json

from heartwatch.core.units import format_duration
from nodejs import needs_node, node_json

SECONDS = [
    0.0, 0.04, 0.44, 3.0, 9.96, 42.9, 60.0, 61.23, 99.94, 99.96, 100.0, 185.0, 599.5, 600.0,
    3599.0, 3600.0, 7505.0, 86399.0, 86400.0, 3 * 86400 + 3605.0, 400 * 86400.0, -5.0,
]  # fmt: skip


@needs_node
def test_the_dashboard_formats_durations_as_the_daemon_does() -> None:
    formatted = node_json(
        "dom.js", "{ formatDuration }", f"{json.dumps(SECONDS)}.map(formatDuration)"
    )
    assert formatted == [format_duration(s) for s in SECONDS]


def test_the_style_in_words() -> None:
    assert [format_duration(s) for s in (0.44, 61.23, 185, 600, 7505, 3 * 86400 + 3605)] == [
        "0.4 s",
        "61.2 s",
        "3 min 5 s",
        "10 min",
        "2 h 5 min",
        "3 d 1 h",
    ]
