"""``heartwatch history NAME`` against a real daemon: after a hang, piped it prints the
segments the API holds, ``--json`` the API's answers, and in a terminal the coloured strip
with the summary and the heartbeat's rate line."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.support import Pipeline, duration, heartwatch, scaled, wait_until, worker_command

pytestmark = pytest.mark.e2e


def in_terminal(*args: str | Path, cwd: Path, columns: int) -> tuple[int, str]:
    """The command with a pseudo-terminal as its standard output: exit code, what it drew."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "heartwatch", *map(str, args)],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.STDOUT,  # a message would be drawn too, and shown by a failure
        env=env,
    )
    os.close(follower)
    drawn = b""
    deadline = time.monotonic() + scaled(30)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the follower closed: the command ended
                    break
                if not chunk:
                    break
                drawn += chunk
            elif process.poll() is not None:
                break
        code = process.wait(scaled(10))
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, drawn.decode("utf-8", "replace")


def test_cli_history_after_a_hang_piped_json_and_in_a_terminal(pipeline: Pipeline) -> None:
    config = pipeline.write_config(
        [
            {
                "name": "collector",
                "command": worker_command("--beat", "0.1"),
                "heartbeat_timeout": duration(1),
                "stop_timeout": duration(1),
            }
        ]
    )
    daemon = pipeline.start_daemon()
    first = daemon.wait_running("collector")["pid"]
    os.kill(first, signal.SIGSTOP)  # alive but silent: a hang, recovered by a restart
    daemon.wait_service(
        "collector",
        lambda s: s["state"] == "running" and s["pid"] not in (None, first),
        "running again after its hang",
    )

    def settled() -> dict[str, Any] | None:
        answer: dict[str, Any] = daemon.request("GET", "/api/v1/history/collector?window=1h")
        over = answer["segments"][-1]["state"] == "running" and answer["summary"]["incidents"]
        return answer if over else None

    api = wait_until(settled, "the hang in the history, running again")
    api_states = [s["state"] for s in api["segments"]]

    piped = heartwatch("history", "collector", "--since", "1h", "-c", config, cwd=pipeline.folder)
    assert piped.returncode == 0, piped
    header, *rows = piped.stdout.splitlines()
    assert header.split() == ["START", "END", "STATE", "REASON"]
    states = [row.split()[4] for row in rows]  # START and END are a date and a time each
    assert states == api_states
    assert states[0] == "unknown" and states[-1] == "running"
    hung = [row for row in rows if row.split()[4] in ("unresponsive", "restarting")]
    assert hung and "no heartbeat" in hung[0], piped.stdout
    assert "\x1b" not in piped.stdout  # piped: no colour

    as_json = heartwatch(
        "history", "collector", "--since", "1h", "--json", "-c", config, cwd=pipeline.folder
    )
    assert as_json.returncode == 0, as_json
    answers = json.loads(as_json.stdout)
    assert [s["state"] for s in answers["history"]["segments"]] == api_states
    assert answers["history"]["summary"]["incidents"] == api["summary"]["incidents"]
    assert answers["rates"]["since"] == answers["history"]["since"]  # one time axis
    assert answers["rates"]["until"] == answers["history"]["until"]
    assert answers["rates"]["kinds"]["heartbeat"], answers["rates"]  # one line per kind

    code, drawn = in_terminal(
        "history", "collector", "--since", "1h", "-c", config, cwd=pipeline.folder, columns=90
    )
    assert code == 0, drawn
    assert "\x1b[" in drawn  # colours
    assert "░" in drawn and "█" in drawn  # before the daemon's start: unknown, apart
    assert f"incidents {api['summary']['incidents']}" in drawn
    assert "uptime" in drawn and "MTTR" in drawn
    assert "heartbeat" in drawn and "/min" in drawn  # its rate line and what it means

    unknown = heartwatch("history", "nope", "-c", config, cwd=pipeline.folder)
    assert unknown.returncode == 1
    assert "nope" in unknown.stderr
