"""A fleet for the end-to-end tests: real agents (daemons with ``[fleet]``), real hubs, an alert
sink, and readings of the hub's API and its PostgreSQL database.

- ``Agent``: one host, a heartwatch daemon of its own (its own folder, state dir and host
  name) running two test workers: ``collector`` beats every 0.2 s (1 s deadline), ``emulator``
  only runs. ``hang`` SIGSTOPs a worker: alive, silent, a real hang.
- ``Hub``: one ``heartwatch hub -c hub.toml`` process; ``hub.json`` in its state dir says where
  it listens.
- ``AlertSink``: an HTTP server on 127.0.0.1 collecting what apprise's ``json://`` posts.
- ``Fleet`` (the ``fleet`` fixture): the exchange, database and signing key a test's hubs and
  agents share, and the cleanup of everything it started.

Timings are scaled down (``TIMINGS``) so a scenario takes seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from e2e.support import (
    Daemon,
    Pipeline,
    alive,
    duration,
    scaled,
    toml_value,
    wait_until,
    worker_command,
)
from heartwatch.core import fleetcommands, fleetwire

# Hosts and hubs, scaled down: a silent host is stale after 3 s, unreachable after 6 s.
TIMINGS = {
    "heartbeat_interval": 1.0,
    "snapshot_interval": 60.0,
    "stale_after": 3.0,
    "unreachable_after": 6.0,
    "start_grace": 3.0,
    "command_ttl": 20.0,
}

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def default_services() -> list[dict[str, Any]]:
    """What each agent supervises: a beating collector (hangs are found in 1 s) and an emulator."""
    return [
        {
            "name": "collector",
            "command": worker_command("--beat", "0.2"),
            "heartbeat_timeout": duration(1),
            "startup_grace": duration(5),
            "stop_timeout": duration(2),
            "backoff_initial": duration(0.2),
        },
        {
            "name": "emulator",
            "command": worker_command(),
            "stop_timeout": duration(2),
        },
    ]


def wait_listening(daemon: Daemon, timeout: float = 45.0) -> None:
    """``Daemon.wait_listening`` with a longer bound: several agents and hubs starting at once on
    a loaded machine (xdist workers) take longer than one daemon's 15 s."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        try:
            daemon.wait_listening()
            return
        except AssertionError:
            if daemon.popen.poll() is not None or time.monotonic() > deadline:
                raise


# -- the alert sink --------------------------------------------------------------------------


class AlertSink:
    """What apprise's ``json://`` sends: ``{"title", "message", "type", ...}`` per alert."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[dict[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size)
                try:
                    data = json.loads(body)
                except ValueError:
                    data = {"raw": body.decode(errors="replace")}
                if not isinstance(data, dict):
                    data = {"raw": data}
                data["_path"] = self.path
                data["_received"] = time.time()
                with sink._lock:
                    sink._received.append(data)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reads what was received, not the server's chatter

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self._server.server_address[1]}/"

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._received)

    def texts(self) -> list[str]:
        """Each alert's title and message, as one string."""
        return [f"{a.get('title', '')}\n{a.get('message', '')}" for a in self.received()]

    def matching(self, *words: str) -> list[str]:
        """The alerts whose text holds every one of ``words`` (case-insensitive)."""
        return [t for t in self.texts() if all(w.lower() in t.lower() for w in words)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- an agent ----------------------------------------------------------------------------------


class Agent:
    """One host: a heartwatch daemon with ``[fleet]`` in a folder of its own."""

    def __init__(
        self,
        folder: Path,
        host: str,
        fleet_section: Mapping[str, Any],
        services: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.killed = False  # its last daemon was SIGKILLed: its workers may be left over
        self.pipeline = Pipeline(folder)
        self.pipeline.write_config(
            services if services is not None else default_services(),
            extra={"fleet": {**fleet_section, "host": host}},
        )

    # -- lifetime ----------------------------------------------------------------------------

    def launch(self) -> Daemon:
        """Start the daemon (a new boot) without waiting for it to listen."""
        pipeline = self.pipeline
        stderr: IO[bytes] = (pipeline.folder / f"daemon-{len(pipeline.daemons)}.stderr").open("wb")
        popen = subprocess.Popen(
            [sys.executable, "-m", "heartwatch", "run", "-c", str(pipeline.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            cwd=pipeline.folder,
            env=dict(os.environ),
        )
        daemon = Daemon(pipeline, popen, stderr)
        pipeline.daemons.append(daemon)
        self.killed = False
        return daemon

    def start(self) -> Daemon:
        daemon = self.launch()
        wait_listening(daemon)
        return daemon

    @property
    def daemon(self) -> Daemon:
        return self.pipeline.daemons[-1]

    def running(self) -> bool:
        return bool(self.pipeline.daemons) and self.daemon.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the daemon, as a crash would (its workers are left running)."""
        self.daemon.kill()
        self.killed = True

    def wait_all_running(self, timeout: float = 20.0) -> dict[str, int]:
        """Every service running with a pid; their pids by name."""

        def ready() -> dict[str, int] | None:
            services = self.daemon.services()
            if services and all(s["state"] == "running" and s["pid"] for s in services):
                return {s["name"]: int(s["pid"]) for s in services}
            return None

        return wait_until(ready, f"{self.host}: every service running", timeout)

    def pid(self, service: str) -> int:
        return int(self.daemon.service(service)["pid"])

    def hang(self, service: str) -> int:
        """SIGSTOP the service's process: alive, its port open, silent. Returns its pid."""
        pid = self.pid(service)
        os.kill(pid, signal.SIGSTOP)
        return pid

    def wait_recovered(self, service: str, old_pid: int, timeout: float = 20.0) -> dict[str, Any]:
        """The agent's own API shows ``service`` running again, with another pid."""
        return self.daemon.wait_service(
            service,
            lambda s: s["state"] == "running" and s["pid"] not in (None, old_pid),
            f"running again after pid {old_pid}",
            timeout,
        )

    # -- what it says -------------------------------------------------------------------------

    def journal(self) -> list[dict[str, Any]]:
        """Every entry of the agent's local journal (GET /api/v1/events), oldest first."""
        entries: list[dict[str, Any]] = []
        before: int | None = None
        for _ in range(1000):  # pages of 1000: far beyond any test's journal
            query = "?limit=1000" + (f"&before_id={before}" if before else "")
            page = self.daemon.request("GET", f"/api/v1/events{query}")["events"]
            entries.extend(page)
            if len(page) < 1000:
                break
            before = min(e["id"] for e in page)
        return sorted(entries, key=lambda e: e["id"])

    def log_text(self) -> str:
        return self.daemon.log_text() if self.pipeline.daemons else ""

    def report(self) -> str:
        return (
            f"=== agent {self.host} ===\n{self.pipeline.report()}\n"
            f"--- heartwatch.log ---\n{self.log_text()[-20000:]}"
        )


# -- a hub -----------------------------------------------------------------------------------


class Hub:
    """One ``heartwatch hub -c hub.toml`` process and its HTTP API."""

    def __init__(self, folder: Path, config: Mapping[str, Mapping[str, Any]], token: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.token = token
        self.name = str(config["hub"]["name"])
        self.state_dir = Path(config["hub"]["state_dir"])
        self.config_path = folder / "hub.toml"
        lines = []
        for title, table in config.items():
            lines.append(f"[{title}]")
            lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
            lines.append("")
        self.config_path.write_text("\n".join(lines))
        self.popen: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.http_url = ""
        self._stderr: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self, timeout: float = 30.0) -> Hub:
        """Start the hub and wait for its ``hub.json`` (written by *this* process)."""
        self.runs += 1
        if self._stderr is not None:
            self._stderr.close()
        self._stderr = (self.folder / f"hub-{self.runs}.stderr").open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "heartwatch", "hub", "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            cwd=self.folder,
            env=dict(os.environ),
        )
        popen = self.popen

        def info() -> dict[str, Any] | None:
            if popen.poll() is not None:
                raise AssertionError(
                    f"hub {self.name} exited with {popen.returncode}:\n{self.stderr_text()}"
                )
            with contextlib.suppress(OSError, ValueError):
                data = json.loads((self.state_dir / "hub.json").read_text())
                if isinstance(data, dict) and data.get("pid") == popen.pid:
                    return data
            return None

        data = wait_until(info, f"hub {self.name} to write hub.json", timeout)
        self.http_url = f"http://{data['http']}"
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def terminate(self, timeout: float = 15.0) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"hub {self.name} did not stop within {timeout:g} s") from None

    def close(self) -> None:
        with contextlib.suppress(AssertionError):
            self.terminate(10.0)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stderr_text(self) -> str:
        parts = []
        for run in range(1, self.runs + 1):
            path = self.folder / f"hub-{run}.stderr"
            with contextlib.suppress(OSError):
                parts.append(
                    f"--- hub {self.name} run {run} ---\n{path.read_text(errors='replace')}"
                )
        return "\n".join(parts)

    # -- the API -------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Any request with the control token: its status and JSON answer, whatever the status."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.http_url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with _HTTP.open(request, timeout=scaled(15.0)) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            text = error.read()
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, text.decode(errors="replace")

    def metric(self, name: str) -> float:
        """One unlabelled sample of this hub's /metrics (0 when it is not there)."""
        request = urllib.request.Request(self.http_url + "/metrics")
        request.add_header("Authorization", f"Bearer {self.token}")
        with _HTTP.open(request, timeout=scaled(15.0)) as response:
            text = response.read().decode()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return float(value)
        return 0.0

    def get(self, path: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(
            [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
        )
        status, answer = self.call("GET", path + (f"?{query}" if query else ""))
        assert status == 200, f"GET {path} answered {status}: {answer}"
        return answer

    def fleet(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/api/v1/fleet")
        return result

    def host_state(self, host: str) -> str | None:
        for item in self.fleet()["hosts"]:
            if item["host"] == host:
                return str(item["state"])
        return None

    def service(self, host: str, name: str) -> dict[str, Any] | None:
        for item in self.fleet()["services"]:
            if item["host"] == host and item["name"] == name:
                return dict(item)
        return None

    def events(self, **params: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/events", **params)["events"]
        return result

    def issue(self, targets: list[str], verb: str, ttl: float | None = None, **args: Any) -> Any:
        body: dict[str, Any] = {"targets": targets, "verb": verb, "args": args}
        if ttl is not None:
            body["ttl"] = ttl
        return self.call("POST", "/api/v1/commands", body)

    def command(self, command_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/api/v1/commands/{command_id}")
        return result

    def wait_host_state(self, host: str, state: str, timeout: float = 20.0) -> None:
        wait_until(
            lambda: self.host_state(host) == state,
            f"hub {self.name}: host {host} {state} (now {self.host_state(host)})",
            timeout,
            interval=0.1,
        )


# -- PostgreSQL --------------------------------------------------------------------------------


def query(database: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(database, autocommit=True) as connection:
        return list(connection.execute(sql, params).fetchall())


def stored_events(database: str, host: str) -> list[tuple[str, int, str, dict[str, Any]]]:
    """``(boot, seq, type, body)`` of every event the hub stored for ``host``, by boot, seq."""
    rows = query(
        database,
        "SELECT boot, seq, type, body FROM events WHERE host = %s"
        " ORDER BY (SELECT min(received_at) FROM events e WHERE e.host = events.host"
        " AND e.boot = events.boot), boot, seq",
        (host,),
    )
    return [(str(b), int(s), str(t), dict(body)) for b, s, t, body in rows]


def stored_entries(database: str, host: str) -> list[dict[str, Any]]:
    """The journal entries the hub stored for ``host``, in the order they were sent."""
    return [body for _, _, kind, body in stored_events(database, host) if kind == "entry"]


def duplicate_events(database: str) -> int:
    """How many (host, boot, seq) are stored more than once (the primary key says none can)."""
    rows = query(
        database,
        "SELECT count(*) FROM (SELECT host, boot, seq FROM events"
        " GROUP BY host, boot, seq HAVING count(*) > 1) d",
    )
    return int(rows[0][0])


def seq_problems(database: str) -> list[str]:
    """Per (host, boot), the seqs must be 1..N with no gap: what is not."""
    rows = query(
        database,
        "SELECT host, boot, count(*), min(seq), max(seq) FROM events GROUP BY host, boot",
    )
    return [
        f"{host} boot {boot}: {count} events, seq {low}..{high}"
        for host, boot, count, low, high in rows
        if not (low == 1 and high == count)
    ]


def command_replies(database: str, command_id: str) -> list[str]:
    """The statuses the agents replied for ``command_id``, in the order they were sent."""
    rows = query(
        database,
        "SELECT body->>'status' FROM events WHERE type = 'reply' AND body->>'command' = %s"
        " ORDER BY received_at, seq",
        (command_id,),
    )
    return [str(status) for (status,) in rows]


# -- commands signed outside the hub ------------------------------------------------------------


def signed_command(
    key: Any, host: str, service: str, verb: str = "restart", ttl: float = 30.0
) -> tuple[str, bytes]:
    """A command as a hub would send it, signed with ``key``: its id and bytes."""
    now = time.time()
    command = fleetcommands.Command(
        uuid.uuid4().hex,
        host,
        service,
        verb,
        now,
        now + ttl,
        {},
        "test",  # type: ignore[arg-type]
    )
    return command.id, fleetcommands.sign(command, key)


def publish_command(url: str, exchange: str, host: str, command_id: str, data: bytes) -> None:
    """Put ``data`` on the host's command queue as the hub does (default exchange, expiry)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            "",
            fleetwire.command_queue(exchange, host),
            data,
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,
                expiration=str(30_000),
                message_id=command_id,
            ),
            mandatory=True,
        )
    finally:
        connection.close()


# -- the fleet ---------------------------------------------------------------------------------


class Fleet:
    """The hubs and agents of one test, sharing an exchange, a database and a signing key."""

    def __init__(self, folder: Path, broker: str, exchange: str, database: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.folder = folder
        self.broker = broker
        self.exchange = exchange
        self.database = database
        self.token = uuid.uuid4().hex
        self.key = Ed25519PrivateKey.generate()
        self.key_path = folder / "hub.key"
        self.key_path.write_text(fleetcommands.private_key_text(self.key) + "\n")
        self.key_path.chmod(0o600)
        self.public_key = fleetcommands.public_key_text(self.key.public_key())
        self.sink = AlertSink()
        self.agents: dict[str, Agent] = {}
        self.hubs: list[Hub] = []

    def fleet_section(self, **overrides: Any) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "exchange": self.exchange,
            "heartbeat_interval": duration(TIMINGS["heartbeat_interval"]),
            "snapshot_interval": duration(TIMINGS["snapshot_interval"]),
            "hub_keys": [self.public_key],
            **overrides,
        }

    def agent(self, host: str, services: Sequence[Mapping[str, Any]] | None = None) -> Agent:
        agent = Agent(self.folder / host, host, self.fleet_section(), services)
        self.agents[host] = agent
        return agent

    def start_agents(self, *hosts: str) -> list[Agent]:
        """Make and start these agents together (their startups overlap), then wait for each."""
        agents = [self.agents.get(host) or self.agent(host) for host in hosts]
        daemons = [agent.launch() for agent in agents]
        for daemon in daemons:
            wait_listening(daemon)
        for agent in agents:
            agent.wait_all_running()
        return agents

    def hub(self, name: str = "hub-1", **overrides: Any) -> Hub:
        """Make a hub (not started) with the test timings; ``overrides`` go into ``[hub]``."""
        state_dir = self.folder / name
        section: dict[str, Any] = {
            "name": name,
            "broker": self.broker,
            "database": self.database,
            "exchange": self.exchange,
            "http": "127.0.0.1:0",
            "state_dir": str(state_dir),
            "token": self.token,
            "signing_key": str(self.key_path),
            **{
                key: duration(TIMINGS[key])
                for key in TIMINGS
                if key not in ("heartbeat_interval", "snapshot_interval")
            },
            **overrides,
        }
        config = {
            "hub": section,
            "alerts": {"urls": [self.sink.url], "recovered_after": duration(1), "retries": 0},
        }
        hub = Hub(state_dir, config, self.token)
        self.hubs.append(hub)
        return hub

    def start_hub(self, name: str = "hub-1", **overrides: Any) -> Hub:
        return self.hub(name, **overrides).start()

    # -- waiting for the hub to catch up ------------------------------------------------------

    def wait_caught_up(self, host: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until the hub stored every entry of the agent's journal (its running daemon's
        whole journal, both boots if restarted); return the journal."""
        agent = self.agents[host]

        def same() -> list[dict[str, Any]] | None:
            journal = agent.journal()
            stored = {e.get("id") for e in stored_entries(self.database, host)}
            return journal if journal and all(e["id"] in stored for e in journal) else None

        try:
            return wait_until(same, f"the hub to store every journal entry of {host}", timeout, 0.2)
        except AssertionError as error:
            journal = agent.journal()
            stored = stored_entries(self.database, host)
            ids = {e.get("id") for e in stored}
            missing = [e for e in journal if e["id"] not in ids]
            raise AssertionError(
                f"{error}: {len(missing)} of {len(journal)} entries missing, first: {missing[:3]}"
            ) from None

    # -- cleanup -------------------------------------------------------------------------------

    def close(self) -> list[int]:
        # SIGTERM to every daemon and hub first: they stop together, not one after another.
        for agent in self.agents.values():
            for daemon in agent.pipeline.daemons:
                if daemon.popen.poll() is None:
                    daemon.popen.send_signal(signal.SIGTERM)
        for hub in self.hubs:
            if hub.popen is not None and hub.popen.poll() is None:
                hub.popen.send_signal(signal.SIGTERM)
        leftovers: list[int] = []
        for agent in self.agents.values():
            left = agent.pipeline.close()
            if not agent.killed:  # a SIGKILLed daemon leaves its workers: that is the crash
                leftovers += left
        for hub in self.hubs:
            hub.close()
        self.sink.close()
        return leftovers

    def report(self) -> str:
        parts = [agent.report() for agent in self.agents.values()]
        parts += [hub.stderr_text()[-20000:] for hub in self.hubs]
        parts.append("=== alerts received ===\n" + "\n---\n".join(self.sink.texts()))
        return "\n".join(parts)


@pytest.fixture
def fleet(
    tmp_path: Path, rabbitmq: str, unique_exchange: str, fresh_database: str
) -> Iterator[Fleet]:
    """A fleet of this test's own: its exchange, its database, its hubs and agents."""
    pytest.importorskip("aio_pika")
    pytest.importorskip("psycopg")
    the_fleet = Fleet(tmp_path, rabbitmq, unique_exchange, fresh_database)
    try:
        yield the_fleet
    finally:
        leftovers = the_fleet.close()
        print(the_fleet.report())  # shown by pytest only when the test fails
    if leftovers:
        pytest.fail(f"processes outlived their daemon and were killed at teardown: {leftovers}")


def processes_alive(pids: Sequence[int]) -> list[int]:
    """Which of ``pids`` are still running."""
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            if alive(psutil.Process(pid)):
                found.append(pid)
    return found
