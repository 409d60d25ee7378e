"""The supervisor options, wired for real: a crash's last stderr line in its reason, autostart,
env_file, umask, timestamped output and clearing it, and running as another user."""

from __future__ import annotations

import os
import re
import sys

import pytest

from e2e.support import Pipeline, duration, wait_until

MISSING = "heartwatch_no_such_module_s11"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d ")
# Says who it is and what it was given, on stdout and stderr, a line in two writes, then waits.
SHOW = """
import os, sys, time
print("uid", os.getuid(), "home", os.environ.get("HOME"), "user", os.environ.get("USER"))
print("groups", sorted(os.getgroups()), "gid", os.getgid())
print("umask", oct(os.umask(0)))
print("env", os.environ.get("FROM_FILE"), os.environ.get("OVER"), flush=True)
sys.stderr.write("to stderr\\n"); sys.stderr.flush()
time.sleep(0.1)
sys.stdout.write("partial"); sys.stdout.flush()
time.sleep(0.2)
print(" done", flush=True)
time.sleep(3600)
"""


def output_lines(pipeline: Pipeline, name: str) -> list[str]:
    path = pipeline.log_dir / f"{name}.log"
    return path.read_text().splitlines() if path.exists() else []


def test_crash_reason_autostart_env_file_timestamps_and_clear(pipeline: Pipeline) -> None:
    """A crash says its last stderr line everywhere; autostart = false waits for a start;
    env_file under env; umask; every captured line timestamped; DELETE clears the output."""
    (pipeline.folder / "worker.env").write_text("FROM_FILE=file\nOVER=file\n")
    pipeline.write_config(
        [
            {"name": "crash", "command": [sys.executable, "-c", f"import {MISSING}"]}
            | {"max_restarts": 0},
            {
                "name": "lazy",
                "command": [sys.executable, "-c", "import time; time.sleep(3600)"],
                "autostart": False,
                "startsecs": 0,
            },
            {
                "name": "shown",
                "command": [sys.executable, "-c", SHOW],
                "env_file": "worker.env",
                "env": {"OVER": "env"},
                "umask": "027",
                "output_timestamps": True,
                "startsecs": duration(0.1),
                "stop_timeout": duration(2),
            },
        ]
    )
    daemon = pipeline.start_daemon()
    words = f"ModuleNotFoundError: No module named '{MISSING}'"
    crash = daemon.wait_service("crash", lambda s: s["state"] == "failed", "failed")
    assert crash["reason"] == (
        f"gave up after 0 restarts in 300 s: exited within startsecs 1 s: exit code 1: {words}"
    )
    assert crash["last_exit"] == f"exit code 1: {words}"
    events = daemon.request("GET", "/api/v1/events?service=crash&limit=100")["events"]
    assert f"exit code 1: {words}" in [e["reason"] for e in events if e["kind"] == "exit"]
    assert words in daemon.log_text()

    daemon.wait_running("shown")
    lazy = daemon.service("lazy")
    assert (lazy["state"], lazy["autostart"], lazy["pid"]) == ("stopped", False, None)
    assert lazy["reason"] == "not started (autostart = false)"
    daemon.control("lazy", "start")
    daemon.wait_running("lazy")

    lines = wait_until(
        lambda: (found := output_lines(pipeline, "shown")) and "done" in found[-1] and found,
        "shown's output",
    )
    assert all(STAMP.match(line) for line in lines), lines
    said = [STAMP.sub("", line) for line in lines]
    assert "umask 0o27" in said
    assert "env file env" in said
    assert "to stderr" in said
    # One line in two writes; were stderr read only after it began, it would end it first.
    assert "partial done" in said or ("partial" in said and " done" in said), said
    assert said[0].startswith("[heartwatch] starting ")

    status, _, body = daemon.raw("DELETE", "/api/v1/services/shown/output")
    assert status == 200, body
    assert b'"bytes_removed":' in body
    assert (pipeline.log_dir / "shown.log").stat().st_size == 0
    status, _, body = daemon.raw("DELETE", "/api/v1/services/nope/output")
    assert status == 404
    assert b'"unknown_service"' in body
    assert daemon.service("shown")["state"] == "running"  # clearing touches no process


@pytest.mark.skipif(os.geteuid() != 0, reason="running a service as another user needs root")
def test_a_service_runs_as_nobody_with_its_home(pipeline: Pipeline) -> None:
    """``user = "nobody"``: its uid, groups and HOME/USER, as ``su -`` would set them; its
    output file is still the daemon's."""
    pipeline.write_config(
        [
            {
                "name": "shown",
                "command": [sys.executable, "-c", SHOW],
                "user": "nobody",
                "cwd": "/",
                "startsecs": duration(0.1),
                "stop_timeout": duration(2),
            }
        ]
    )
    daemon = pipeline.start_daemon()
    daemon.wait_running("shown")
    lines = wait_until(
        lambda: (found := output_lines(pipeline, "shown")) and "done" in found[-1] and found,
        "shown's output",
    )
    assert "uid 65534 home /nonexistent user nobody" in lines
    assert f"groups {sorted(os.getgrouplist('nobody', 65534))} gid 65534" in lines
    assert (pipeline.log_dir / "shown.log").stat().st_uid == 0
