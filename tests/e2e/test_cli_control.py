"""``heartwatch start|stop|restart|signal NAME...``, ``status [NAME...]`` and ``top`` against a
real daemon, as a supervisorctl user types them: several names, ``all``, a service's
instances by its ``[[service]]`` name, globs, an unknown name refusing the whole request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from e2e.support import Pipeline, heartwatch, send_tcp, wait_until, worker_command

pytestmark = pytest.mark.e2e


def pids(services: list[dict[str, Any]]) -> dict[str, int | None]:
    return {s["name"]: s["pid"] for s in services}


def test_cli_control_takes_several_names_all_groups_and_globs(pipeline: Pipeline) -> None:
    """An unknown name changes nothing (exit 1, the close name suggested); ``restart
    collector`` restarts its instances and spares the rest; ``stop all`` stops all; the
    table shows the instances under their service."""
    config = pipeline.write_config(
        [
            {"name": "emulator", "command": worker_command()},
            {"name": "collector", "command": worker_command(), "instances": 2},
        ]
    )
    daemon = pipeline.start_daemon()
    for name in ("emulator", "collector@0", "collector@1"):
        daemon.wait_running(name)
    before = pids(daemon.services())

    def cli(*args: str) -> Any:
        return heartwatch(*args, "-c", config, cwd=pipeline.folder)

    refused = cli("restart", "emulator", "colector")
    assert refused.returncode == 1, refused
    assert "no service 'colector' (did you mean 'collector'" in refused.stderr
    assert pids(daemon.services()) == before  # nothing was done, not even emulator

    restarted = cli("restart", "collector")
    assert restarted.returncode == 0, restarted
    assert [line.split(":")[0] for line in restarted.stdout.splitlines()] == [
        "collector@0",
        "collector@1",
    ]
    for name in ("collector@0", "collector@1"):
        daemon.wait_service(
            name,
            lambda s, n=name: s["state"] == "running" and s["pid"] not in (None, before[n]),
            "running with a new pid",
        )
    assert daemon.service("emulator")["pid"] == before["emulator"]

    shown = cli("status", "collector@*", "--json")
    assert shown.returncode == 0, shown
    assert [s["name"] for s in json.loads(shown.stdout)] == ["collector@0", "collector@1"]
    assert cli("status", "nope").returncode == 4

    stopped = cli("stop", "all")
    assert stopped.returncode == 0, stopped
    wait_until(
        lambda: all(s["state"] == "stopped" for s in daemon.services()), "all services stopped"
    )
    table = cli("status")
    assert table.returncode == 3, table  # not running: supervisorctl's (and LSB's) 3
    rows = {line.split()[0]: line.split()[1:3] for line in table.stdout.splitlines()[1:]}
    assert set(rows) == {*before, "collector"}  # the instances under a row for their service
    assert rows["collector"] == ["0/2", "running"]
    assert rows["collector@1"][0] == "stopped"


def test_cli_signal_reaches_the_main_process_and_refuses_a_stopped_one(
    pipeline: Pipeline,
) -> None:
    """``signal trapper HUP`` runs the service's trap; for a stopped service it says why and
    exits 1; ``top`` into a pipe prints one snapshot."""
    marker = pipeline.folder / "hups"
    script = f"trap 'echo hup >> {marker}' HUP; while :; do sleep 0.05; done"
    config = pipeline.write_config(
        [
            {"name": "trapper", "command": ["sh", "-c", script]},
            {"name": "idle", "command": worker_command(), "autostart": False},
        ]
    )
    daemon = pipeline.start_daemon()
    pid = daemon.wait_running("trapper")["pid"]

    sent = heartwatch("signal", "trapper", "HUP", "-c", config, cwd=pipeline.folder)
    assert sent.returncode == 0, sent
    assert f"HUP sent to its main process, pid {pid}" in sent.stdout
    wait_until(lambda: marker.exists() and "hup" in marker.read_text(), "the trap to run")
    assert daemon.service("trapper")["pid"] == pid  # the signal did not end it

    refused = heartwatch("signal", "idle", "trapper", "HUP", "-c", config, cwd=pipeline.folder)
    assert refused.returncode == 1, refused
    assert "idle is stopped: it has no process to signal" in refused.stderr

    bad = heartwatch("signal", "trapper", "NOPE", "-c", config, cwd=pipeline.folder)
    assert bad.returncode == 2, bad
    assert "'NOPE' is not a signal name" in bad.stderr

    snapshot = heartwatch("top", "-c", config, cwd=pipeline.folder)
    assert snapshot.returncode == 0, snapshot
    rows = {line.split()[0]: line.split()[1:3] for line in snapshot.stdout.splitlines()[1:]}
    assert rows["trapper"] == ["running", str(pid)]
    assert rows["idle"][0] == "stopped"


def test_cli_refusal_for_want_of_a_token_names_both_ways(pipeline: Pipeline) -> None:
    """Without the token: 401, and the message says --token and HEARTWATCH_TOKEN; with
    ``--token`` the same command works, and shows the service's own status text."""
    token = "s3cret-token-for-the-cli"
    config = pipeline.write_config(
        [{"name": "job", "command": worker_command()}], server={"token": token}
    )
    daemon = pipeline.start_daemon()
    daemon.wait_running("job")
    folder: Path = pipeline.folder
    text = Path(config).read_text().replace(f'token = "{token}"', "")
    (folder / "tokenless.toml").write_text(text)
    env = {"PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    refused = heartwatch("status", "-c", "tokenless.toml", cwd=folder, env=env)
    assert refused.returncode == 1, refused
    assert "pass --token or set HEARTWATCH_TOKEN" in refused.stderr
    # The service's own words (hb.status()), as it wrote them: brackets are not markup.
    status = b'{"type": "heartbeat", "service": "job", "status": "42 items [red]x"}\n'
    send_tcp(daemon.tcp_address, status)
    daemon.wait_service("job", lambda s: s["status"] == "42 items [red]x", "its status text")
    allowed = heartwatch("status", "-c", "tokenless.toml", "--token", token, cwd=folder, env=env)
    assert allowed.returncode == 0, allowed
    header, row = allowed.stdout.splitlines()
    assert row[header.index("STATUS") :].startswith("42 items [red]x"), allowed.stdout
    live = heartwatch("top", "-c", "tokenless.toml", "--token", token, cwd=folder, env=env)
    assert live.returncode == 0, live
    assert "42 items [red]x" in live.stdout, live.stdout  # rich's markup off there too


def test_cli_reload_prints_the_difference_and_every_problem(pipeline: Pipeline) -> None:
    """``reload`` after adding a service says ``added: extra``; a broken file exits 2 with
    each problem at its key path and nothing changed; ``clear`` empties a service's output."""
    services: list[dict[str, Any]] = [{"name": "job", "command": worker_command()}]
    config = pipeline.write_config(services)
    daemon = pipeline.start_daemon()
    pid = daemon.wait_running("job")["pid"]

    pipeline.write_config([*services, {"name": "extra", "command": worker_command()}])
    reloaded = heartwatch("reload", "-c", config, cwd=pipeline.folder)
    assert reloaded.returncode == 0, reloaded
    assert "added: extra" in reloaded.stdout.splitlines()
    assert "unchanged: job" in reloaded.stdout.splitlines()
    daemon.wait_running("extra")

    Path(config).write_text(Path(config).read_text() + 'restart = "sometimes"\n')
    refused = heartwatch("reload", "-c", config, cwd=pipeline.folder)
    assert refused.returncode == 2, refused
    assert "  service[1] (extra).restart: " in refused.stderr, refused.stderr
    assert daemon.service("job")["pid"] == pid

    log = pipeline.log_dir / "job.log"
    assert log.stat().st_size > 0
    cleared = heartwatch("clear", "job", "-c", config, cwd=pipeline.folder)
    assert cleared.returncode == 0, cleared
    assert cleared.stdout.startswith("job: output cleared ("), cleared.stdout  # (N B)
    assert log.stat().st_size == 0
