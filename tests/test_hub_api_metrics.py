"""Every family the hub's /metrics exports is in docs/api.md's hub metrics table, with its
labels, and every metric the table names is exported: a real scrape against PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from heartwatch.hub.api import create_hub_app
from heartwatch.hub.metrics import HubCounters
from hubweb_support import add_host, add_service, hub_config, opened_pool, run

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
ROW = re.compile(r"^\|\s*`(heartwatch_hub_[a-z0-9_]+)`\s*\|([^|]*)\|")


def documented() -> dict[str, set[str]]:
    text = API_DOC.read_text(encoding="utf-8")
    section = text.split("## Hub metrics", 1)[1].split("\n## ", 1)[0]
    table = {
        m[1]: set(re.findall(r"`([a-z_]+)`", m[2]))
        for m in map(ROW.match, section.splitlines())
        if m
    }
    assert table, "docs/api.md has no table under '## Hub metrics'"
    return table


def exported(text: str) -> dict[str, set[str]]:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = found.setdefault(name, set())
        for sample in family.samples:
            labels.update(sample.labels)
    return found


def test_hub_metrics_every_exported_family_is_documented(fresh_database: str) -> None:
    """Names and labels of /metrics and of docs/api.md's hub table agree, both ways."""

    async def main() -> str:
        async with opened_pool(fresh_database) as pool:
            await add_host(pool, "farm-01")
            await add_service(pool, "farm-01", "collector")
            async with pool.connection() as connection:
                await connection.execute(
                    "INSERT INTO alerts (key, host, kind, message, sent_by) "
                    "VALUES ('k1', 'farm-01', 'unreachable', 'farm-01 is unreachable', 'hub')"
                )
            counters = HubCounters()
            counters.receive_rejected("json")
            counters.receive_batch(3, 0.01)
            app = create_hub_app(
                hub_config(fresh_database), pool, None, None, None, counters=counters
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1"
            ) as client:
                answer = await client.get("/metrics")
        assert answer.status_code == 200
        return answer.text

    text = run(main)
    assert 'heartwatch_hub_alerts_total{kind="unreachable"} 1.0' in text
    assert 'heartwatch_hub_messages_rejected_total{code="json"} 1.0' in text
    assert "heartwatch_hub_events_total 3.0" in text
    assert "heartwatch_hub_ingest_batch_seconds_count 1.0" in text
    found, table = exported(text), documented()
    assert not sorted(set(found) - set(table)), "exported, not documented"
    assert not sorted(set(table) - set(found)), "documented, not exported"
    wrong: dict[str, Any] = {
        name: (sorted(labels), sorted(table[name]))
        for name, labels in found.items()
        if labels != table[name]
    }
    assert not wrong, f"labels differ from docs/api.md: {wrong}"
