"""Asking the dashboard's own JavaScript modules a question, through node: how the tests
check that the page and the daemon say the same (sizes, durations, state order)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

STATIC = Path(__file__).resolve().parents[1] / "src" / "heartwatch" / "web" / "static"

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def node_json(module: str, names: str, expression: str) -> Any:
    """The JSON value of ``expression`` once ``names`` (``"{ formatSize }"``) are imported
    from ``static/<module>``."""
    script = (
        f"const {names} = await import({json.dumps((STATIC / module).as_uri())});"
        f"console.log(JSON.stringify({expression}));"
    )
    run = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(run.stdout)
