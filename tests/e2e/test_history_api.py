"""The history API on a real daemon: a hang recovers a group; the history, the rates, the
recovery's steps and the CSV export say so, from the journal the daemon wrote."""

from __future__ import annotations

import csv
import io
import itertools
import os
import signal
from typing import Any

import pytest

from e2e.support import Pipeline, duration, send_tcp, wait_until, worker_command

pytestmark = pytest.mark.e2e


def test_a_recovered_hang_in_history_rates_recoveries_and_export(pipeline: Pipeline) -> None:
    """The collector hangs (SIGSTOP) and its group recovers: its history shows an incident
    ended, the recovery lists the emulator then the collector with every step in order, and
    the export holds the same events as the JSON."""
    pipeline.write_config(
        [
            {"name": "emulator", "command": worker_command(), "ready": duration(0.2)},
            {
                "name": "collector",
                "command": worker_command("--beat", "0.1"),
                "requires": ["emulator"],
                "heartbeat_timeout": duration(1),
                "startup_grace": duration(5),
                "restart": "group",
                "stop_timeout": duration(2),
            },
        ]
    )
    daemon = pipeline.start_daemon()
    daemon.wait_running("emulator")
    collector = daemon.wait_running("collector")["pid"]
    os.kill(collector, signal.SIGSTOP)  # alive but silent: a hang
    daemon.wait_service(
        "collector",
        lambda s: s["state"] == "running" and s["pid"] not in (None, collector),
        "running again with a new pid",
    )

    def recovered() -> dict[str, Any] | None:
        found = daemon.request("GET", "/api/v1/recoveries?service=collector")["recoveries"]
        return found[0] if found and found[0]["duration_seconds"] is not None else None

    recovery = wait_until(recovered, "the recovery's last step")
    assert recovery["trigger"] == "collector"
    assert recovery["members"] == ["emulator", "collector"]
    emulator_step, collector_step = recovery["steps"]
    assert [s["service"] for s in recovery["steps"]] == ["emulator", "collector"]
    for step in recovery["steps"]:
        assert None not in step.values(), step
        assert step["stop_sent"] <= step["gone"] <= step["spawned"] <= step["ready"], step
    # Dependency order: the collector stopped before the emulator, started after it.
    assert collector_step["gone"] <= emulator_step["gone"]
    assert emulator_step["spawned"] <= collector_step["spawned"]

    history = daemon.request("GET", "/api/v1/history/collector?window=1h")
    segments = history["segments"]
    assert segments[0]["start"] == history["since"] and segments[-1]["end"] == history["until"]
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(segments))
    states = [s["state"] for s in segments]
    assert states[0] == "unknown"  # before this daemon's first word: nothing recorded
    assert "unresponsive" in states or "restarting" in states, states
    assert states[-1] == "running"
    summary = history["summary"]
    assert summary["incidents"] == 1
    assert 0 < summary["uptime"] < 1
    assert summary["mttr_seconds"] is not None and summary["mttr_seconds"] > 0
    assert history["incidents"][0]["recovered"] is True
    assert [r["id"] for r in history["recoveries"]] == [recovery["id"]]

    window = f"since={history['since']}&until={history['until']}"
    overview = daemon.request("GET", f"/api/v1/history?{window}")
    assert [s["service"] for s in overview["services"]] == ["emulator", "collector"]
    strip = overview["services"][1]
    assert strip["segments"] == segments and strip["summary"] == summary
    only = daemon.request("GET", f"/api/v1/history?{window}&service=collector")["services"]
    assert [s["service"] for s in only] == ["collector"]

    rates = daemon.request("GET", "/api/v1/history/collector/rates?window=1h&points=30")
    assert len(rates["times"]) <= 30 and rates["step_seconds"] % 60 == 0
    assert len(rates["kinds"]["heartbeat"]) == len(rates["times"])
    assert any(v for v in rates["kinds"]["heartbeat"] if v)

    events = daemon.request("GET", "/api/v1/events?service=collector&kind=transition&kind=exit")
    assert {e["kind"] for e in events["events"]} <= {"transition", "exit"}
    status, headers, body = daemon.raw(
        "GET", "/api/v1/events.csv?service=collector&kind=transition&kind=exit"
    )
    assert status == 200 and headers["content-type"].startswith("text/csv"), headers
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [int(r["id"]) for r in rows] == [e["id"] for e in events["events"]]
    assert [r["reason"] for r in rows] == [e["reason"] for e in events["events"]]

    for path, code in (
        ("/api/v1/history/nosuch", 404),
        ("/api/v1/history?service=nosuch", 404),
        ("/api/v1/history/collector?since=200&until=100", 422),
        ("/api/v1/history/collector/rates?points=0", 422),
    ):
        answer, _, body = daemon.raw("GET", path)
        assert answer == code, (path, body)


def test_a_killed_daemon_is_unknown_from_its_last_sign_of_life(pipeline: Pipeline) -> None:
    """SIGKILL leaves no "stopping" entry: the next daemon's history of the service shows
    unknown from the first daemon's last entry to the second's start, never running."""
    pipeline.write_config([{"name": "watched", "heartbeat_timeout": "1h"}])
    first = pipeline.start_daemon()
    send_tcp(first.tcp_address, b'{"type":"heartbeat","service":"watched"}\n')
    first.wait_service("watched", lambda s: s["state"] == "running", "running")
    last_word = first.request("GET", "/api/v1/events?limit=1")["events"][0]
    first.kill()
    second = pipeline.start_daemon()
    send_tcp(second.tcp_address, b'{"type":"heartbeat","service":"watched"}\n')
    second.wait_service("watched", lambda s: s["state"] == "running", "running again")
    starts = second.request("GET", "/api/v1/events?kind=daemon")["events"]
    assert len(starts) == 2 and all(e["reason"].startswith("heartwatch started") for e in starts)
    history = second.request("GET", "/api/v1/history/watched?window=1h")
    unknown = [s for s in history["segments"] if s["state"] == "unknown"]
    assert len(unknown) == 2, history["segments"]  # before any record, and the absence
    absence = unknown[1]
    assert absence["start"] == pytest.approx(last_word["at"])
    assert absence["end"] == pytest.approx(starts[0]["at"])
    # The first daemon's last word was the transition to running: running until then (no
    # time at all here), then unknown, never running through the absence; running again.
    assert history["segments"][-1]["state"] == "running"
    assert history["segments"][-1]["start"] >= absence["end"]
    assert history["summary"]["unknown_seconds"] >= absence["end"] - absence["start"]
