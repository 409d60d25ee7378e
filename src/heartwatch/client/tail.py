"""``heartwatch tail``: follow a service's output or an allowed log file from a terminal.

A websocket client of the daemon's ``/ws/logs`` endpoints. Colours are kept when writing to a
terminal and stripped when piped. If the connection drops (the daemon restarted), it
reconnects by itself with backoff and carries on without replaying lines; a refusal (a close
code from 4400 up) is final and its reason is printed.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TextIO
from urllib.parse import quote, urlencode

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from heartwatch.logview.ansi import strip_ansi

REFUSED_FROM = 4400
DAEMON_LOG = "@daemon"  # the daemon's own log, named like a service (no service starts "@")


class TailUsage(Exception):
    """What was asked cannot be tailed; the message says what can."""


@dataclass(frozen=True, slots=True)
class TailTarget:
    is_service: bool  # /ws/logs/{name} (a service, or @daemon), else /ws/logs?path=name
    name: str


def choose_target(
    target: str | None,
    *,
    daemon: bool,
    services: Collection[str] | None,
    log_dir: str | None = None,
    daemon_log: str | None = None,
    local_path: str | None = None,
) -> TailTarget:
    """What ``heartwatch tail`` asks the daemon for. Pure.

    ``services``: the configured services (``None``: unknown, the daemon will say); ``log_dir``
    and ``daemon_log``: their real paths; ``local_path``: the real path of ``target`` if it
    names a file from here. A file that is a service's output or the daemon's own log is
    asked for as such (they are always viewable; other files only under ``[logs] roots``).
    """
    if daemon or target == DAEMON_LOG:
        if target not in (None, DAEMON_LOG):
            raise TailUsage("give a service, a file, or --daemon: not both")
        return TailTarget(True, DAEMON_LOG)
    if not target:
        raise TailUsage("name a service, a log file under [logs] roots, or --daemon")
    if services is not None and target in services:
        return TailTarget(True, target)
    if local_path is not None:
        if local_path == daemon_log:
            return TailTarget(True, DAEMON_LOG)
        folder, name = os.path.split(local_path)
        if folder == log_dir and name.endswith(".log") and name[:-4] in (services or ()):
            return TailTarget(True, name[:-4])
        return TailTarget(False, local_path)
    if "/" not in target and not target.endswith(".log"):  # a name, not a path
        if services is None:
            return TailTarget(True, target)  # the daemon knows its services
        known = ", ".join(sorted(services)) or "none"
        raise TailUsage(
            f"no service {target!r} (services: {known}); --daemon for the daemon's own log, "
            "or a path to a file under [logs] roots"
        )
    return TailTarget(False, target)


class TailRefused(Exception):
    """The daemon refused to serve the log; ``code`` and ``reason`` say why."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{reason} ({code})")


def tail_url(
    base: str,
    target: str,
    *,
    is_service: bool,
    lines: int,
    follow: bool,
    grep: str | None,
    token: str | None,
) -> str:
    """The websocket URL for ``target`` on the daemon at ``base`` (``http://host:port``)."""
    query: dict[str, str] = {"lines": str(lines), "follow": "true" if follow else "false"}
    if grep:
        query["grep"] = grep
    if token:
        query["token"] = token
    root = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1).rstrip("/")
    if is_service:
        return f"{root}/ws/logs/{quote(target, safe='')}?{urlencode(query)}"
    return f"{root}/ws/logs?{urlencode({'path': target, **query})}"


async def follow_log(
    url_for: Callable[[int], str],
    lines: int,
    out: TextIO = sys.stdout,
    *,
    colour: bool | None = None,
    reconnect: bool = True,
) -> None:
    """Print the log until the server closes normally (``follow=false``) or a refusal.

    ``url_for(n)`` gives the URL asking for ``n`` initial lines: ``lines`` the first time, 0
    after a reconnect (the lines written meanwhile are not replayed).
    """
    keep_colour = out.isatty() if colour is None else colour
    delay, first = 0.2, True
    while True:
        try:
            async with connect(url_for(lines if first else 0), max_size=None) as websocket:
                delay = 0.2
                if not first:
                    print("[heartwatch] reconnected", file=sys.stderr)
                first = False
                async for frame in websocket:
                    text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
                    try:
                        out.write((text if keep_colour else strip_ansi(text)) + "\n")
                        out.flush()
                    except BrokenPipeError:
                        # The reader left (`heartwatch tail x | head`): done, as tail(1) is;
                        # not a lost connection to follow again.
                        return
            return  # a normal close: the initial lines of --no-follow were all sent
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            if code is not None and code >= REFUSED_FROM:
                raise TailRefused(code, closed.rcvd.reason if closed.rcvd else "") from None
            if code == 1000 or not reconnect:
                return
        except InvalidStatus as error:
            raise TailRefused(
                error.response.status_code, "the daemon refused the upgrade"
            ) from None
        except OSError:
            if not reconnect:
                raise
        await asyncio.sleep(delay)
        delay = min(5.0, delay * 2)
