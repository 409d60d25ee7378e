"""Access control: every endpoint, every websocket, both tokens, hosts, origins, ingest, secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from e2e.support import Daemon, Pipeline, scaled, send_tcp, send_udp, wait_until, worker_command

pytestmark = pytest.mark.e2e

CONTROL = "control-secret-0123"
READ = "read-only-secret-4567"
SERVICE = {"name": "svc", "command": worker_command("--beat", "0.2")}


def start(pipeline: Pipeline, **server: Any) -> Daemon:
    root = pipeline.folder / "applogs"
    root.mkdir(exist_ok=True)
    (root / "app.log").write_text("hello\n")
    pipeline.write_config([SERVICE], server=server, logs={"roots": [str(root)]})
    daemon = pipeline.start_daemon()
    daemon.wait_running("svc")
    return daemon


def operations(daemon: Daemon, token: str) -> list[tuple[str, str]]:
    """Every method and path of the OpenAPI document, path parameters filled in."""
    document = daemon.request("GET", "/openapi.json", token=token)
    found = []
    for path, methods in document["paths"].items():
        concrete = path.replace("{name}", "svc").replace("{service}", "svc")
        concrete = concrete.replace("{what}", "poiid").replace("{verb}", "restart")
        assert "{" not in concrete, f"a path parameter this test does not fill: {path}"
        found.extend((method.upper(), concrete) for method in methods)
    assert len(found) > 15
    return found


def error_code(body: bytes) -> str:
    code: str = json.loads(body)["code"]
    return code


def test_every_endpoint_refuses_without_the_token(pipeline: Pipeline) -> None:
    """No token or a wrong one: 401 with a JSON code, everywhere but the page's shell."""
    daemon = start(pipeline, token=CONTROL, read_token=READ)
    for method, path in operations(daemon, CONTROL):
        if path.startswith("/ping"):
            continue  # pings come from loopback here: they need no token (tested below)
        for headers in ({}, {"Authorization": "Bearer wrong-token-000"}):
            status, _, body = daemon.raw(method, path, headers)
            assert status == 401, f"{method} {path} {headers}: {status} {body[:200]!r}"
            assert error_code(body) == "unauthorized"
    for path in ("/openapi.json", "/docs", "/metrics", "/api/v1/auth?token=nope"):
        status, headers, _ = daemon.raw("GET", path)
        assert status == 401, path
        assert headers["www-authenticate"].startswith("Bearer")
    status, _, page = daemon.raw("GET", "/")
    assert status == 200 and CONTROL.encode() not in page and READ.encode() not in page


def test_read_token_reads_but_cannot_control(pipeline: Pipeline) -> None:
    """The read-only token opens every GET and is refused (403) on every change."""
    daemon = start(pipeline, token=CONTROL, read_token=READ)
    bearer = {"Authorization": f"Bearer {READ}"}
    for method, path in operations(daemon, CONTROL):
        if path.startswith("/ping"):
            continue
        status, _, body = daemon.raw(method, path, bearer)
        if method in ("GET", "HEAD"):
            assert status == 200, f"{method} {path}: {status} {body[:200]!r}"
        else:
            assert status == 403 and error_code(body) == "forbidden", f"{method} {path}"
    assert daemon.request("GET", "/api/v1/auth", token=READ) == {
        "token_required": True,
        "scope": "read",
    }
    assert daemon.request("GET", f"/api/v1/auth?token={CONTROL}")["scope"] == "control"
    before = daemon.request("GET", "/api/v1/services/svc", token=READ)["pid"]
    daemon.request("POST", "/api/v1/services/svc/restart", token=CONTROL)
    wait_until(
        lambda: (
            daemon.request("GET", "/api/v1/services/svc", token=CONTROL)["pid"]
            not in (None, before)
        ),
        "a restart by the control token",
    )


def test_websockets_need_the_token_and_the_same_origin(pipeline: Pipeline) -> None:
    """Events and logs websockets: 4401 without a token, 4403 cross-origin, open with it."""
    daemon = start(pipeline, token=CONTROL, read_token=READ)
    base = "ws" + daemon.http_url.removeprefix("http")
    targets = ["/ws/events", "/ws/logs/svc", "/ws/logs?path=app.log&follow=false"]

    async def close_of(url: str, **kwargs: Any) -> tuple[int | None, str]:
        async with asyncio.timeout(scaled(10)), connect(url, **kwargs) as websocket:
            with contextlib.suppress(ConnectionClosed):
                frames = [await websocket.recv() for _ in range(10)]
                raise AssertionError(f"{url}: not refused, frames came: {frames!r}")
            return websocket.close_code, websocket.close_reason or ""

    async def first_frame(url: str) -> str:
        async with asyncio.timeout(scaled(10)), connect(url) as websocket:
            frame = await websocket.recv()
            assert isinstance(frame, str)
            return frame

    async def main() -> None:
        for target in targets:
            sep = "&" if "?" in target else "?"
            assert await close_of(base + target) == (4401, "a valid token is required")
            code, reason = await close_of(
                f"{base}{target}{sep}token={READ}", origin="http://evil.example"
            )
            assert (code, reason) == (4403, "cross-origin websocket refused"), target
            assert await first_frame(f"{base}{target}{sep}token={READ}")

    asyncio.run(main())


def test_without_a_token_only_loopback_hosts_and_same_origin_changes(pipeline: Pipeline) -> None:
    """No token: a foreign Host (DNS rebinding) and a cross-site POST are refused."""
    daemon = start(pipeline)
    status, _, body = daemon.raw("GET", "/api/v1/services", {"Host": "evil.example:80"})
    assert status == 403 and error_code(body) == "bad_host"
    origin = {"Origin": "http://evil.example"}
    status, _, body = daemon.raw("POST", "/api/v1/services/svc/stop", origin)
    assert status == 403 and error_code(body) == "cross_origin"
    assert daemon.service("svc")["state"] == "running"
    own = {"Origin": daemon.http_url}
    assert daemon.raw("POST", "/api/v1/services/svc/restart", own)[0] == 200
    assert daemon.raw("GET", "/api/v1/services", {"Host": "localhost"})[0] == 200


def test_listening_beyond_loopback_needs_a_token(pipeline: Pipeline) -> None:
    """``http = 0.0.0.0`` without a token: the daemon refuses to start and names the key."""
    pipeline.write_config([SERVICE], server={"http": "0.0.0.0:0"})
    result = subprocess.run(
        [sys.executable, "-m", "heartwatch", "run", "-c", str(pipeline.config_path)],
        capture_output=True,
        text=True,
        timeout=scaled(30),
        cwd=pipeline.folder,
    )
    assert result.returncode == 2
    assert "server.token: required when server.http listens on 0.0.0.0" in result.stderr


def _outward_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    return None


def test_heartbeats_from_another_address_need_the_token(pipeline: Pipeline) -> None:
    """From a non-loopback address, TCP and UDP messages without the token are refused."""
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no non-loopback IPv4 address to send from")
    watched = {"name": "remote", "heartbeat_timeout": "1h"}
    pipeline.write_config(
        [watched], server={"tcp": "0.0.0.0:0", "token": CONTROL, "ingest_token": "ingest-secret-1"}
    )
    daemon = pipeline.start_daemon()
    port = daemon.tcp_address[1]

    def sent(payload: dict[str, Any], udp: bool = False) -> bytes:
        line = json.dumps({"type": "heartbeat", "service": "remote", **payload}).encode() + b"\n"
        (send_udp if udp else send_tcp)((outward, port), line)
        return line

    def counts() -> tuple[int, int]:
        ingest = daemon.request("GET", "/api/v1/ingest", token=CONTROL)
        refused = sum(e["count"] for e in ingest["errors"] if e["code"] == "unauthorized")
        return daemon.request("GET", "/api/v1/services/remote", token=CONTROL)["messages"], refused

    sent({})
    sent({"token": "wrong"}, udp=True)
    wait_until(lambda: counts() == (0, 2), "two refused messages")
    sent({"token": "ingest-secret-1"})
    sent({"token": CONTROL}, udp=True)
    wait_until(lambda: counts() == (2, 2), "two accepted messages")
    # Loopback senders need nothing.
    send_tcp(("127.0.0.1", port), b'{"type":"heartbeat","service":"remote"}\n')
    wait_until(lambda: counts() == (3, 2), "a loopback message")


def test_secrets_never_appear_in_logs_or_answers(pipeline: Pipeline) -> None:
    """Tokens and notification URLs stay out of the daemon's log and every JSON answer."""
    hook = "json://user:hook-secret-99@127.0.0.1:9/path"
    root = pipeline.folder / "applogs"
    root.mkdir()
    pipeline.write_config(
        [SERVICE],
        server={"token": CONTROL, "read_token": READ},
        logs={"roots": [str(root)]},
        extra={"notify": {"urls": [hook], "retries": 0}},
    )
    daemon = pipeline.start_daemon()
    wait_until(
        lambda: daemon.request("GET", "/api/v1/services/svc", token=CONTROL)["state"] == "running",
        "svc running",
    )

    async def follow() -> None:
        url = "ws" + daemon.http_url.removeprefix("http") + f"/ws/logs/svc?token={CONTROL}"
        async with asyncio.timeout(scaled(10)), connect(url) as websocket:
            await websocket.send("hello")

    asyncio.run(follow())
    daemon.request("POST", "/api/v1/services/svc/restart", token=CONTROL)
    answers = "".join(
        json.dumps(daemon.request("GET", path, token=CONTROL))
        for path in ("/api/v1/services", "/api/v1/events?limit=1000", "/api/v1/ingest")
    )
    answers += daemon.raw("GET", "/metrics", {"Authorization": f"Bearer {CONTROL}"})[2].decode()
    assert daemon.terminate() == 0
    text = answers + daemon.log_text() + daemon.stderr_text()
    for secret in (CONTROL, READ, "hook-secret-99"):
        assert not re.search(re.escape(secret), text), f"{secret} leaked"


def test_services_do_not_inherit_the_daemons_token(pipeline: Pipeline) -> None:
    """``HEARTWATCH_TOKEN`` in the daemon's environment stays out of its services'."""
    show = "import os; print('token:', os.environ.get('HEARTWATCH_TOKEN'), flush=True)"
    given = {"name": "given", "command": [sys.executable, "-c", show], "autorestart": "never"}
    given["env"] = {"HEARTWATCH_TOKEN": "its-own-token"}
    plain = {"name": "plain", "command": [sys.executable, "-c", show], "autorestart": "never"}
    pipeline.write_config([plain, given])
    pipeline.start_daemon(env={"HEARTWATCH_TOKEN": CONTROL})

    def said(name: str) -> list[str] | None:
        path = pipeline.log_dir / f"{name}.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if line.startswith("token:")] or None

    assert wait_until(lambda: said("plain"), "plain's output") == ["token: None"]
    assert wait_until(lambda: said("given"), "given's output") == ["token: its-own-token"]
