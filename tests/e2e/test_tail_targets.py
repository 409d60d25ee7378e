"""``heartwatch tail`` names: services, the daemon's own log, files; and what it says when a
name is none of them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from e2e.support import Daemon, Pipeline, heartwatch, wait_until

pytestmark = pytest.mark.e2e

TALKER = [
    sys.executable,
    "-c",
    "import itertools, time\n"
    "for i in itertools.count():\n"
    "    print(f'tick {i}', flush=True)\n"
    "    time.sleep(0.05)\n",
]


@pytest.fixture
def daemon(pipeline: Pipeline) -> Daemon:
    """A daemon without [logs] roots, running one talking service."""
    pipeline.write_config([{"name": "talker", "command": TALKER}])
    started = pipeline.start_daemon()
    started.wait_running("talker")
    output = pipeline.log_dir / "talker.log"
    wait_until(lambda: output.exists() and "tick 3" in output.read_text(), "talker's output")
    return started


def test_an_unknown_service_says_so_and_names_the_known_ones(
    pipeline: Pipeline, daemon: Daemon
) -> None:
    result = heartwatch("tail", "nope", "--no-follow", cwd=pipeline.folder)
    assert result.returncode == 1, result
    assert "no service 'nope'" in result.stderr, result.stderr
    assert "talker" in result.stderr and "--daemon" in result.stderr
    assert "no log roots" not in result.stderr


def test_an_unknown_service_of_another_daemon_is_named_by_that_daemon(
    pipeline: Pipeline, daemon: Daemon
) -> None:
    """With --url the config may not be that daemon's: the daemon itself says which exist."""
    result = heartwatch("tail", "nope", "--no-follow", "--url", daemon.http_url, cwd=Path("/"))
    assert result.returncode == 1, result
    assert "no service 'nope'" in result.stderr and "talker" in result.stderr, result.stderr


def test_the_daemons_own_log_is_viewable_like_a_service(pipeline: Pipeline, daemon: Daemon) -> None:
    """By --daemon, by @daemon, and by its path (relative to where one stands)."""
    for args in (["--daemon"], ["@daemon"], ["logs/heartwatch.log"]):
        result = heartwatch("tail", *args, "-n", "50", "--no-follow", cwd=pipeline.folder)
        assert result.returncode == 0, (args, result)
        assert "talker" in result.stdout, (args, result.stdout)
        assert "tick" not in result.stdout  # the daemon's log, not the service's output
    elsewhere = pipeline.folder / "elsewhere"
    elsewhere.mkdir()
    result = heartwatch(
        "tail", "../logs/heartwatch.log", "-c", "../heartwatch.toml", "--no-follow", cwd=elsewhere
    )
    assert result.returncode == 0 and "talker" in result.stdout, result


def test_a_services_output_file_is_its_output(pipeline: Pipeline, daemon: Daemon) -> None:
    result = heartwatch("tail", "logs/talker.log", "-n", "3", "--no-follow", cwd=pipeline.folder)
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("tick ") for line in lines), lines


def test_a_file_outside_every_root_is_refused_with_the_reason(
    pipeline: Pipeline, daemon: Daemon
) -> None:
    (pipeline.folder / "other.log").write_text("not served\n")
    result = heartwatch("tail", "other.log", "--no-follow", cwd=pipeline.folder)
    assert result.returncode == 1, result
    assert "no log roots are configured" in result.stderr, result.stderr
    assert "not served" not in result.stdout
