"""The probe driver's checks against real things: commands, an HTTP server and a TCP listener
on 127.0.0.1 port 0. What the results say, and that a check killed at its timeout or
cancelled leaves no process behind."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from heartwatch.core.probes import OUTPUT_LIMIT, ExecCheck, HttpCheck, ProbeSpec, RunProbe, TcpCheck
from heartwatch.daemon.identity import resolve_run_as
from heartwatch.daemon.probes import ProbeRunner, run_exec, run_tcp

ENV = dict(os.environ)


def run_checks(specs: dict[str, ProbeSpec], budget: float = 20.0) -> dict[str, tuple[bool, str]]:
    """Run one check of each spec at once (keyed by service name) through a ``ProbeRunner``;
    their results, once all are in (the runner then closed)."""
    results: dict[str, tuple[bool, str]] = {}

    def receive(action: RunProbe, passed: bool, result: str) -> None:
        results[action.service] = (passed, result)

    async def scenario() -> None:
        runner = ProbeRunner(receive)
        for service, spec in specs.items():
            runner.start(RunProbe(service, spec.role, 1), spec, Path.cwd(), ENV)
        deadline = time.monotonic() + budget
        while len(results) < len(specs) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await runner.close()

    asyncio.run(scenario())
    return results


def check_once(
    check: ExecCheck | HttpCheck | TcpCheck, timeout: float = 5.0, expect: str | None = None
) -> tuple[bool, str]:
    spec = ProbeSpec("readiness", check, "x", timeout=timeout, expect=expect)
    return run_checks({"s": spec})["s"]


def exec_check(*argv: str, timeout: float = 5.0, expect: str | None = None) -> tuple[bool, str]:
    return check_once(ExecCheck(argv), timeout, expect)


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


def test_exec_output_in_a_reason_carries_no_terminal_controls() -> None:
    """A check's words reach the journal, alerts and the CSV export: a title-setting OSC, a
    screen clear, colours and a bell are not in them (review of issue 13)."""
    passed, result = exec_check(
        "sh", "-c", r"printf '\033]0;PWNED\007\033[2J\033[31merror: offline\033[0m\a'; exit 1"
    )
    assert not passed and result == "exited 1: error: offline"


def test_exec_expect_is_searched_line_by_line() -> None:
    """``expect`` must be found in the output; ``^``/``$`` match at each line (CRLF too)."""
    assert exec_check("sh", "-c", r"printf 'x\r\n1\r\n'", expect="^1$")[0]
    passed, result = exec_check("sh", "-c", "echo 0", expect="^1$")
    assert not passed and result == "exited 0, its output not matching `^1$`: 0"


def test_exec_keeps_4_kib_of_output() -> None:
    """A check's output up to 4 KiB is its result's words."""
    passed, result = exec_check(sys.executable, "-c", f"print('y' * {OUTPUT_LIMIT - 1})")
    assert passed
    assert result == "exited 0: " + "y" * (OUTPUT_LIMIT - 1)


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


# Exponential backtracking on a run of a's that does not end the line, for ``re`` and
# ``regex`` alike (``regex`` sees through ``^(a+)+$``, the review's case).
CATASTROPHIC = "^(a|aa)+$"
NOT_QUITE = "a" * 40 + "!"  # re takes ~10 s to give up on it
REDIRECTS = {"/loop": "/loop", "/a": "/b", "/b": "/a", "/there": "/200"}
CREDENTIALS = "Basic " + base64.b64encode(b"probe:s3cret").decode()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path in REDIRECTS:
            self.send_response(302)
            self.send_header("Location", REDIRECTS[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/secret":
            granted = self.headers.get("Authorization") == CREDENTIALS
            self._answer(200 if granted else 401, b"ok: booted\n" if granted else b"who?")
            return
        if self.path == "/slow-to-match":
            self._answer(200, NOT_QUITE.encode())
            return
        status = int(self.path.strip("/") or 200)
        self._answer(status, b"ok: booted\n" if status == 200 else b"not yet")

    def _answer(self, status: int, body: bytes) -> None:
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
    return check_once(HttpCheck(url, status), expect=expect)


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


class _Drip(socketserver.BaseRequestHandler):
    """An HTTP server that answers one byte every half second (each read well within any
    socket timeout, the whole answer never)."""

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" * 10:
                self.request.sendall(bytes([byte]))
                time.sleep(0.5)


@pytest.fixture
def drip_url() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Drip)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_http_server_holds_neither_other_checks_nor_the_exit(
    drip_url: str, http_url: str
) -> None:
    """The timeout bounds the whole request, not each read: four checks of a server that
    drips its answer time out at 1 s while a fifth, of a healthy server, passes meanwhile; and
    nothing of them outlives the runner (no thread left to join at the daemon's exit)."""
    specs = {
        f"bad{n}": ProbeSpec("readiness", HttpCheck(drip_url), "x", timeout=1.0) for n in range(4)
    }
    specs["good"] = ProbeSpec("liveness", HttpCheck(f"{http_url}/200"), "x", timeout=1.0)
    results = run_checks(specs)
    assert results["good"] == (True, "HTTP 200")
    for n in range(4):
        assert results[f"bad{n}"] == (False, "timed out after 1 s")
    joined_at_exit = [
        t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()
    ]
    assert joined_at_exit == []


def test_a_backtracking_expect_is_a_failed_check_not_a_frozen_daemon(http_url: str) -> None:
    """``expect`` has a time limit: a pattern that backtracks for ever on the output (exec) or
    body (http) fails the check saying so, instead of holding the loop for seconds."""
    passed, result = exec_check("printf", NOT_QUITE, expect=CATASTROPHIC)
    assert not passed
    assert result.startswith(f"exited 0, but matching its output against `{CATASTROPHIC}` took")
    passed, result = http_check(f"{http_url}/slow-to-match", expect=CATASTROPHIC)
    assert not passed
    assert result.startswith(f"HTTP 200, but matching its body against `{CATASTROPHIC}` took")
    assert exec_check("printf", "aaaa", expect=CATASTROPHIC) == (True, "exited 0: aaaa")


def escaping(pid_file: Path) -> str:
    """A check that starts a process in a session of its own (its pid in ``pid_file``)."""
    return f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 60' & sleep 60"


def test_a_timed_out_check_leaves_nothing_behind_even_out_of_its_group(tmp_path: Path) -> None:
    """What a check started in a session of its own (``setsid``) is killed with the check at
    its timeout, as the rest of its group is."""
    pid_file = tmp_path / "pid"
    result = exec_check("sh", "-c", escaping(pid_file), timeout=1.0)
    assert result == (False, "timed out after 1 s")
    assert gone(group_of(pid_file))


def test_a_cancelled_check_leaves_nothing_behind_even_out_of_its_group(tmp_path: Path) -> None:
    """The same when the check is ended because its service's run is over."""
    pid_file = tmp_path / "pid"
    spec = ProbeSpec("liveness", ExecCheck(("sh", "-c", escaping(pid_file))), "x")

    async def scenario() -> None:
        runner = ProbeRunner(lambda *result: None)
        runner.start(RunProbe("frida", "liveness", 1), spec, Path.cwd(), ENV)
        for _ in range(300):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            await asyncio.sleep(0.01)
        runner.cancel_unless(lambda service, run: False)
        await runner.close()

    asyncio.run(scenario())
    assert gone(group_of(pid_file))


def test_a_redirect_loop_fails_and_a_redirect_is_followed(http_url: str) -> None:
    """Redirects are followed (a bounded number); one that comes back to a URL already asked
    is a failure naming the loop, not the pass its 302 would be."""
    assert http_check(f"{http_url}/there") == (True, "HTTP 200")
    passed, result = http_check(f"{http_url}/loop")
    assert not passed and result.startswith("HTTP 302: a redirect loop"), result
    passed, result = http_check(f"{http_url}/a")
    assert not passed and result.startswith("HTTP 302: a redirect loop"), result


def test_credentials_in_the_url_are_sent_as_basic_auth(http_url: str) -> None:
    """``http://user:password@host/`` asks with basic auth (the URL's host is the host)."""
    authority = http_url.removeprefix("http://")
    assert http_check(f"http://probe:s3cret@{authority}/secret") == (True, "HTTP 200")
    assert http_check(f"http://probe:wrong@{authority}/secret") == (
        False,
        "HTTP 401, not 2xx or 3xx: who?",
    )


def test_output_past_the_kept_4_kib_is_not_read() -> None:
    """A check that floods its output is not drained for ever: past the 4 KiB kept the pipe
    is closed, the writer gets EPIPE, and the result says why it ended."""
    passed, result = exec_check("yes", timeout=10.0)
    assert not passed
    assert result.startswith("killed by SIGPIPE after 4 KiB of output (the rest is not read): y")
    assert len(result) < OUTPUT_LIMIT + 100


def test_what_is_not_an_http_answer_fails_in_plain_words() -> None:
    """Something else on the port (a greeting that is not a status line): said plainly,
    without the bytes as a Python repr; TLS asked of it: the TLS library's words, plainly."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def greet() -> None:
            for _ in range(3):
                connection, _ = listener.accept()
                with connection:
                    connection.recv(1024)
                    connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

        threading.Thread(target=greet, daemon=True).start()
        assert http_check(f"http://127.0.0.1:{port}/") == (
            False,
            "not an HTTP answer: illegal status line",
        )
        assert http_check(f"https://127.0.0.1:{port}/") == (
            False,
            "cannot connect: TLS: wrong version number",
        )
        passed, result = http_check(f"http://127.0.0.1:{port}/a b")  # refused by h11
        assert not passed and result.startswith(f"cannot ask for http://127.0.0.1:{port}/a b: ")


def test_a_hung_name_lookup_holds_neither_the_check_nor_the_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A resolver that does not answer (a name lookup is a blocking call, in a thread): the
    check times out at its timeout and the loop ends without waiting for the lookup (asyncio's
    own executor threads are joined when ``asyncio.run`` ends, the daemon's exit)."""
    real = socket.getaddrinfo

    def hung(host: object, *args: object, **kwargs: object) -> object:
        if host == "hung.example":
            time.sleep(6.0)
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", hung)
    started = time.monotonic()
    assert check_once(HttpCheck("http://hung.example/"), timeout=0.5) == (
        False,
        "timed out after 0.5 s",
    )
    assert time.monotonic() - started < 4.0  # the lookup takes 6 s
    started = time.monotonic()
    assert check_once(TcpCheck("hung.example", 80), timeout=0.5) == (
        False,
        "timed out after 0.5 s",
    )
    assert time.monotonic() - started < 4.0
