"""The fleet on one machine: a hub and two agents (farm-a, farm-b), each running the demo
pipeline, against the RabbitMQ and PostgreSQL on this machine.

Run it from the project root with:  python3 dev.py fleet
Needs RabbitMQ at 127.0.0.1:5672 (guest/guest) and PostgreSQL at 127.0.0.1:5432 (user
postgres); both URLs can be changed with HEARTWATCH_DEMO_BROKER and HEARTWATCH_DEMO_DATABASE.
Everything it writes goes to .fleet-demo/ (the hub's key, the agents' files, state, logs).
Ctrl-C stops the hub, both agents and every service they started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from heartwatch.core.fleetcommands import parse_private_key, public_key_text

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / ".fleet-demo"
DEMO = ROOT / "examples" / "demo"
BROKER = os.environ.get("HEARTWATCH_DEMO_BROKER", "amqp://guest:guest@127.0.0.1:5672/%2F")
DATABASE = os.environ.get(
    "HEARTWATCH_DEMO_DATABASE", "postgresql://postgres@127.0.0.1:5432/heartwatch_demo"
)
HUB_HTTP = "127.0.0.1:9300"
AGENTS = {"farm-a": (5011, 8771, "sz"), "farm-b": (5012, 8772, "gz")}
NAMES = ["the hub", *AGENTS]

HUB_TOML = """\
[hub]
name = "demo-hub"
broker = "{broker}"
database = "{database}"
http = "{http}"
state_dir = "hub-state"
signing_key = "hub.key"
stale_after = "10s"
unreachable_after = "30s"
start_grace = "15s"
"""

AGENT_TOML = """\
[server]
tcp = "127.0.0.1:{tcp}"
http = "127.0.0.1:{http}"
default_service = "collector"

[daemon]
state_dir = "{host}/state"
log_dir = "{host}/logs"

[fleet]
broker = "{broker}"
host = "{host}"
labels = {{ site = "{site}" }}
hub_keys = ["{key}"]
heartbeat_interval = "2s"

[[service]]
name = "emulator"
command = ["{python}", "{demo}/emulator.py"]
ready = "3s"

[[service]]
name = "collector"
command = ["{python}", "{demo}/collector.py"]
requires = ["emulator"]
startup_grace = "10s"
heartbeat_timeout = "3s"
data_timeout = {{ poiid = "8s" }}
restart = "group"
max_restarts = 10
restart_window = "2m"
stop_timeout = "2s"
"""


def create_database() -> None:
    """The demo's database, made once (the hub creates its tables itself)."""
    parts = urlsplit(DATABASE)
    name = parts.path.lstrip("/")
    server = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(server, autocommit=True) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if found.fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}", flush=True)


def hub_key() -> str:
    """The hub's signing key (made once), and the public key the agents trust."""
    key = HERE / "hub.key"
    if not key.exists():
        subprocess.run(heartwatch("hub", "keygen", str(key)), stdout=subprocess.DEVNULL, check=True)
    return public_key_text(parse_private_key(key.read_text()).public_key())


def heartwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "heartwatch", *args]


def start(*args: str) -> subprocess.Popen[bytes]:
    # A session of its own: a terminal's Ctrl-C reaches this script alone, which passes one
    # SIGINT on (a second one would make a daemon kill its services at once).
    return subprocess.Popen(heartwatch(*args), cwd=HERE, start_new_session=True)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (an init system, `timeout`) stops the demo as Ctrl-C does


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    HERE.mkdir(exist_ok=True)
    try:
        create_database()
    except psycopg.OperationalError as error:
        sys.exit(f"PostgreSQL is not reachable at {DATABASE}: {error}".strip())
    public = hub_key()
    (HERE / "hub.toml").write_text(HUB_TOML.format(broker=BROKER, database=DATABASE, http=HUB_HTTP))
    for host, (tcp, http, site) in AGENTS.items():
        (HERE / f"{host}.toml").write_text(
            AGENT_TOML.format(
                tcp=tcp,
                http=http,
                host=host,
                site=site,
                broker=BROKER,
                key=public,
                python=sys.executable,
                demo=DEMO,
            )
        )
    runs = [start("hub", "-c", "hub.toml")]
    runs += [start("run", "-c", f"{host}.toml") for host in AGENTS]
    print(
        "\nheartwatch fleet demo: a hub and two hosts (farm-a, farm-b), each running the demo\n"
        f"pipeline. The fleet dashboard: http://{HUB_HTTP}/  (a host's own: "
        + ", ".join(f"http://127.0.0.1:{http}/" for _, http, _ in AGENTS.values())
        + ")\nIn another terminal:\n"
        f"  .venv/bin/heartwatch --hub http://{HUB_HTTP} status\n"
        f"  .venv/bin/heartwatch --hub http://{HUB_HTTP} restart farm-b/collector\n"
        f"  .venv/bin/heartwatch --hub http://{HUB_HTTP} tail farm-a/collector\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )
    try:
        while all(run.poll() is None for run in runs):
            time.sleep(0.5)
        ended = [name for name, run in zip(NAMES, runs, strict=True) if run.poll() is not None]
        print(f"demo: {', '.join(ended)} ended; stopping the rest", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        for run in runs:
            if run.poll() is None:
                run.send_signal(signal.SIGINT)
        for run in runs:
            try:
                run.wait(timeout=30)
            except subprocess.TimeoutExpired:
                run.kill()


if __name__ == "__main__":
    main()
