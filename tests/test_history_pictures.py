"""One ranking of states for the history's pictures: the page's strip (``pictures.js``
PAINT_ORDER, mildest to worst) paints over each other the states in the order in which
``heartwatch history`` lets one win a column (``cli/history.py`` SEVERITY, worst first)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from heartwatch.cli.history import SEVERITY

PICTURES_JS = (
    Path(__file__).resolve().parents[1] / "src" / "heartwatch" / "web" / "static" / "pictures.js"
)
CALM = ("running", "stopped")  # never widened on the page: drawn at their true width


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_page_and_the_terminal_rank_states_alike() -> None:
    script = (
        f"const {{ PAINT_ORDER }} = await import({json.dumps(PICTURES_JS.as_uri())});"
        "console.log(JSON.stringify(PAINT_ORDER));"
    )
    run = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    worst_first = [state for state in SEVERITY if state not in CALM]
    assert json.loads(run.stdout) == list(reversed(worst_first))
