"""Helpers for the end-to-end tests: a real daemon in a subprocess, its workers, bounded waits.

Time: every timeout here (and every duration written into a test's config) is multiplied by
``HEARTWATCH_TEST_TIME_SCALE`` (default 1.0), so a slow machine can run the suite unchanged.
Cleanup: a ``Pipeline`` remembers every daemon it started; ``close`` ends them and then any
process still carrying the pipeline's token or state id in its environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import psutil

from heartwatch.daemon.statedir import STATE_ID_VARIABLE, StateDir

TIME_SCALE = float(os.environ.get("HEARTWATCH_TEST_TIME_SCALE", "1.0"))
TOKEN_VARIABLE = "HW_E2E_TOKEN"
EVENTS_VARIABLE = "HW_E2E_EVENTS"
WORKER_SOURCE = Path(__file__).with_name("worker.py")

T = TypeVar("T")

# No proxy, whatever the environment says: every request goes to a daemon on 127.0.0.1.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def scaled(seconds: float) -> float:
    """A wait bound, stretched by the time scale."""
    return seconds * TIME_SCALE


def duration(seconds: float) -> str:
    """A config duration, stretched by the time scale."""
    return f"{seconds * TIME_SCALE:g}s"


def wait_until(
    predicate: Callable[[], T | None], what: str, timeout: float = 15.0, interval: float = 0.03
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or fail after a bound."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {scaled(timeout):g} s waiting for {what}")
        time.sleep(interval)


def hold_still(predicate: Callable[[], bool], what: str, period: float) -> None:
    """Check that ``predicate`` stays true for ``period`` seconds (nothing happens)."""
    deadline = time.monotonic() + scaled(period)
    while time.monotonic() < deadline:
        assert predicate(), f"expected {what} for {scaled(period):g} s"
        time.sleep(0.05)


# -- processes -----------------------------------------------------------------------------


def alive(process: psutil.Process) -> bool:
    """Still running: not gone, not a reused pid, not a zombie waiting to be reaped."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def capture(pid: int) -> psutil.Process:
    """A handle on a live pid that will not be fooled by the pid's later reuse."""
    return psutil.Process(pid)


def processes_with_env(variable: str, values: Iterable[str]) -> list[psutil.Process]:
    """Live processes whose environment sets ``variable`` to one of ``values``."""
    wanted = set(values)
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(variable) in wanted and alive(process):
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


# -- events recorded by the workers --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """One line of the events file: ``what service pid detail``."""

    what: str
    service: str
    pid: int
    detail: str


def read_events(path: Path) -> list[WorkerEvent]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    events = []
    for line in text.splitlines():
        what, service, pid, detail = line.split(" ", 3)
        events.append(WorkerEvent(what, service, int(pid), detail))
    return events


# -- configuration -------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def worker_command(*args: str) -> list[str]:
    """The ``command`` of a service running the test worker (copied next to the config)."""
    return [sys.executable, "worker.py", *args]


# -- the daemon ----------------------------------------------------------------------------


class Daemon:
    """One ``heartwatch run`` subprocess, and what it says about itself."""

    def __init__(
        self, pipeline: Pipeline, popen: subprocess.Popen[bytes], stderr: IO[bytes]
    ) -> None:
        self.pipeline = pipeline
        self.popen = popen
        self._stderr = stderr
        self.tcp_address: tuple[str, int] = ("", 0)
        self.http_url = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_listening(self) -> None:
        """Wait for ``daemon.json`` written by *this* daemon (a killed one leaves its own)."""

        def info() -> dict[str, Any] | None:
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.popen.returncode}:\n{self.stderr_text()}"
                )
            with contextlib.suppress(OSError, ValueError):
                data = json.loads((self.pipeline.state_dir / "daemon.json").read_text())
                if isinstance(data, dict) and data.get("pid") == self.pid:
                    return data
            return None

        data = wait_until(info, "the daemon to write daemon.json")
        host, _, port = str(data["tcp"]).rpartition(":")
        self.tcp_address = (host.strip("[]"), int(port))
        self.http_url = f"http://{data['http']}"

    # -- the API ---------------------------------------------------------------------------

    def request(self, method: str, path: str, token: str | None = None) -> Any:
        """JSON from the API; with ``token``, else the config's ``[server] token`` if any."""
        request = urllib.request.Request(self.http_url + path, method=method)
        token = token or self.pipeline.api_token
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        with _HTTP.open(request, timeout=scaled(10.0)) as response:
            return json.load(response)

    def raw(
        self, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Any request; its status, headers and body, whatever the status."""
        request = urllib.request.Request(self.http_url + path, method=method)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with _HTTP.open(request, timeout=scaled(10.0)) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def post_json(self, path: str, body: Any = None) -> tuple[int, Any]:
        """POST ``body`` as JSON (or nothing): the status and the JSON answer, whatever the
        status (with the config's token, if any)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.http_url + path, data=data, method="POST")
        request.add_header("Content-Type", "application/json")
        if self.pipeline.api_token is not None:
            request.add_header("Authorization", f"Bearer {self.pipeline.api_token}")
        try:
            with _HTTP.open(request, timeout=scaled(15.0)) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def services(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/api/v1/services")
        return result

    def service(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/api/v1/services/{name}")
        return result

    def control(self, name: str, verb: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/api/v1/services/{name}/{verb}")
        return result

    def wait_service(
        self,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        """Poll the API until ``name``'s status satisfies ``predicate``; return that status."""

        def check() -> dict[str, Any] | None:
            status = self.service(name)
            return status if predicate(status) else None

        try:
            return wait_until(check, f"{name}: {what}", timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}; last status: {self.service(name)}") from None

    def wait_running(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        return self.wait_service(
            name, lambda s: s["state"] == "running" and s["pid"] is not None, "running", timeout
        )

    # -- lifetime --------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return (self.pipeline.log_dir / "heartwatch.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_text(self) -> str:
        return Path(self._stderr.name).read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM; return the exit code (fails, after a SIGKILL, if it takes too long)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"daemon did not stop within {scaled(timeout):g} s") from None

    def kill(self) -> None:
        """SIGKILL, as a crash would; its children are left running."""
        self.popen.kill()
        self.popen.wait()

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(scaled(10.0))
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._stderr.close()


class Pipeline:
    """A folder holding a config, the worker script and an events file; and its daemons."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config_path = folder / "heartwatch.toml"
        self.events_path = folder / "events.log"
        self.state_dir = folder / "state"
        self.log_dir = folder / "logs"
        self.token = uuid.uuid4().hex
        self.api_token: str | None = None  # [server] token of the config written last
        self.daemons: list[Daemon] = []
        shutil.copy(WORKER_SOURCE, folder / "worker.py")

    def write_config(
        self,
        services: Sequence[Mapping[str, Any]],
        server: Mapping[str, Any] | None = None,
        daemon: Mapping[str, Any] | None = None,
        logs: Mapping[str, Any] | None = None,
        extra: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Path:
        """Write the config: listeners on port 0, state and logs in the folder, marked workers.

        ``logs``, if given, is written as the ``[logs]`` section (live logs: roots, buffers...);
        ``extra`` holds further sections by name (``{"notify": {...}, "history": {...}}``).
        """
        sections: dict[str, Mapping[str, Any]] = {
            "server": {"tcp": "127.0.0.1:0", "http": "127.0.0.1:0", **(server or {})},
            "daemon": {"state_dir": "state", "log_dir": "logs", **(daemon or {})},
        }
        if logs is not None:
            sections["logs"] = logs
        sections.update(extra or {})
        self.api_token = (server or {}).get("token")
        lines = []
        for title, table in sections.items():
            lines.append(f"[{title}]")
            lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
            lines.append("")
        for service in services:
            env = {
                TOKEN_VARIABLE: self.token,
                EVENTS_VARIABLE: str(self.events_path),
                **service.get("env", {}),
            }
            lines.append("[[service]]")
            lines.extend(
                f"{key} = {toml_value(value)}" for key, value in {**service, "env": env}.items()
            )
            lines.append("")
        self.config_path.write_text("\n".join(lines))
        return self.config_path

    def start_daemon(self, env: Mapping[str, str] | None = None) -> Daemon:
        """Run ``heartwatch run -c <config>`` and wait until it listens; ``env`` is added to
        its environment."""
        stderr = (self.folder / f"daemon-{len(self.daemons)}.stderr").open("wb")
        popen = subprocess.Popen(
            [sys.executable, "-m", "heartwatch", "run", "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            cwd=self.folder,
            env={**os.environ, **(env or {})},
        )
        daemon = Daemon(self, popen, stderr)
        self.daemons.append(daemon)
        daemon.wait_listening()
        return daemon

    def events(self, what: str | None = None) -> list[WorkerEvent]:
        """What the workers recorded, in order; only lines saying ``what`` if given."""
        return [e for e in read_events(self.events_path) if what is None or e.what == what]

    def wait_events(self, what: str, count: int) -> list[WorkerEvent]:
        """Wait until at least ``count`` lines say ``what``; return them all."""

        def enough() -> list[WorkerEvent] | None:
            found = self.events(what)
            return found if len(found) >= count else None

        return wait_until(enough, f"{count} {what!r} events")

    def marked_processes(self) -> list[psutil.Process]:
        """Live processes started for this pipeline (workers, grandchildren, escaped ones)."""
        found = processes_with_env(TOKEN_VARIABLE, [self.token])
        found += processes_with_env(STATE_ID_VARIABLE, [StateDir(self.state_dir).state_id])
        return list({p.pid: p for p in found}.values())

    def close(self) -> list[int]:
        """End every daemon, then every leftover process; return the leftovers' pids."""
        for daemon in self.daemons:
            daemon.close()
        leftovers = self.marked_processes()
        for process in leftovers:
            with contextlib.suppress(psutil.Error):
                process.kill()
        deadline = time.monotonic() + scaled(5.0)
        while any(alive(p) for p in leftovers) and time.monotonic() < deadline:
            time.sleep(0.02)
        return [p.pid for p in leftovers]

    def report(self) -> str:
        """What a failing test should show: each daemon's stderr, and the workers' events."""
        parts = [f"--- daemon {d.pid} stderr ---\n{d.stderr_text()}" for d in self.daemons]
        if self.events_path.exists():
            parts.append(f"--- events ---\n{self.events_path.read_text()}")
        return "\n".join(parts)


def heartwatch(
    *args: str | Path, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``heartwatch`` command as a person runs it: its exit code and what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "heartwatch", *map(str, args)],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=scaled(30),
        check=False,
        env=None if env is None else dict(env),
    )


def send_tcp(address: tuple[str, int], payload: bytes) -> None:
    """One connection, one payload, then close: the original client's framing."""
    with socket.create_connection(address, timeout=scaled(5.0)) as sock:
        sock.sendall(payload)


def send_udp(address: tuple[str, int], payload: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(payload, address)
