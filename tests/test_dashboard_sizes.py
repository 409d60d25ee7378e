"""One style for sizes: the daemon's ``format_size`` and the dashboard's ``formatSize`` say the
same for the same bytes (node runs the page's module), as durations do (test_durations.py)."""

from __future__ import annotations

import json

from heartwatch.core.units import format_size
from nodejs import needs_node, node_json

SIZES = [
    0, 1, 512, 1023, 1024, 1536, 10 * 1024, 102_349, 102_400, 1_048_575, 1_048_576,
    9_584_640, 15_085_568, 104_805_171, 2 * 1024**3, 2_254_857_830, 5 * 1024**4, 3 * 1024**5,
]  # fmt: skip


@needs_node
def test_the_dashboard_formats_sizes_as_the_daemon_does() -> None:
    formatted = node_json("dom.js", "{ formatSize }", f"{json.dumps(SIZES)}.map(formatSize)")
    assert formatted == [format_size(s) for s in SIZES]
