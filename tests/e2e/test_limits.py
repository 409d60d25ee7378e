"""Resource limits for real: a worker whose tree allocates past ``max_memory``, and a busy
loop in a child over ``max_cpu``, are restarted with their reasons; CPU and RSS in status and
``/metrics``."""

from __future__ import annotations

import sys

import pytest

from e2e.support import Daemon, Pipeline, duration, wait_until

pytestmark = pytest.mark.e2e

# A shell whose child (the tree's biggest process) holds 80 MB of written pages.
ALLOCATE = f"{sys.executable} -c 'import time; b = b\"x\" * (80 << 20); time.sleep(60)' & wait"
SPIN = f"{sys.executable} -c 'while True: pass' & wait"


def restart_reasons(daemon: Daemon, name: str) -> list[str]:
    events = daemon.request("GET", f"/api/v1/events?service={name}&limit=100")["events"]
    return [e["reason"] for e in events if e["kind"] == "restart"]


def first_restart(daemon: Daemon, name: str) -> str:
    reasons = wait_until(lambda: restart_reasons(daemon, name), f"{name} to be restarted")
    return reasons[-1]  # newest first: the oldest is the first restart


def test_a_tree_over_max_memory_is_restarted_with_the_reason(pipeline: Pipeline) -> None:
    pipeline.write_config(
        [
            {
                "name": "hog",
                "command": ["sh", "-c", ALLOCATE],
                "max_memory": "60MB",
                "backoff_initial": duration(0.2),
            },
            {"name": "idle", "command": ["sleep", "60"]},
        ],
        daemon={"sample_interval": duration(0.2)},
    )
    daemon = pipeline.start_daemon()
    reason = first_restart(daemon, "hog")
    assert reason.startswith("memory ") and reason.endswith(" MB over max_memory 60 MB"), reason
    size = float(reason.split()[1])
    assert 60 < size < 200, reason
    # A service without limits is sampled once someone looks: RSS at once, CPU a pass later.
    idle = daemon.wait_service(
        "idle",
        lambda s: s["rss_bytes"] is not None and s["cpu_percent"] is not None,
        "CPU and RSS in status",
    )
    assert 0 < idle["rss_bytes"] < 50 << 20 and 0 <= idle["cpu_percent"] < 50, idle
    status, _, body = daemon.raw("GET", "/metrics")
    assert status == 200
    assert b'heartwatch_service_rss_bytes{service="idle"}' in body
    assert b'heartwatch_service_cpu_percent{service="idle"}' in body


def test_a_busy_child_over_max_cpu_is_restarted_with_the_reason(pipeline: Pipeline) -> None:
    pipeline.write_config(
        [
            {
                "name": "spinner",
                "command": ["sh", "-c", SPIN],
                # Low, so that a loaded test machine still meets it; the loop wants 100 %.
                "max_cpu": {"percent": 20, "for": duration(1.0)},
                "backoff_initial": duration(0.2),
            }
        ],
        daemon={"sample_interval": duration(0.25)},
    )
    daemon = pipeline.start_daemon()
    reason = first_restart(daemon, "spinner")
    words = reason.split()
    assert words[0] == "cpu" and float(words[1]) > 20, reason
    assert reason.endswith(f"% for {float(duration(1.0)[:-1]):.1f} s over max_cpu 20 %"), reason
    running = daemon.wait_running("spinner")
    assert running["restarts"] >= 1
