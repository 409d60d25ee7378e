"""A service for the end-to-end tests; copied next to each test's config and run by the daemon.

It records facts the tests check in the events file named by ``HW_E2E_EVENTS``, one line per
fact, appended with a single ``write`` so lines from many processes never mix:

    start <service> <pid> <monotonic>      it began
    spawn <service> <pid> <kind>           it started a grandchild (see ``spawn_grandchild``)
    stop <service> <pid> <monotonic>       it received SIGTERM and is exiting
    exit <service> <pid> <code>            it is exiting by itself

Run as ``worker.py grandchild [--ignore-term]`` it is a grandchild: it only sleeps.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

SERVICE = os.environ.get("HEARTWATCH_SERVICE", "?")


def record(*words: object) -> None:
    line = " ".join(str(word) for word in words) + "\n"
    fd = os.open(os.environ["HW_E2E_EVENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def on_term(signum: int, frame: FrameType | None) -> None:
    record("stop", SERVICE, os.getpid(), time.monotonic())
    os._exit(0)


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def connect() -> socket.socket | None:
    host, _, port = os.environ["HEARTWATCH_ADDR"].rpartition(":")
    try:
        return socket.create_connection((host.strip("[]"), int(port)), timeout=2.0)
    except OSError:
        return None


def beat(sock: socket.socket | None) -> socket.socket | None:
    """Send one heartbeat on a persistent connection; reconnect next time if it broke."""
    sock = sock or connect()
    if sock is None:
        return None
    line = json.dumps({"type": "heartbeat", "service": SERVICE}) + "\n"
    try:
        sock.sendall(line.encode())
    except OSError:
        sock.close()
        return None
    return sock


def spawn_grandchild(kind: str) -> None:
    """``same``: in the worker's process group; ``escape``: in a session of its own (setsid).

    With ``-ignore`` appended, it ignores SIGTERM.
    """
    argv = [sys.executable, __file__, "grandchild"]
    if kind.endswith("-ignore"):
        argv.append("--ignore-term")
    escape = kind.startswith("escape")
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=escape)
    record("spawn", SERVICE, child.pid, kind)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", nargs="?", default="worker")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--beat", type=float, default=0.0, help="heartbeat interval (0: none)")
    parser.add_argument("--grandchild", action="append", default=[], help="same|escape[-ignore]")
    parser.add_argument("--exit-now", type=int, default=None, help="exit at once with this code")
    parser.add_argument("--crash-once", type=Path, default=None, help="marker file")
    parser.add_argument("--crash-code", type=int, default=3)
    args = parser.parse_args()

    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif args.role == "grandchild":
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not inherited SIG_IGN from its parent
    else:
        signal.signal(signal.SIGTERM, on_term)
    if args.role == "grandchild":
        sleep_forever()

    record("start", SERVICE, os.getpid(), time.monotonic())
    for kind in args.grandchild:
        spawn_grandchild(kind)
    if args.exit_now is not None:
        record("exit", SERVICE, os.getpid(), args.exit_now)
        sys.exit(args.exit_now)
    if not args.beat:
        sleep_forever()

    crash = args.crash_once is not None and not args.crash_once.exists()
    sock: socket.socket | None = None
    while True:
        sock = beat(sock)
        if crash and sock is not None:
            assert args.crash_once is not None
            args.crash_once.touch()
            time.sleep(0.2)  # let the daemon take the beat in before the crash
            record("exit", SERVICE, os.getpid(), args.crash_code)
            os._exit(args.crash_code)
        time.sleep(args.beat)


if __name__ == "__main__":
    main()
