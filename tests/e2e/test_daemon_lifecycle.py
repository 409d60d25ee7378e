"""The daemon's own life: signals it may be sent, and a start-up that fails half-way."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.support import (
    Daemon,
    Pipeline,
    alive,
    capture,
    hold_still,
    scaled,
    wait_until,
    worker_command,
)

pytestmark = pytest.mark.e2e


def test_signals_that_do_not_stop_it_are_said_and_ignored_pwr_stops(pipeline: Pipeline) -> None:
    """The user, timer and real-time signals, SIGPIPE and SIGXFSZ leave the daemon and its
    children running (SIGHUP reloads: tests/e2e/test_reload.py); SIGPWR stops the children
    first, then the daemon."""
    pipeline.write_config(
        [
            {"name": "base", "command": worker_command()},
            {"name": "top", "command": worker_command(), "requires": ["base"]},
        ]
    )
    daemon = pipeline.start_daemon()
    workers = [capture(daemon.wait_running(name)["pid"]) for name in ("base", "top")]

    ignored = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGPROF)
    for sig in (*ignored, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGRTMIN + 3):
        daemon.popen.send_signal(sig)
    for name in (*(s.name for s in ignored), "SIGRTMIN+3"):
        wait_until(lambda name=name: f"received {name}: ignored" in daemon.log_text(), name)
    # A marker: a second SIGUSR1, sent after all of them, is handled too. Whatever the others
    # would have done, they had their turn (SIGPIPE and SIGXFSZ leave no line of their own).
    daemon.popen.send_signal(signal.SIGUSR1)
    wait_until(
        lambda: daemon.log_text().count("received SIGUSR1: ignored") == 2, "the second SIGUSR1"
    )
    hold_still(
        lambda: daemon.popen.poll() is None and all(alive(w) for w in workers),
        "the daemon and both services to keep running",
        period=1.0,
    )
    assert [s["state"] for s in daemon.services()] == ["running", "running"]

    daemon.popen.send_signal(signal.SIGPWR)  # a UPS daemon's "power is failing"
    assert daemon.popen.wait(scaled(15)) == 0
    assert not any(alive(w) for w in workers)
    assert pipeline.marked_processes() == []
    assert "received SIGPWR: stopping" in daemon.log_text()


# Signals whose default action does not end a process, or that cannot be handled, or that are
# the process's own faults (a handler would return to the faulting instruction).
_NOT_ENDING = {"SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH", "SIGTSTP", "SIGTTIN", "SIGTTOU"}
_UNHANDLED = {"SIGKILL", "SIGSTOP"}
_FAULTS = {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGIOT", "SIGSYS", "SIGTRAP"}
_PYTHON_IGNORES = {"SIGPIPE", "SIGXFSZ"}


def test_every_signal_that_would_end_the_daemon_is_handled() -> None:
    """No signal whose default action ends a process is left to end the daemon silently."""
    from heartwatch.assembly.daemon import _IGNORED_SIGNALS, _RELOAD_SIGNALS, _STOPPING_SIGNALS

    handled = {*_STOPPING_SIGNALS, *_RELOAD_SIGNALS, *_IGNORED_SIGNALS}
    exempt = _NOT_ENDING | _UNHANDLED | _FAULTS | _PYTHON_IGNORES
    left = [s.name for s in signal.Signals if s.name not in exempt and s not in handled]
    assert left == []
    assert set(range(signal.SIGRTMIN, signal.SIGRTMAX + 1)) <= handled


def test_sigquit_stops_the_services_first(pipeline: Pipeline) -> None:
    pipeline.write_config([{"name": "base", "command": worker_command()}])
    daemon = pipeline.start_daemon()
    worker = capture(daemon.wait_running("base")["pid"])
    daemon.popen.send_signal(signal.SIGQUIT)
    assert daemon.popen.wait(scaled(15)) == 0
    assert not alive(worker)
    assert "received SIGQUIT: stopping" in daemon.log_text()


# Run in a process of its own: its open descriptors and threads are counted before and after a
# start-up that fails at the HTTP listener, after the heartbeat listeners, the notify socket,
# the history and the alerter were opened.
_FAILED_START = """
import asyncio, os, sys, threading
from pathlib import Path
from heartwatch.config import load_config
from heartwatch.assembly.daemon import run_daemon

def descriptors():
    return sorted(os.listdir("/proc/self/fd"))

def threads():  # the loop's default executor (asyncio_N) is asyncio.run's to end
    names = (t.name for t in threading.enumerate() if not t.name.startswith("asyncio_"))
    return ",".join(sorted(names))

config = load_config(Path(sys.argv[1]))
async def main():
    before = descriptors(), threads()
    for attempt in range(2):  # twice: the lock was released, nothing accumulates
        try:
            await run_daemon(config)
        except OSError as error:  # ListenerError is one
            print("error:", error)
    await asyncio.sleep(0.1)
    after = descriptors(), threads()
    print("fds", len(before[0]), len(after[0]))
    print("threads", before[1], after[1])
asyncio.run(main())
"""


def test_a_start_that_fails_names_the_listener_and_leaks_nothing(tmp_path: Path) -> None:
    """HTTP port taken: the error names the listener and its address, every resource opened
    before it is closed, and the state lock is released (a second try fails the same way)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    (tmp_path / "heartwatch.toml").write_text(
        f"""
[server]
tcp = "127.0.0.1:0"
http = "127.0.0.1:{port}"
[daemon]
state_dir = "state"
log_dir = "logs"
[[service]]
name = "worker"
command = "sleep 60"
"""
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", _FAILED_START, str(tmp_path / "heartwatch.toml")],
            capture_output=True,
            text=True,
            timeout=scaled(60),
            check=False,
        )
    finally:
        taken.close()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = f"error: http 127.0.0.1:{port}: address already in use"
    assert lines[:2] == [expected, expected], result.stdout + result.stderr
    fds_before, fds_after = lines[2].split()[1:]
    assert fds_before == fds_after, result.stdout
    threads_before, threads_after = lines[3].split()[1:]
    assert threads_before == threads_after, result.stdout
    assert "Traceback" not in result.stderr


def test_heartwatch_run_says_which_listener_failed(pipeline: Pipeline) -> None:
    """As a person sees it: ``heartwatch run`` exits 1 with one line naming the listener."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    pipeline.write_config(
        [{"name": "worker", "command": worker_command()}], server={"tcp": f"127.0.0.1:{port}"}
    )
    try:
        result = subprocess.run(
            [sys.executable, "-m", "heartwatch", "run", "-c", str(pipeline.config_path)],
            cwd=pipeline.folder,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=scaled(60),
            check=False,
        )
    finally:
        taken.close()
    assert result.returncode == 1, result
    assert f"heartbeats 127.0.0.1:{port}: address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert pipeline.marked_processes() == []  # no service was started


def _signal_masks(pid: int) -> dict[str, int]:
    """A process's ignored and caught signals, as /proc says them (bit n-1: signal n)."""
    masks = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("SigIgn", "SigCgt"):
            masks[key] = int(value.strip(), 16)
    return masks


def test_a_sighup_during_start_up_is_ignored_and_services_get_the_default(
    pipeline: Pipeline,
) -> None:
    """SIGHUP ends a process by default, and the daemon's handler (a reload) is installed
    only once it listens: until then ``heartwatch run`` ignores it, from its first lines
    (not after the imports, the history and the listeners). Its services, started after the
    handler is in, get SIGHUP's default action, not the ignoring."""
    pipeline.write_config([{"name": "worker", "command": worker_command()}])
    hup = 1 << (signal.SIGHUP - 1)
    stderr = (pipeline.folder / "daemon-hup.stderr").open("wb")
    popen = subprocess.Popen(
        [sys.executable, "-m", "heartwatch", "run", "-c", str(pipeline.config_path)],
        stdin=subprocess.DEVNULL,
        stdout=stderr,
        stderr=stderr,
        cwd=pipeline.folder,
    )
    daemon = Daemon(pipeline, popen, stderr)
    pipeline.daemons.append(daemon)

    def masks() -> dict[str, int] | None:
        if popen.poll() is not None:
            raise AssertionError(f"the daemon exited with {popen.returncode}")
        try:
            found = _signal_masks(popen.pid)
        except OSError:
            return None
        return found if (found["SigIgn"] | found["SigCgt"]) & hup else None

    first = wait_until(masks, "SIGHUP to be ignored or handled", interval=0.001)
    assert first["SigIgn"] & hup, "SIGHUP was not ignored before its handler was installed"
    popen.send_signal(signal.SIGHUP)  # before the handler: it must not end the daemon
    daemon.wait_listening()
    worker = daemon.wait_running("worker")
    assert popen.poll() is None
    assert not _signal_masks(worker["pid"])["SigIgn"] & hup  # the service: SIGHUP's default
    daemon.popen.send_signal(signal.SIGHUP)  # the handler now: a reload
    wait_until(lambda: "received SIGHUP: reloading" in daemon.log_text(), "the reload")
    assert daemon.terminate() == 0
