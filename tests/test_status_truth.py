"""What status and history say is true: a reason-only change is journaled as a note (never a
transition from a state to itself), a service that by design sends nothing says so, and the
history answers 404 for a name that is no service, as the status does.

A real supervisor watching watch-only services (nothing is spawned), its journal in a real
SQLite history, and the routes through an in-process ASGI client.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from heartwatch.config import parse_config
from heartwatch.core.journal import JournalEntry
from heartwatch.daemon.recorder import Recorder
from heartwatch.daemon.statedir import StateDir
from heartwatch.daemon.supervisor import Supervisor
from heartwatch.store.sqlite import SQLiteHistory
from heartwatch.web.history import EventFeed, create_events_router
from heartwatch.web.status import read_status


def run_pipeline(tmp_path: Path, requests: list[tuple[str, str]]) -> dict[str, Any]:
    """Start a pipeline whose ``collector`` waits for ``emulator`` (silent by design), then
    GET each path; the answers, the journal's entries and the statuses."""
    config = parse_config(
        {
            "daemon": {"state_dir": str(tmp_path / "state"), "log_dir": str(tmp_path / "logs")},
            "service": [
                {"name": "emulator", "ready": "1h"},  # never beats: ready after a delay
                {"name": "collector", "heartbeat_timeout": "1h", "requires": ["emulator"]},
            ],
        },
        environ={},
    )
    store = SQLiteHistory(tmp_path / "history.sqlite3")
    store.add_entries([JournalEntry(1, 1.0, "transition", "gone", "old", "running", "starting")])

    async def main() -> dict[str, Any]:
        supervisor = Supervisor(config, StateDir(tmp_path / "state"), tcp_address=("127.0.0.1", 0))
        recorder = Recorder(store, supervisor.totals, retention=86400)
        journaled: list[JournalEntry] = []
        supervisor.journal.subscribe(journaled.append)
        supervisor.journal.subscribe(recorder.receive)
        supervisor.start()
        app = FastAPI()
        app.include_router(
            create_events_router(supervisor, recorder, EventFeed(supervisor, recorder))
        )
        transport = httpx.ASGITransport(app=app)
        answers = {}
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                for name, path in requests:
                    answer = await client.get(path)
                    answers[name] = (answer.status_code, answer.json())
            statuses = {
                name: read_status(supervisor, name).model_dump() for name in supervisor.services
            }
        finally:
            await supervisor.shutdown(timeout=5)
            await recorder.close()
        return {"answers": answers, "journal": journaled, "status": statuses}

    return asyncio.run(main())


def test_waiting_is_a_note_and_transitions_change_state(tmp_path: Path) -> None:
    """Waiting for the emulator is a note in the stopped state; no transition keeps its state."""
    result = run_pipeline(tmp_path, [])
    journal: list[JournalEntry] = result["journal"]
    notes = [(e.service, e.state, e.reason, e.previous) for e in journal if e.kind == "note"]
    assert ("collector", "stopped", "waiting for emulator", None) in notes
    transitions = [e for e in journal if e.kind == "transition"]
    assert transitions and all(e.previous != e.state for e in transitions), transitions


def test_a_silent_service_says_no_heartbeat_is_expected(tmp_path: Path) -> None:
    """The emulator (no heartbeat_timeout, ready after a delay) expects none; the collector
    does; neither was restarted, by the daemon or by a person."""
    status = run_pipeline(tmp_path, [])["status"]
    assert status["emulator"]["heartbeat_expected"] is False
    assert status["collector"]["heartbeat_expected"] is True
    for name in ("emulator", "collector"):
        assert (status[name]["restarts"], status[name]["restarts_requested"]) == (0, 0)


def test_stopped_since_the_daemon_began_not_since_the_clock_did(tmp_path: Path) -> None:
    """A service still stopped at the start (waiting for the emulator) has been so since the
    supervisor began: its ``since_age`` is not the age of the loop's clock (hours, at boot)."""
    status = run_pipeline(tmp_path, [])["status"]
    assert status["collector"]["state"] == "stopped"
    assert 0 <= status["collector"]["since_age"] < 60, status["collector"]


def test_events_of_no_service_answer_404(tmp_path: Path) -> None:
    """``?service=nope`` is a 404 ``unknown_service``; a configured service with no entries
    yet, and a service known only to the history, answer 200."""
    answers = run_pipeline(
        tmp_path,
        [
            ("nope", "/api/v1/events?service=nope"),
            ("configured", "/api/v1/events?service=emulator&since=1e10"),
            ("historical", "/api/v1/events?service=gone"),
        ],
    )["answers"]
    status, body = answers["nope"]
    assert status == 404, body
    assert body["detail"] == {"code": "unknown_service", "message": "no service 'nope'"}
    assert answers["configured"] == (200, {"events": []})
    status, body = answers["historical"]
    assert status == 200 and [e["reason"] for e in body["events"]] == ["old"]
