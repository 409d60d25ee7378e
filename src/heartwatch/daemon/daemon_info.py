"""``daemon.json`` in the state directory: where the running daemon listens.

Written by the daemon once it listens (ports asked as 0 are known only then), read by the CLI
and by tests. A module of its own so that a short-lived command (``heartwatch beat``) finds
the daemon without importing what the daemon itself needs (psutil, loguru).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

DAEMON_INFO = "daemon.json"
# ``[daemon] state_dir``'s default (config.py), here so that the CLI's quick reading of a
# config file (``cli/remote.py``) finds daemon.json without the schema.
DEFAULT_STATE_DIR = ".heartwatch"


def write_daemon_info(state_dir: Path, **info: Any) -> None:
    """``daemon.json``, with this pid."""
    replace_json(state_dir / DAEMON_INFO, {"pid": os.getpid(), **info})


def replace_json(path: Path, data: Any) -> None:
    """Write ``path`` at once: a reader (the CLI, the next daemon) never sees half of it."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=1))
    temporary.replace(path)


def read_daemon_info(state_dir: Path) -> dict[str, Any] | None:
    """What the daemon wrote, or ``None`` when there is none (or it is not readable)."""
    try:
        data = json.loads((state_dir / DAEMON_INFO).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_daemon_info(state_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (state_dir / DAEMON_INFO).unlink()
