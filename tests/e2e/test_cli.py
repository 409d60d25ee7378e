"""The ``heartwatch`` command end to end, as a person types it."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from e2e.support import Pipeline, duration, heartwatch, worker_command

pytestmark = pytest.mark.e2e


def problem_paths(stderr: str) -> set[str]:
    """The key paths that start the indented problem lines of ``heartwatch check``."""
    return {
        text.strip().partition(": ")[0]
        for text in stderr.splitlines()
        if text.startswith("  ") and ": " in text
    }


BAD_CONFIG = """\
[server]
tcp = "127.0.0.1:99999"

[[service]]
name = "emulator"
command = "emulator -avd Pixel_5"

[[service]]
name = "collector"
command = "python collector.py"
heartbeat_timeout = "soon"
restart = "sometimes"
"""


def test_cli_check_reports_every_problem_with_its_key_path(tmp_path: Path) -> None:
    """``check`` on a bad file exits 2 and names each problem by its key path."""
    (tmp_path / "bad.toml").write_text(BAD_CONFIG)
    result = heartwatch("check", "-c", "bad.toml", cwd=tmp_path)
    assert result.returncode == 2, result
    assert problem_paths(result.stderr) == {
        "server.tcp",
        "service[1] (collector).heartbeat_timeout",
        "service[1] (collector).restart",
    }, result.stderr
    assert "3 problem(s)" in result.stderr


def test_cli_check_reports_schema_and_reference_problems_together(tmp_path: Path) -> None:
    """A bad value and a missing requirement are reported in one round, as config.py promises."""
    bad = BAD_CONFIG + 'requires = ["nope"]\n'
    (tmp_path / "bad.toml").write_text(bad)
    result = heartwatch("check", "-c", "bad.toml", cwd=tmp_path)
    assert result.returncode == 2, result
    assert problem_paths(result.stderr) == {
        "server.tcp",
        "service[1] (collector).heartbeat_timeout",
        "service[1] (collector).restart",
        "service[1] (collector).requires[0]",
    }, result.stderr


def test_cli_check_reports_a_missing_token_with_the_other_problems(tmp_path: Path) -> None:
    """A bind beyond loopback without a token is one more problem of the same round, named by
    its key, beside a typo and a broken service (it used to wait until they were fixed)."""
    bad = BAD_CONFIG.replace("[server]\n", '[server]\nhttp = "0.0.0.0:8765"\nstat_dir = 1\n')
    (tmp_path / "bad.toml").write_text(bad)
    result = heartwatch("check", "-c", "bad.toml", cwd=tmp_path)
    assert result.returncode == 2, result
    assert problem_paths(result.stderr) == {
        "server.tcp",
        "server.stat_dir",
        "server.token",
        "service[1] (collector).heartbeat_timeout",
        "service[1] (collector).restart",
    }, result.stderr
    assert "server.stat_dir: unknown key `stat_dir`" in result.stderr
    assert "server.token: required when server.http listens on 0.0.0.0" in result.stderr


def test_cli_check_warns_about_commands_that_cannot_start(tmp_path: Path) -> None:
    """A command not on PATH and a missing cwd are warnings (exit 0: the daemon may run with
    another PATH); ``--strict`` makes them fail; the daemon's own check is unchanged."""
    (tmp_path / "warn.toml").write_text(
        '[[service]]\nname = "collector"\ncommand = "nonexist-hw-7f3 --x"\n'
        '[[service]]\nname = "app"\ncommand = "sh -c true"\ncwd = "/nonexistent"\n'
    )
    result = heartwatch("check", "-c", "warn.toml", cwd=tmp_path)
    assert result.returncode == 0, result
    assert result.stdout.startswith("warn.toml: ok, 2 service(s)"), result
    assert "warn.toml: 2 warning(s)" in result.stderr, result.stderr
    assert problem_paths(result.stderr) == {
        "service[0] (collector).command",
        "service[1] (app).cwd",
    }, result.stderr
    assert "executable `nonexist-hw-7f3` not found on PATH" in result.stderr
    assert "folder /nonexistent does not exist" in result.stderr
    strict = heartwatch("check", "--strict", "-c", "warn.toml", cwd=tmp_path)
    assert strict.returncode == 2, strict


def test_cli_check_refuses_an_empty_file(tmp_path: Path) -> None:
    """A file holding only comments runs nothing: an error, not "ok, 0 service(s)"."""
    (tmp_path / "empty.toml").write_text("# nothing here yet\n")
    result = heartwatch("check", "-c", "empty.toml", cwd=tmp_path)
    assert result.returncode == 2, result
    assert "the file is empty: there is nothing to run" in result.stderr, result.stderr


def test_cli_init_writes_a_config_that_check_accepts(tmp_path: Path) -> None:
    """``init`` writes a starter file that ``check`` accepts, and will not overwrite it."""
    result = heartwatch("init", "sub.toml", cwd=tmp_path)
    assert result.returncode == 0, result
    assert (tmp_path / "sub.toml").is_file()
    checked = heartwatch("check", "-c", "sub.toml", cwd=tmp_path)
    assert checked.returncode == 0, checked
    assert "ok" in checked.stdout
    again = heartwatch("init", "sub.toml", cwd=tmp_path)
    assert again.returncode == 1, again


def test_cli_status_and_restart_talk_to_the_running_daemon(pipeline: Pipeline) -> None:
    """``status`` (table and JSON) lists every service; ``restart`` gives the service a new pid."""
    config = pipeline.write_config(
        [
            {"name": "emulator", "command": worker_command(), "ready": duration(0.2)},
            {
                "name": "collector",
                "command": worker_command("--beat", "0.1"),
                "requires": ["emulator"],
                "heartbeat_timeout": duration(5),
            },
        ]
    )
    daemon = pipeline.start_daemon()
    old = daemon.wait_running("collector")["pid"]
    emulator = daemon.wait_running("emulator")["pid"]

    table = heartwatch("status", "-c", config, cwd=pipeline.folder)
    assert table.returncode == 0, table
    rows = {text.split()[0]: text.split()[1:3] for text in table.stdout.splitlines() if text}
    assert rows["emulator"] == ["running", str(emulator)]
    assert rows["collector"] == ["running", str(old)]

    as_json = heartwatch("status", "-c", config, "--json", cwd=pipeline.folder)
    assert as_json.returncode == 0, as_json
    services = json.loads(as_json.stdout)
    assert [s["name"] for s in services] == ["emulator", "collector"]
    assert [s["pid"] for s in services] == [emulator, old]

    restarted = heartwatch("restart", "collector", "-c", config, cwd=pipeline.folder)
    assert restarted.returncode == 0, restarted
    assert restarted.stdout.startswith("collector: ")
    daemon.wait_service(
        "collector",
        lambda s: s["state"] == "running" and s["pid"] not in (None, old),
        "running with a new pid",
    )
    assert daemon.service("emulator")["pid"] == emulator  # a restart spares what it requires

    unknown = heartwatch("restart", "nope", "-c", config, cwd=pipeline.folder)
    assert unknown.returncode == 1, unknown
    assert "no service 'nope'" in unknown.stderr


def test_cli_status_shows_a_fail_ping_reason_with_brackets(pipeline: Pipeline) -> None:
    """``curl --data-binary '[/bold] broken' …/ping/backup/fail`` then ``status``: the reason is
    printed as the job wrote it (it used to crash the table with a rich MarkupError)."""
    config = pipeline.write_config(
        [{"name": "backup", "heartbeat_timeout": duration(60), "autorestart": "never"}]
    )
    daemon = pipeline.start_daemon()
    request = urllib.request.Request(
        daemon.http_url + "/ping/backup/fail", data=b"[/bold] broken [red]x", method="POST"
    )
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as answer:
        assert answer.status == 200
    daemon.wait_service("backup", lambda s: "broken" in s["reason"], "the failure reported")
    table = heartwatch("status", "-c", config, cwd=pipeline.folder)
    assert table.returncode == 3, table  # not running: supervisorctl's and LSB's 3
    assert "reported failure: [/bold] broken [red]x" in table.stdout, table.stdout
