"""The probe driver's checks against real things: commands, an HTTP server and a TCP listener
on 127.0.0.1 port 0. What the results say, and that a check killed at its timeout or
cancelled leaves no process behind."""

from __future__ import annotations

import asyncio
import http.server
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from heartwatch.core.probes import OUTPUT_LIMIT, ExecCheck, HttpCheck, ProbeSpec, RunProbe, TcpCheck
from heartwatch.daemon.identity import resolve_run_as
from heartwatch.daemon.probes import ProbeRunner, run_exec, run_http, run_tcp

ENV = dict(os.environ)


def exec_check(*argv: str, timeout: float = 5.0, expect: str | None = None) -> tuple[bool, str]:
    pattern = None if expect is None else re.compile(expect, re.MULTILINE)
    return asyncio.run(run_exec(argv, timeout, Path.cwd(), ENV, pattern))


def test_exec_passes_on_exit_0_and_fails_with_its_output_as_the_reason() -> None:
    """Exit 0 passes; any other end fails, its output (stdout and stderr) as one line."""
    assert exec_check("sh", "-c", "echo device") == (True, "exited 0: device")
    assert exec_check("sh", "-c", "echo 'error: device offline' >&2; exit 1") == (
        False,
        "exited 1: error: device offline",
    )
    assert exec_check("sh", "-c", "kill -9 $$") == (False, "killed by SIGKILL")
    passed, result = exec_check("no-such-probe-program")
    assert not passed and result.startswith("cannot run no-such-probe-program: ")


def test_exec_expect_is_searched_line_by_line() -> None:
    """``expect`` must be found in the output; ``^``/``$`` match at each line (CRLF too)."""
    assert exec_check("sh", "-c", r"printf 'x\r\n1\r\n'", expect="^1$")[0]
    passed, result = exec_check("sh", "-c", "echo 0", expect="^1$")
    assert not passed and result == "exited 0, its output not matching `^1$`: 0"


def test_exec_keeps_the_first_4_kib_and_drains_the_rest() -> None:
    """A chatty check never blocks on its pipe; its reason holds the first 4 KiB only."""
    passed, result = exec_check(sys.executable, "-c", "print('y' * 1_000_000)")
    assert passed
    assert len(result) == len("exited 0: ") + OUTPUT_LIMIT


def group_of(pid_file: Path) -> list[int]:
    return [int(pid) for pid in pid_file.read_text().split()]


def gone(pids: list[int]) -> bool:
    """Every one of ``pids`` ends within a few seconds (a SIGKILL takes effect at once, but
    not in the same instant)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.02)
    return False


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_exec_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    """A hung check is killed at its timeout, its children with it."""
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $$ $! > {pids}; wait"
    passed, result = exec_check("sh", "-c", script, timeout=0.5)
    assert (passed, result) == (False, "timed out after 0.5 s")
    assert gone(group_of(pids))


def test_a_cancelled_check_kills_its_group_and_reports_nothing(tmp_path: Path) -> None:
    """A check whose service's run is over is ended at once: no process, no result."""
    pids = tmp_path / "pids"
    results: list[tuple[RunProbe, bool, str]] = []
    spec = ProbeSpec(
        "liveness", ExecCheck(("sh", "-c", f"sleep 60 & echo $$ $! > {pids}; wait")), "x"
    )

    async def scenario() -> None:
        runner = ProbeRunner(lambda *result: results.append(result))
        runner.start(RunProbe("frida", "liveness", 1), spec, Path.cwd(), ENV)
        for _ in range(200):
            if pids.exists() and len(group_of(pids)) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(runner) == 1
        runner.cancel_unless(lambda service, run: run != 1)
        assert len(runner) == 0
        await runner.close()

    asyncio.run(scenario())
    assert results == []
    assert gone(group_of(pids))


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = int(self.path.strip("/") or 200)
        body = b"ok: booted\n" if status == 200 else b"not yet"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def http_check(url: str, status: int | None = None, expect: str | None = None) -> tuple[bool, str]:
    pattern = None if expect is None else re.compile(expect, re.MULTILINE)

    async def run() -> tuple[bool, str]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as threads:
            return await run_http(HttpCheck(url, status), 5.0, pattern, threads)

    return asyncio.run(run())


def test_http_passes_on_2xx_3xx_or_the_status_asked_for(http_url: str) -> None:
    """Any 2xx/3xx passes by default; ``status`` asks for one; ``expect`` reads the body."""
    assert http_check(f"{http_url}/200") == (True, "HTTP 200")
    assert http_check(f"{http_url}/503") == (False, "HTTP 503, not 2xx or 3xx: not yet")
    assert http_check(f"{http_url}/204", status=200)[1].startswith("HTTP 204, not 200")
    assert http_check(f"{http_url}/503", status=503) == (True, "HTTP 503")
    assert http_check(f"{http_url}/200", expect="^ok: booted$")[0]
    assert http_check(f"{http_url}/200", expect="ready") == (
        False,
        "HTTP 200, its body not matching `ready`: ok: booted",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_tcp_passes_on_a_connection_and_says_why_not() -> None:
    """A listener passes; a closed port fails with the OS's words."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert asyncio.run(run_tcp(TcpCheck("127.0.0.1", port), 2.0)) == (True, "connected")
    passed, result = asyncio.run(run_tcp(TcpCheck("127.0.0.1", free_port()), 2.0))
    assert not passed and result.startswith("cannot connect: "), result
    assert "refused" in result.lower()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may run a check as another user")
def test_exec_runs_as_the_service_user_and_umask() -> None:
    """A check runs as its service does (``user``, ``group``, ``umask``), never as root."""
    run_as = resolve_run_as("nobody", None)
    assert run_as is not None
    script = "echo $(id -u) $(umask)"
    passed, result = asyncio.run(
        run_exec(("sh", "-c", script), 5.0, Path("/"), ENV, None, (run_as, 0o027))
    )
    assert (passed, result) == (True, f"exited 0: {run_as.uid} 0027")
