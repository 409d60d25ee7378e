"""``heartwatch tail`` in a terminal's place: it follows, and survives a daemon restart."""

from __future__ import annotations

import subprocess
import sys

import pytest

from e2e.support import Pipeline, wait_until

pytestmark = pytest.mark.e2e

TALKER = [
    sys.executable,
    "-c",
    "import itertools, sys, time\n"
    "for i in itertools.count():\n"
    "    print(f'\\x1b[32mtick {i}\\x1b[0m', flush=True)\n"
    "    time.sleep(0.05)\n",
]


def test_tail_follows_strips_colour_when_piped_and_survives_daemon_restart(
    pipeline: Pipeline,
) -> None:
    """Lines arrive without colour codes in a pipe; after the daemon restarts, they go on."""
    pipeline.write_config([{"name": "talker", "command": TALKER}])
    daemon = pipeline.start_daemon()
    daemon.wait_running("talker")
    out_path = pipeline.folder / "tail.out"
    err_path = pipeline.folder / "tail.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        tail = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "heartwatch",
                "tail",
                "talker",
                "-n",
                "3",
                "-c",
                str(pipeline.config_path),
            ],
            stdout=out,
            stderr=err,
        )
        try:
            wait_until(lambda: out_path.read_text().count("tick") >= 10, "ten lines", 15)
            assert "\x1b[" not in out_path.read_text()
            daemon.terminate()
            before = out_path.read_text().count("tick")
            pipeline.start_daemon().wait_running("talker")
            wait_until(
                lambda: out_path.read_text().count("tick") >= before + 10,
                "lines again after the restart",
                20,
            )
            assert "reconnected" in err_path.read_text()
            assert tail.poll() is None
        finally:
            tail.terminate()
            tail.wait(10)
