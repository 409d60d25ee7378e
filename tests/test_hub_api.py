"""The hub's HTTP API against a real PostgreSQL, rows put in through the schema."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from heartwatch.core.journal import DAEMON_STARTED
from heartwatch.hub import queries
from heartwatch.hub.api import create_hub_app
from heartwatch.hub.schema import migrate
from hubweb_support import (
    READ_TOKEN,
    TOKEN,
    add_entry,
    add_host,
    add_service,
    hub_config,
    opened_pool,
    run,
)


async def _ask(
    dsn: str,
    requests: list[tuple[str, str, dict[str, Any]]],
    *,
    tokens: bool = False,
    setup: Any = None,
) -> list[httpx.Response]:
    async with opened_pool(dsn) as pool:
        if setup is not None:
            await setup(pool)
        app = create_hub_app(hub_config(dsn, tokens=tokens), pool, None, None, None)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return [await client.request(m, path, **kw) for m, path, kw in requests]


async def _two_hosts(pool: Any) -> None:
    await add_host(pool, "farm-01", labels={"site": "sz"})
    await add_service(pool, "farm-01", "collector@0", "running", instance_of="collector")
    await add_service(pool, "farm-01", "emulator", "backoff", reason="exited 1")
    await add_host(pool, "farm-02", state="unreachable", silent_for=120)
    await add_service(pool, "farm-02", "collector", "running")


def test_hub_api_fleet_has_every_host_and_service_in_the_documented_shape(
    fresh_database: str,
) -> None:
    """One answer: hosts with counts, services with the agent's status; unreachable: unknown."""
    (answer,) = run(lambda: _ask(fresh_database, [("GET", "/api/v1/fleet", {})], setup=_two_hosts))
    assert answer.status_code == 200
    fleet = answer.json()
    assert set(fleet) == {"generated_at", "hosts", "services"}
    hosts = {h["host"]: h for h in fleet["hosts"]}
    assert set(hosts["farm-01"]) == {
        "host", "state", "labels", "boot", "version", "config_hash", "last_seen_age",
        "state_since", "services", "problems",
    }  # fmt: skip
    assert hosts["farm-01"]["labels"] == {"site": "sz"}
    assert (hosts["farm-01"]["services"], hosts["farm-01"]["problems"]) == (2, 1)
    assert hosts["farm-02"]["state"] == "unreachable"
    assert hosts["farm-02"]["last_seen_age"] >= 119
    services = {(s["host"], s["name"]): s for s in fleet["services"]}
    collector = services[("farm-01", "collector@0")]
    assert set(collector) == {
        "host", "name", "instance_of", "state", "last_state", "reason", "since", "pid",
        "restarts", "ready", "uptime", "last_heartbeat_age_at_report", "status",
    }  # fmt: skip
    assert collector["instance_of"] == "collector"
    assert (collector["pid"], collector["restarts"], collector["ready"]) == (4242, 1, True)
    assert collector["status"]["name"] == "collector@0"
    assert services[("farm-01", "emulator")]["reason"] == "exited 1"
    silent = services[("farm-02", "collector")]
    assert (silent["state"], silent["last_state"]) == ("unknown", "running")


def test_hub_api_host_answers_its_services_and_404_names_an_unknown_host(
    fresh_database: str,
) -> None:
    """GET /api/v1/hosts/{host}: the host and its service_list; an unknown host: 404 + code."""
    found, missing, listed = run(
        lambda: _ask(
            fresh_database,
            [
                ("GET", "/api/v1/hosts/farm-01", {}),
                ("GET", "/api/v1/hosts/farm-99", {}),
                ("GET", "/api/v1/hosts", {}),
            ],
            setup=_two_hosts,
        )
    )
    assert found.status_code == 200
    host = found.json()
    assert host["host"] == "farm-01"
    assert [s["name"] for s in host["service_list"]] == ["collector@0", "emulator"]
    assert missing.status_code == 404
    assert missing.json() == {"code": "unknown_host", "message": "no host 'farm-99'"}
    assert [h["host"] for h in listed.json()] == ["farm-01", "farm-02"]


async def _events(pool: Any) -> None:
    await add_host(pool, "farm-01")
    await add_host(pool, "farm-02")
    for seq in range(1, 8):
        await add_entry(
            pool,
            "farm-01",
            seq,
            at=1000.0 + seq,
            kind="transition" if seq % 2 else "probe",
            service="collector" if seq < 5 else "emulator",
            state="running",
        )
    await add_entry(pool, "farm-02", 1, at=1003.5, kind="transition", service="collector")


def test_hub_api_events_filter_and_page_newest_first(fresh_database: str) -> None:
    """host, service, kind (repeatable), since/until, and keyset pages that meet exactly."""
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/v1/events", {}),
        ("GET", "/api/v1/events", {"params": {"host": "farm-01", "service": "collector"}}),
        ("GET", "/api/v1/events", {"params": [("kind", "probe"), ("kind", "daemon")]}),
        ("GET", "/api/v1/events", {"params": {"since": 1003, "until": 1005}}),
        ("GET", "/api/v1/events", {"params": {"limit": 3}}),
        ("GET", "/api/v1/events", {"params": {"before": "nonsense"}}),
    ]
    every, collector, probes, window, page, bad = run(
        lambda: _ask(fresh_database, requests, setup=_events)
    )
    events = every.json()["events"]
    assert [(e["host"], e["seq"]) for e in events][:3] == [
        ("farm-01", 7),
        ("farm-01", 6),
        ("farm-01", 5),
    ]
    assert len(events) == 8 and every.json()["next_before"] is None
    assert set(events[0]) == {
        "host", "boot", "seq", "at", "type", "kind", "service", "reason", "state",
        "previous", "detail",
    }  # fmt: skip
    assert [e["seq"] for e in collector.json()["events"]] == [4, 3, 2, 1]
    assert {e["kind"] for e in probes.json()["events"]} == {"probe"}
    assert [e["at"] for e in window.json()["events"]] == [1005.0, 1004.0, 1003.5, 1003.0]
    first = page.json()
    assert len(first["events"]) == 3 and first["next_before"]

    async def rest() -> list[httpx.Response]:
        return await _ask(
            fresh_database,
            [("GET", "/api/v1/events", {"params": {"before": first["next_before"]}})],
        )

    (second,) = run(rest)
    seen = [(e["host"], e["seq"]) for e in first["events"] + second.json()["events"]]
    assert seen == [(e["host"], e["seq"]) for e in events]
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"


def test_hub_api_tokens_read_and_control_and_refusals_say_why(fresh_database: str) -> None:
    """No token: 401; the read token reads but cannot command (403 saying so); pages public."""
    body = {"targets": ["farm-01/collector@0"], "verb": "restart"}
    bearer = {"Authorization": f"Bearer {READ_TOKEN}"}
    answers = run(
        lambda: _ask(
            fresh_database,
            [
                ("GET", "/api/v1/fleet", {}),
                ("GET", "/api/v1/fleet", {"headers": bearer}),
                ("POST", "/api/v1/commands", {"headers": bearer, "json": body}),
                ("POST", "/api/v1/commands", {"json": body}),
                ("GET", "/api/v1/auth", {"headers": {"Authorization": f"Bearer {TOKEN}"}}),
                ("GET", "/metrics", {}),
                ("GET", "/static/fleet-model.js", {}),
                ("GET", "/api/v1/fleet", {"params": {"token": "wrong"}}),
            ],
            tokens=True,
            setup=_two_hosts,
        )
    )
    none, read, read_post, bare_post, auth, metrics, static, wrong = answers
    assert none.status_code == 401 and none.json()["code"] == "unauthorized"
    assert read.status_code == 200
    assert read_post.status_code == 403
    assert read_post.json() == {"code": "forbidden", "message": "this token only allows reading"}
    assert bare_post.status_code == 401
    assert auth.json() == {"token_required": True, "scope": "control"}
    assert metrics.status_code == 401  # the fleet's figures are data
    assert static.status_code == 200  # the page's modules hold none
    assert static.headers["x-content-type-options"] == "nosniff"
    assert wrong.status_code == 401


def test_hub_api_without_a_token_only_loopback_names_are_served(fresh_database: str) -> None:
    """No token configured: a Host header that is not loopback is refused (DNS rebinding)."""
    (refused,) = run(
        lambda: _ask(
            fresh_database, [("GET", "/api/v1/fleet", {"headers": {"Host": "evil.example"}})]
        )
    )
    assert refused.status_code == 403 and refused.json()["code"] == "bad_host"


def test_hub_api_openapi_lists_every_route(fresh_database: str) -> None:
    """/openapi.json documents every API route; /docs is the package's Swagger UI."""
    document, docs, bundle = run(
        lambda: _ask(
            fresh_database,
            [
                ("GET", "/openapi.json", {}),
                ("GET", "/docs", {}),
                ("GET", "/agent-static/swagger/swagger-ui-bundle.js", {}),
            ],
        )
    )
    paths = document.json()["paths"]
    assert set(paths) >= {
        "/api/v1/fleet",
        "/api/v1/hosts",
        "/api/v1/hosts/{host}",
        "/api/v1/hosts/{host}/history",
        "/api/v1/hosts/{host}/history/{service}",
        "/api/v1/hosts/{host}/history/{service}/rates",
        "/api/v1/events",
        "/api/v1/commands",
        "/api/v1/commands/{command_id}",
        "/api/v1/auth",
        "/metrics",
    }
    assert set(paths["/api/v1/commands"]) == {"get", "post"}
    schemas = document.json()["components"]["schemas"]
    assert {"Host", "FleetService", "Fleet", "HostDetail", "Event", "CommandOut"} <= set(schemas)
    assert docs.status_code == 200
    assert "default-src 'self'" in docs.headers["content-security-policy"]
    assert 'src="/agent-static/swagger/swagger-ui-bundle.js"' in docs.text
    assert '"/static/' not in docs.text  # the hub's /static is its dashboard's
    assert bundle.status_code == 200


def test_hub_api_commands_unknown_id_is_404_and_a_bad_request_says_why(
    fresh_database: str,
) -> None:
    """GET of an unknown command: 404 with a code; a POST without targets: 422 naming it."""
    missing, listed, invalid = run(
        lambda: _ask(
            fresh_database,
            [
                ("GET", "/api/v1/commands/0123", {}),
                ("GET", "/api/v1/commands", {"params": {"host": "farm-01"}}),
                ("POST", "/api/v1/commands", {"json": {"targets": [], "verb": "restart"}}),
            ],
        )
    )
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_command"
    assert listed.json() == {"commands": []}
    assert invalid.status_code == 422
    assert invalid.json()["code"] == "invalid_request"
    assert "targets" in invalid.json()["message"]


async def _history(pool: Any) -> None:
    now = time.time()
    await add_host(pool, "farm-01")
    await add_service(pool, "farm-01", "collector", "running")
    await add_entry(pool, "farm-01", 1, at=now - 3000, kind="daemon", reason=DAEMON_STARTED)
    await add_entry(
        pool, "farm-01", 2, at=now - 2900, service="collector", state="running", previous="starting"
    )
    await add_entry(
        pool,
        "farm-01",
        3,
        at=now - 1800,
        service="collector",
        state="backoff",
        previous="running",
        reason="exited 1",
        detail={"failure": True},
    )
    await add_entry(
        pool, "farm-01", 4, at=now - 1200, service="collector", state="running", previous="backoff"
    )


def test_hub_api_history_is_the_agents_answer_from_the_hubs_events(fresh_database: str) -> None:
    """Segments, uptime and the incident come from the stored entries, as the agent computes."""
    one, overview, unknown, no_host = run(
        lambda: _ask(
            fresh_database,
            [
                ("GET", "/api/v1/hosts/farm-01/history/collector", {"params": {"window": "1h"}}),
                ("GET", "/api/v1/hosts/farm-01/history", {"params": {"window": "1h"}}),
                ("GET", "/api/v1/hosts/farm-01/history/nothing", {}),
                ("GET", "/api/v1/hosts/farm-09/history", {}),
            ],
            setup=_history,
        )
    )
    assert one.status_code == 200, one.text
    history = one.json()
    # Before the agent's first entry: unknown; its start: stopped until the service runs.
    states = [s["state"] for s in history["segments"]]
    assert states == ["unknown", "stopped", "running", "backoff", "running"]
    assert history["segments"][3]["reason"] == "exited 1"
    summary = history["summary"]
    assert summary["incidents"] == 1
    assert abs(summary["mttr_seconds"] - 600) < 1
    assert abs(summary["uptime"] - (2300 / 2900)) < 0.01
    assert history["recoveries"] == []
    assert [s["service"] for s in overview.json()["services"]] == ["collector"]
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_service"
    assert no_host.status_code == 404 and no_host.json()["code"] == "unknown_host"


def test_hub_api_metrics_count_the_fleet(fresh_database: str) -> None:
    """/metrics: hosts and services by state (unknown for an unreachable host's), and more."""
    (scrape,) = run(lambda: _ask(fresh_database, [("GET", "/metrics", {})], setup=_two_hosts))
    text = scrape.text
    assert 'heartwatch_hub_hosts{state="live"} 1.0' in text
    assert 'heartwatch_hub_hosts{state="unreachable"} 1.0' in text
    assert 'heartwatch_hub_services{state="unknown"} 1.0' in text
    assert 'heartwatch_hub_services{state="backoff"} 1.0' in text
    assert 'heartwatch_hub_commands{status="sent"} 0.0' in text
    assert "heartwatch_hub_database_up 1.0" in text
    assert "heartwatch_hub_events_total 0.0" in text


def test_hub_api_fleet_answers_a_changed_status_at_once(fresh_database: str) -> None:
    """The statuses kept between answers are read again when their row moves."""

    async def main() -> list[Any]:
        async with opened_pool(fresh_database) as pool:
            await _two_hosts(pool)
            cache = queries.StatusCache()
            first = await queries.read_fleet(pool, cache)
            async with pool.connection() as connection:
                await connection.execute(
                    "UPDATE services SET state = 'failed', updated_seq = updated_seq + 1, "
                    'status = status || \'{"pid": 77, "restarts": 9}\' '
                    "WHERE host = 'farm-01' AND service = 'emulator'"
                )
                await connection.execute("DELETE FROM services WHERE host = 'farm-02'")
            second = await queries.read_fleet(pool, cache)
            return [json.loads(queries.dumps(answer)) for answer in (first, second)]

    first, second = run(main)
    before = {(s["host"], s["name"]): s for s in first["services"]}
    after = {(s["host"], s["name"]): s for s in second["services"]}
    assert before[("farm-01", "emulator")]["pid"] == 4242
    emulator = after[("farm-01", "emulator")]
    assert (emulator["state"], emulator["pid"], emulator["restarts"]) == ("failed", 77, 9)
    assert emulator["status"]["pid"] == 77
    assert after[("farm-01", "collector@0")] == before[("farm-01", "collector@0")]
    assert ("farm-02", "collector") not in after


def test_hub_api_pages_and_the_agents_modules_are_served_with_the_dashboards_headers(
    fresh_database: str,
) -> None:
    """/ and /hosts/{host}: the hub's pages with the server's constants and the strict CSP;
    /agent-static/: the agent's own modules, not copies."""
    fleet_page, host_page, pictures, missing = run(
        lambda: _ask(
            fresh_database,
            [
                ("GET", "/", {}),
                ("GET", "/hosts/farm-01", {}),
                ("GET", "/agent-static/pictures.js", {}),
                ("GET", "/agent-static/nothing.js", {}),
            ],
            tokens=True,  # the pages and modules hold no data: no token needed
        )
    )
    for page in (fleet_page, host_page):
        assert page.status_code == 200
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert page.headers["x-frame-options"] == "DENY"
        assert '"unauthorised": 4401' in page.text  # the constants block, filled
    assert pictures.status_code == 200
    agent_copy = Path(__file__).parents[1] / "src/heartwatch/web/static/pictures.js"
    assert pictures.text == agent_copy.read_text(encoding="utf-8")
    assert missing.status_code == 404


def test_hub_api_a_database_away_is_a_quick_503(monkeypatch: pytest.MonkeyPatch) -> None:
    """No database: the answer says so within the pool's wait, as JSON with a code."""
    monkeypatch.setattr(queries, "DB_TIMEOUT", 0.5)

    async def main() -> tuple[httpx.Response, float]:
        dsn = "postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=1"
        async with AsyncConnectionPool(dsn, min_size=1, open=False) as pool:
            await pool.open(wait=False)
            app = create_hub_app(hub_config(dsn), pool, None, None, None)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1"
            ) as client:
                started = time.monotonic()
                answer = await client.get("/api/v1/fleet")
                return answer, time.monotonic() - started

    answer, took = run(main)
    assert answer.status_code == 503
    assert answer.json()["code"] == "database_unreachable"
    assert took < 10


def test_hub_api_events_pages_of_one_kind_across_hosts_meet_exactly(fresh_database: str) -> None:
    """kind across every host, two at a time: the pages join into the whole answer."""

    async def main() -> tuple[list[Any], list[Any]]:
        async with opened_pool(fresh_database) as pool:
            await _events(pool)
            whole, _ = await queries.read_events(pool, kinds=["transition"])
            pages: list[Any] = []
            cursor = None
            for _ in range(10):
                page, cursor = await queries.read_events(
                    pool, kinds=["transition"], service="collector", before=cursor, limit=2
                )
                pages.extend(page)
                if cursor is None:
                    break
            return whole, pages

    whole, pages = run(main)
    key = [(e["host"], e["seq"]) for e in whole if e["service"] == "collector"]
    assert [(e["host"], e["seq"]) for e in pages] == key
    assert key == [("farm-02", 1), ("farm-01", 3), ("farm-01", 1)]


def test_hub_api_commands_list_leaves_the_log_relays_leases_out(fresh_database: str) -> None:
    """A tail (the relay's lease) is listed only when asked for by verb."""

    async def setup(pool: Any) -> None:
        async with pool.connection() as connection:
            for command_id, verb in (("c1", "restart"), ("c2", "tail")):
                await connection.execute(
                    "INSERT INTO commands (id, host, service, verb, issued_by, issued_at, "
                    "expires_at) VALUES (%s, 'farm-01', 'collector', %s, 'hub', 1, 61)",
                    [command_id, verb],
                )

    default, tails, one = run(
        lambda: _ask(
            fresh_database,
            [
                ("GET", "/api/v1/commands", {}),
                ("GET", "/api/v1/commands", {"params": {"verb": "tail"}}),
                ("GET", "/api/v1/commands/c2", {}),
            ],
            setup=setup,
        )
    )
    assert [c["id"] for c in default.json()["commands"]] == ["c1"]
    assert [c["id"] for c in tails.json()["commands"]] == ["c2"]
    assert one.json()["verb"] == "tail"


def test_hub_api_rates_come_from_the_published_minutes(fresh_database: str) -> None:
    """Per-minute rates of each kind, the kind's timeout from the agent's status, and the gap
    where the service beat but the kind stayed silent past it (core/rates.py's answer)."""
    now = time.time()
    minute = int(now) // 60 * 60

    async def setup(pool: Any) -> None:
        await _history(pool)
        data = {"poiid": {"count": 9, "last_age": 1, "timeout": 60.0, "last_sent_time": None}}
        async with pool.connection() as connection:
            await connection.execute(
                "UPDATE services SET status = status || jsonb_build_object('data', %s::jsonb) "
                "WHERE host = 'farm-01'",
                [json.dumps(data)],
            )
            for back in range(1, 40):
                start = minute - back * 60
                await connection.execute(
                    "INSERT INTO counts VALUES ('farm-01', %s, 'collector', 'heartbeat', 60)",
                    [start],
                )
                if back > 20:  # poiid stopped 20 minutes ago
                    await connection.execute(
                        "INSERT INTO counts VALUES ('farm-01', %s, 'collector', 'poiid', 6)",
                        [start],
                    )

    (answer,) = run(
        lambda: _ask(
            fresh_database,
            [
                (
                    "GET",
                    "/api/v1/hosts/farm-01/history/collector/rates",
                    {"params": {"since": minute - 30 * 60, "until": minute, "points": 30}},
                )
            ],
            setup=setup,
        )
    )
    assert answer.status_code == 200, answer.text
    rates = answer.json()
    assert rates["step_seconds"] == 60 and len(rates["times"]) == 30
    assert rates["timeouts"] == {"poiid": 60.0}
    assert set(rates["kinds"]) == {"heartbeat", "poiid"}
    assert rates["kinds"]["heartbeat"][-1] == 60
    assert rates["kinds"]["poiid"][0] == 6 and rates["kinds"]["poiid"][-1] == 0
    [gap] = rates["gaps"]
    assert gap["kind"] == "poiid" and gap["start"] == minute - 20 * 60


BASE = "http://127.0.0.1"


# -- forgetting a host (review finding 12) -------------------------------------------------


async def _forgettable(pool: Any) -> None:
    await add_host(pool, "farm-01")
    await add_service(pool, "farm-01", "collector", "running")
    await add_host(pool, "farm-02", state="unreachable", silent_for=3600)
    await add_service(pool, "farm-02", "collector", "running")
    await add_service(pool, "farm-02", "emulator", "failed")
    await add_entry(pool, "farm-02", 1, at=time.time() - 4000, service="emulator", state="failed")
    await add_host(pool, "farm-03", state="stale", silent_for=20)


def test_hub_api_forgets_an_unreachable_host_and_refuses_one_that_speaks(
    fresh_database: str,
) -> None:
    """DELETE /api/v1/hosts/{host}: an unreachable host goes with its services, its events
    stay; a live or stale one is refused (409, saying so) unless ?force=true; the read token
    may not; an unknown host (or a name no host can have) is 404."""

    async def main() -> tuple[list[httpx.Response], list[Any]]:
        async with opened_pool(fresh_database) as pool:
            await _forgettable(pool)
            app = create_hub_app(hub_config(fresh_database, tokens=True), pool, None, None, None)
            transport = httpx.ASGITransport(app=app)
            control = {"Authorization": f"Bearer {TOKEN}"}
            reader = {"Authorization": f"Bearer {READ_TOKEN}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1"
            ) as client:
                answers = [
                    await client.delete("/api/v1/hosts/farm-02", headers=reader),
                    await client.delete("/api/v1/hosts/farm-02", headers=control),
                    await client.delete("/api/v1/hosts/farm-01", headers=control),
                    await client.delete("/api/v1/hosts/farm-03", headers=control),
                    await client.delete("/api/v1/hosts/farm-03?force=true", headers=control),
                    await client.delete("/api/v1/hosts/farm-02", headers=control),
                    await client.delete("/api/v1/hosts/%00", headers=control),
                    await client.get("/api/v1/hosts", headers=control),
                ]
            async with pool.connection() as connection:
                cursor = await connection.execute(
                    "SELECT host, service FROM events UNION ALL"
                    " SELECT host, service FROM services ORDER BY 1, 2"
                )
                left = await cursor.fetchall()
        return answers, left

    answers, left = run(main)
    refused_reader, forgot, live, stale, forced, again, nul, hosts = answers
    assert refused_reader.status_code == 403
    assert forgot.status_code == 200
    assert forgot.json() == {
        "host": "farm-02",
        "state": "unreachable",
        "services": ["collector", "emulator"],
    }
    assert live.status_code == 409 and live.json()["code"] == "host_not_gone"
    assert "farm-01 is live" in live.json()["message"]
    assert stale.status_code == 409 and "farm-03 is stale" in stale.json()["message"]
    assert forced.status_code == 200 and forced.json()["state"] == "stale"
    assert again.status_code == 404 and again.json()["code"] == "unknown_host"
    assert nul.status_code == 404
    assert [host["host"] for host in hosts.json()] == ["farm-01"]
    # farm-02's event is kept (history); its services are gone; farm-01's service stays.
    assert left == [("farm-01", "collector"), ("farm-02", "emulator")]


def test_hub_feed_tells_pages_a_forgotten_host_is_gone(fresh_database: str) -> None:
    """The forgetting is NOTIFYed: the feed sends {"type": "removed", "host": h, "name":
    null}, which the dashboard's model (fleet-model.js remove) takes as the whole host."""
    from heartwatch.hub.feed import FleetFeed

    async def main() -> list[dict[str, Any]]:
        async with opened_pool(fresh_database) as pool:
            await _forgettable(pool)
            feed = FleetFeed(pool)
            await feed.start()
            try:
                await asyncio.wait_for(feed.listening.wait(), 10)
                client = feed.subscribe()
                assert await queries.forget_host(pool, "farm-02") is not None
                messages = []
                for _ in range(20):  # bounded
                    message = json.loads(await asyncio.wait_for(client.queue.get(), 10))
                    messages.append(message)
                    if message["type"] == "removed":
                        return messages
                return messages
            finally:
                await feed.close()

    messages = run(main)
    assert messages[-1] == {"type": "removed", "host": "farm-02", "name": None}


# -- names PostgreSQL cannot hold (review finding 13) --------------------------------------


def test_hub_api_nul_and_impossible_names_are_404_or_422_never_500(fresh_database: str) -> None:
    """The review's cases: NUL in a path or a query answers 404 (a host or command that
    cannot exist) or 422 invalid_request, and a name no host can have is refused alike."""
    paths = [
        ("/api/v1/events?service=%00", 422),
        ("/api/v1/events?host=%00", 422),
        ("/api/v1/events?host=..%2F..", 422),
        ("/api/v1/hosts/%00", 404),
        ("/api/v1/commands?host=%00", 422),
        ("/api/v1/commands/%00", 404),
        ("/api/v1/hosts/farm-01/history/%00", 422),
        ("/api/v1/hosts/%00/history", 422),
        ("/api/v1/events?kind=%00", 422),
    ]
    answers = run(
        lambda: _ask(fresh_database, [("GET", path, {}) for path, _ in paths], setup=_two_hosts)
    )
    for (path, expected), answer in zip(paths, answers, strict=True):
        assert answer.status_code in (expected, 404, 422), (path, answer.text)
        assert answer.status_code != 500
        assert answer.json()["code"] in ("invalid_request", "unknown_host", "unknown_command")
    assert [a.status_code for a in answers[:6]] == [expected for _, expected in paths[:6]]


# -- the database away (review finding 10) -------------------------------------------------


def test_hub_api_answers_503_at_once_while_the_database_is_away_and_sees_it_back(
    fresh_database: str,
) -> None:
    """The review's method (ALLOW_CONNECTIONS false + pg_terminate_backend): every request
    answers 503 database_unreachable, the first within the pool's short wait and the next
    ones at once; once the database is back the API answers again within seconds (the hub's
    pool: checked connections, quick reconnection). Figures printed, limits generous."""
    from heartwatch.hub.assembly import hub_pool
    from hub_outage import database_outage

    async def main() -> tuple[list[tuple[int, float]], int, float]:
        await migrate(fresh_database)
        pool = hub_pool(fresh_database)
        await pool.open(wait=True, timeout=10)
        try:
            app = create_hub_app(hub_config(fresh_database), pool, None, None, None)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://127.0.0.1"
            ) as client:
                assert (await client.get("/api/v1/hosts")).status_code == 200
                away: list[tuple[int, float]] = []
                with database_outage(fresh_database):
                    for _ in range(5):
                        started = time.monotonic()
                        answer = await client.get("/api/v1/hosts")
                        away.append((answer.status_code, time.monotonic() - started))
                        assert answer.json()["code"] == "database_unreachable"
                        await asyncio.sleep(0.2)
                back_at = time.monotonic()
                status = 0
                for _ in range(150):  # 30 s at most
                    status = (await client.get("/api/v1/hosts")).status_code
                    if status == 200:
                        break
                    await asyncio.sleep(0.2)
                return away, status, time.monotonic() - back_at
        finally:
            await app.state.database.close()
            await pool.close()

    away, status, recovery = run(main)
    waits = [round(seconds, 3) for _, seconds in away]
    print(f"503 answers in {waits} s; back after {recovery:.2f} s")
    assert [code for code, _ in away] == [503] * 5
    assert max(seconds for _, seconds in away) < 3.0  # the pool's wait is 1 s
    assert status == 200
    assert recovery < 15.0  # sanity only: ~1-2 s measured
