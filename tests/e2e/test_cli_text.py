"""What the ``heartwatch`` command prints is never parsed as markup.

Reasons come from services (a fail ping's body), names and paths from config files, messages
from the daemon: square brackets in any of them must be printed as they are, not read as rich
markup (which crashed ``status`` with a ``MarkupError``, or silently ate ``[notify]``). The
daemon is a stub HTTP server on 127.0.0.1 port 0 here, answering what the API would; the
command is the real one, in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from e2e.support import heartwatch as run_heartwatch

pytestmark = pytest.mark.e2e

MARKUP = "[/bold] broken [red]x[/red] [link=file:///etc/passwd]y :smile:"


def heartwatch(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Without the caller's environment: no colour, no token, no config path."""
    return run_heartwatch(*args, cwd=cwd, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})


def service(name: str, state: str, reason: str) -> dict[str, Any]:
    return {
        "name": name,
        "state": state,
        "pid": None,
        "restarts": 2,
        "last_heartbeat_age": 4.0,
        "data": {"poiid": {"count": 3, "last_age": 1.5}},
        "reason": reason,
    }


class StubDaemon:
    """Answers GET /api/v1/services, POST /api/v1/control/restart (200) and the rest (409),
    with MARKUP."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def answer(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self.answer(200, [service("[b]backup", "failed", MARKUP)])

            def do_POST(self) -> None:
                if self.path == "/api/v1/control/restart":
                    self.answer(200, [service("backup", "restarting", MARKUP)])
                else:
                    self.answer(409, {"code": "conflict", "message": MARKUP})

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def stub() -> Iterator[StubDaemon]:
    daemon = StubDaemon()
    daemon.thread.start()
    try:
        yield daemon
    finally:
        daemon.server.shutdown()
        daemon.server.server_close()


def test_status_prints_a_reason_with_brackets_as_it_is(stub: StubDaemon, tmp_path: Path) -> None:
    """A reason holding ``[/bold]`` used to crash ``status`` with a MarkupError."""
    result = heartwatch("status", "--url", stub.url, "-c", "absent.toml", cwd=tmp_path)
    assert result.returncode == 3, result  # the service is not running
    assert MARKUP in result.stdout, result.stdout
    assert "[b]backup" in result.stdout
    assert "😄" not in result.stdout  # no emoji codes either


def test_control_answers_and_refusals_are_printed_as_they_are(
    stub: StubDaemon, tmp_path: Path
) -> None:
    """``restart`` prints the new state's reason, and a refusal's message, literally."""
    restarted = heartwatch("restart", "backup", "--url", stub.url, cwd=tmp_path)
    assert restarted.returncode == 0, restarted
    assert restarted.stdout.strip() == f"backup: restarting ({MARKUP})"
    refused = heartwatch("stop", "backup", "--url", stub.url, cwd=tmp_path)
    assert refused.returncode == 1, refused
    assert refused.stderr.strip() == MARKUP


def test_help_texts_keep_their_section_names(tmp_path: Path) -> None:
    """``[alerts]`` and ``[logs]`` are TOML sections, not markup: --help shows them."""
    main = heartwatch("--help", cwd=tmp_path)
    assert main.returncode == 0, main
    assert "every [alerts] URL" in main.stdout, main.stdout
    for name in ("alerts-test", "notify-test"):  # the old name still works
        alerts = heartwatch(name, "--help", cwd=tmp_path)
        assert "every [alerts] URL" in alerts.stdout, alerts.stdout
        assert "[notify]" in alerts.stdout, alerts.stdout
    tail = heartwatch("tail", "--help", cwd=tmp_path)
    assert "[logs] roots" in tail.stdout, tail.stdout


def test_notify_test_lines_keep_brackets(tmp_path: Path) -> None:
    """The empty-[alerts] refusal and the per-URL verdicts name the keys literally, as the
    file names them (``[notify]``, the old name, in an older file)."""
    (tmp_path / "empty.toml").write_text('[[service]]\nname = "a"\n')
    empty = heartwatch("notify-test", "-c", "empty.toml", cwd=tmp_path)
    assert empty.returncode == 2, empty
    assert "empty.toml: [alerts] urls is empty" in empty.stderr, empty.stderr
    (tmp_path / "new.toml").write_text(
        '[alerts]\nurls = ["json://127.0.0.1:9/x"]\ntimeout = "5s"\n[[service]]\nname = "a"\n'
    )
    new = heartwatch("alerts-test", "-c", "new.toml", cwd=tmp_path)
    assert new.returncode == 1, new
    assert "alerts.urls[0] (json://…): not delivered" in new.stdout, new.stdout
    # Port 9 on loopback refuses at once: not delivered, said plainly.
    (tmp_path / "one.toml").write_text(
        '[notify]\nurls = ["json://127.0.0.1:9/x"]\ntimeout = "5s"\n[[service]]\nname = "a"\n'
    )
    one = heartwatch("notify-test", "-c", "one.toml", cwd=tmp_path)
    assert one.returncode == 1, one
    assert "notify.urls[0] (json://…): not delivered" in one.stdout, one.stdout


def test_check_names_a_file_with_brackets_literally(tmp_path: Path) -> None:
    """A config file's own name is user text too."""
    (tmp_path / "a[red]b.toml").write_text('[[service]]\nname = "a"\nbogus = 1\n')
    result = heartwatch("check", "-c", "a[red]b.toml", cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stderr.startswith("a[red]b.toml: 1 problem(s)"), result.stderr
    (tmp_path / "ok[x].toml").write_text('[[service]]\nname = "a"\n')
    ok = heartwatch("check", "-c", "ok[x].toml", cwd=tmp_path)
    assert ok.returncode == 0, ok
    assert ok.stdout.startswith("ok[x].toml: ok"), ok.stdout


def test_check_notes_the_old_name_of_alerts_without_failing(tmp_path: Path) -> None:
    """A file with ``[notify]`` still works: ``check`` says the new name, and even --strict
    passes; a file with both sections is refused, naming both."""
    (tmp_path / "old.toml").write_text(
        '[notify]\nrate_limit = 3\n[[service]]\nname = "a"\nheartbeat_timeout = "5s"\n'
    )
    old = heartwatch("check", "--strict", "-c", "old.toml", cwd=tmp_path)
    assert old.returncode == 0, old
    assert "note: [notify] is the old name of [alerts]" in old.stderr, old.stderr
    (tmp_path / "both.toml").write_text('[notify]\n[alerts]\n[[service]]\nname = "a"\n')
    both = heartwatch("check", "-c", "both.toml", cwd=tmp_path)
    assert both.returncode == 2, both
    assert "[notify] is the old name of [alerts]; the file has both" in both.stderr, both.stderr
