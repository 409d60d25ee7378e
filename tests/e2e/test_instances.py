"""Instances with a real daemon: per-instance values, one instance's hang recovering only its
own pair, and scale through the reload path."""

from __future__ import annotations

import signal

import psutil
import pytest

from e2e.support import Pipeline, capture, cmdline, wait_until, worker_command

pytestmark = pytest.mark.e2e


def test_one_instance_hangs_and_only_its_pair_recovers_then_scale(pipeline: Pipeline) -> None:
    """collector@1 hangs (SIGSTOP): emulator@1 and collector@1 are restarted, the other pair
    keeps its processes; `scale emulator 3` adds emulator@2 and re-requires the collectors."""
    pipeline.write_config(
        [
            {
                "name": "emulator",
                "instances": 2,
                "command": worker_command("--crash-code", "{40 + instance}"),
                "env": {"PORT": "{5554 + 2 * instance}"},
                "stop_timeout": "1s",
                "startsecs": 0,  # ready once it runs: its collector starts at once
            },
            {
                "name": "collector",
                "instances": 2,
                "command": worker_command("--beat", "0.1"),
                "requires": ["emulator"],
                "heartbeat_timeout": "1s",
                "restart": "group",
                "stop_timeout": "1s",
            },
        ]
    )
    daemon = pipeline.start_daemon()
    names = ["emulator@0", "emulator@1", "collector@0", "collector@1"]
    pids = {name: daemon.wait_running(name)["pid"] for name in names}
    emulator = capture(pids["emulator@1"])
    assert emulator.environ()["PORT"] == "5556"
    assert emulator.environ()["HEARTWATCH_SERVICE"] == "emulator@1"
    assert cmdline(emulator)[-2:] == ["--crash-code", "41"]
    status = daemon.service("collector@1")
    assert (status["instance_of"], status["instance"], status["requires"]) == (
        "collector",
        1,
        ["emulator@1"],
    )

    psutil.Process(pids["collector@1"]).send_signal(signal.SIGSTOP)  # a hang: alive, silent
    for name in ("emulator@1", "collector@1"):
        daemon.wait_service(
            name,
            lambda s, n=name: s["state"] == "running" and s["pid"] not in (None, pids[n]),
            "restarted",
        )
    for name in ("emulator@0", "collector@0"):
        status = daemon.service(name)
        assert (status["pid"], status["restarts"]) == (pids[name], 0), status

    code, body = daemon.post_json("/api/v1/scale/emulator", {"instances": 3})
    assert code == 200, body
    assert body["added"] == ["emulator@2"] and body["overrides"] == {"emulator": 3}
    assert body["changed"] == ["collector@0", "collector@1"]  # 3 emulators, 2 collectors
    assert body["warnings"] == [
        "scaling emulator restarts collector@0, collector@1: they require every instance of "
        "emulator"
    ]
    assert "emulator@0" in body["unchanged"]
    daemon.wait_running("emulator@2")
    wait_until(
        lambda: daemon.service("collector@0")["requires"] == [f"emulator@{k}" for k in range(3)],
        "collector@0 requiring every emulator",
    )
    assert daemon.service("emulator@0")["scale_override"] == 3
    assert daemon.service("emulator@0")["pid"] == pids["emulator@0"]
    assert daemon.post_json("/api/v1/scale/nope", {"instances": 2})[0] == 404
    assert daemon.post_json("/api/v1/scale/emulator", {"instances": 0})[0] == 422
    code, body = daemon.post_json("/api/v1/reload")  # the same file: the override stays
    assert code == 200 and body["overrides"] == {"emulator": 3} and body["added"] == []
