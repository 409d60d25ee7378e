"""A daemon killed with SIGKILL leaves workers behind; the next one must end them first."""

from __future__ import annotations

from collections import defaultdict

import psutil
import pytest

from e2e.support import Pipeline, alive, capture, cmdline, duration, wait_until, worker_command

pytestmark = pytest.mark.e2e

NAMES = ("alpha", "beta")


def running_copies(pipeline: Pipeline) -> dict[str, dict[str, list[int]]]:
    """Live processes of the pipeline, by service, split into workers and grandchildren."""
    copies: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for process in pipeline.marked_processes():
        try:
            service = process.environ().get("HEARTWATCH_SERVICE", "?")
        except psutil.Error:
            continue
        role = "grandchild" if "grandchild" in cmdline(process) else "worker"
        copies[service][role].append(process.pid)
    return {name: {role: sorted(pids) for role, pids in v.items()} for name, v in copies.items()}


def test_daemon_killed_then_restarted_leaves_one_copy_of_each_worker(pipeline: Pipeline) -> None:
    """After kill -9 of the daemon, the next one ends the old workers and their grandchildren."""
    pipeline.write_config(
        [
            {
                "name": "alpha",
                "command": worker_command("--beat", "0.2", "--grandchild", "same"),
                "heartbeat_timeout": duration(5),
            },
            {
                "name": "beta",
                "command": worker_command("--beat", "0.2", "--grandchild", "escape"),
                "heartbeat_timeout": duration(5),
                "stop_timeout": duration(1),
            },
        ]
    )
    first = pipeline.start_daemon()
    old_workers = {name: first.wait_running(name)["pid"] for name in NAMES}
    old_grandchildren = [e.pid for e in pipeline.wait_events("spawn", 2)]
    old = [capture(pid) for pid in (*old_workers.values(), *old_grandchildren)]

    first.kill()
    assert all(alive(p) for p in old), "a daemon killed by SIGKILL cannot stop its children"

    second = pipeline.start_daemon()
    wait_until(
        lambda: not any(alive(p) for p in old),
        f"the old workers and grandchildren ({[p.pid for p in old]}) to be ended",
        timeout=10,
    )
    new_workers = {
        name: second.wait_service(
            name,
            lambda s: s["state"] == "running" and s["pid"] not in (None, *old_workers.values()),
            "running with a new pid",
        )["pid"]
        for name in NAMES
    }
    # Never two at once: the old workers had stopped before any new one started.
    old_pids = set(old_workers.values())
    facts = [(e.what, e.pid in old_pids) for e in pipeline.events() if e.what != "spawn"]
    assert facts == [("start", True)] * 2 + [("stop", True)] * 2 + [("start", False)] * 2
    new_grandchildren = {e.service: e.pid for e in pipeline.wait_events("spawn", 4)[2:]}
    assert running_copies(pipeline) == {
        name: {"worker": [new_workers[name]], "grandchild": [new_grandchildren[name]]}
        for name in NAMES
    }

    assert second.terminate() == 0
    assert pipeline.marked_processes() == []
