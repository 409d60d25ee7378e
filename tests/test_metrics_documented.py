"""Every metric ``/metrics`` exports is in docs/api.md's metrics table, with its labels, and
every metric the table names is exported: a real scrape of a real supervisor's metrics.

The supervisor watches two watch-only services (nothing is spawned) that send heartbeats and
data events, so that the per-service and per-kind families carry samples whose labels can be
checked; families without samples are still exported (their HELP and TYPE lines) and checked
by name.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from heartwatch.config import parse_config
from heartwatch.core.wire import Message
from heartwatch.daemon.statedir import StateDir
from heartwatch.daemon.supervisor import Supervisor
from heartwatch.web.metrics import create_metrics_router

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
ROW = re.compile(r"^\|\s*`(heartwatch_[a-z0-9_]+)`\s*\|([^|]*)\|")


def documented_metrics() -> dict[str, set[str]]:
    """The metrics table of docs/api.md: exposed name -> its labels."""
    text = API_DOC.read_text(encoding="utf-8")
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            table[match[1]] = set(re.findall(r"`([a-z_]+)`", match[2]))
    assert table, "docs/api.md has no metrics table under '## Metrics'"
    return table


def scrape(tmp_path: Path, *, stop: tuple[str, ...] = ()) -> str:
    """``GET /metrics`` of a supervisor watching two services, one of which sent something;
    ``stop``: the services stopped (by a person) before the scrape."""
    config = parse_config(
        {
            "daemon": {"state_dir": str(tmp_path / "state"), "log_dir": str(tmp_path / "logs")},
            "service": [
                {"name": "watched", "heartbeat_timeout": "1h"},
                {"name": "quiet", "heartbeat_timeout": "1h", "requires": ["watched"]},
            ],
        },
        environ={},
    )

    async def main() -> str:
        supervisor = Supervisor(config, StateDir(tmp_path / "state"), tcp_address=("127.0.0.1", 0))
        supervisor.start()
        for kind in ("heartbeat", "poiid", "photo"):
            message = Message(kind=kind, service="watched")
            assert supervisor.receive_message(message, "tcp") is None
        if stop:
            supervisor.stop(list(stop))
        app = FastAPI()
        app.include_router(create_metrics_router(supervisor, None))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                answer = await client.get("/metrics")
        finally:
            await supervisor.shutdown(timeout=5)
        assert answer.status_code == 200
        return answer.text

    return asyncio.run(main())


def exported_metrics(text: str) -> dict[str, set[str]]:
    """Exposed name (``_total`` on counters, as Prometheus shows them) -> labels seen."""
    from prometheus_client.parser import text_string_to_metric_families

    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = exported.setdefault(name, set())
        for sample in family.samples:
            labels.update(sample.labels)
    return exported


def test_every_exported_metric_is_documented(tmp_path: Path) -> None:
    """A family /metrics exports that docs/api.md's table lacks fails here, naming it."""
    exported = exported_metrics(scrape(tmp_path))
    documented = documented_metrics()
    missing = sorted(set(exported) - set(documented))
    assert not missing, f"exported but not in docs/api.md's metrics table: {missing}"
    stale = sorted(set(documented) - set(exported))
    assert not stale, f"in docs/api.md's metrics table but not exported: {stale}"
    wrong: dict[str, Any] = {
        name: {"exported": sorted(labels), "documented": sorted(documented[name])}
        for name, labels in exported.items()
        if labels and labels != documented[name]
    }
    assert not wrong, f"labels differ from docs/api.md: {wrong}"


HEARTBEAT_AGE = 'heartwatch_service_last_heartbeat_age_seconds{service="watched"}'
POIID_AGE = 'heartwatch_data_last_age_seconds{kind="poiid",service="watched"}'


def test_ages_are_exported_only_while_a_run_is_watched(tmp_path: Path) -> None:
    """The heartbeat and per-kind data ages of a watched service that sent something are
    exported; none for one that sent nothing, nor once it is stopped (its silence then is no
    news)."""
    text = scrape(tmp_path / "watching")
    assert HEARTBEAT_AGE in text and POIID_AGE in text
    assert 'heartwatch_service_last_heartbeat_age_seconds{service="quiet"}' not in text
    assert 'heartwatch_service_restarts_requested_total{service="watched"} 0.0' in text
    stopped = scrape(tmp_path / "stopped", stop=("watched",))
    assert 'heartwatch_service_state{service="watched",state="stopped"} 1.0' in stopped
    assert HEARTBEAT_AGE not in stopped and POIID_AGE not in stopped
    assert 'heartwatch_data_events_total{kind="poiid",service="watched"} 1.0' in stopped
