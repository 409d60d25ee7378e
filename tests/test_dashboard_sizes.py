"""One style for sizes: the daemon's ``format_size`` and the dashboard's ``formatSize`` say the
same for the same bytes (node runs the page's module), as durations do (test_durations.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from heartwatch.core.units import format_size

DOM_JS = Path(__file__).resolve().parents[1] / "src" / "heartwatch" / "web" / "static" / "dom.js"
SIZES = [
    0, 1, 512, 1023, 1024, 1536, 10 * 1024, 102_349, 102_400, 1_048_575, 1_048_576,
    9_584_640, 15_085_568, 104_805_171, 2 * 1024**3, 2_254_857_830, 5 * 1024**4, 3 * 1024**5,
]  # fmt: skip


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_dashboard_formats_sizes_as_the_daemon_does() -> None:
    script = (
        f"const {{ formatSize }} = await import({json.dumps(DOM_JS.as_uri())});"
        f"console.log(JSON.stringify({json.dumps(SIZES)}.map(formatSize)));"
    )
    run = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(run.stdout) == [format_size(s) for s in SIZES]
