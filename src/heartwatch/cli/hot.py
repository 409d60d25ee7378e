"""The commands run most often, ``status`` and ``beat``, in the standard library alone.

Their options are typer's (``cli/app.py`` declares them from ``cli/options.py``); both the
typer commands and the fast path (``cli/fast.py``) call these functions, so the two ways in
print the same and exit the same. Each returns the exit code.

What ``beat`` does not need is imported where it is needed (a config file's reading, the
table, an error's words): a worker's shell loop pays only for a socket and a JSON line.
"""

from __future__ import annotations

import json
import os
import sys

from heartwatch.cli.remote import Refused

TYPE_CHECKING = False  # not typing's: it would cost every ``beat`` 10 ms
if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from typing import Any

# What ``status`` exits with, as supervisorctl and LSB init scripts do.
STATUS_ALL_RUNNING = 0
STATUS_NOT_ALL_RUNNING = 3
STATUS_UNKNOWN_NAME = 4


def fetch_services(
    names: Sequence[str], config: Path, url: str | None, token: str | None
) -> list[dict[str, Any]]:
    """The daemon's statuses of the services ``names`` select (all without names), in start
    order; ``UnknownNames`` before anything else when one selects nothing."""
    from heartwatch.cli.remote import call, locate, token_to_show
    from heartwatch.core.selection import select_services

    base, place = locate(config, url)
    services: list[dict[str, Any]] = call(
        base, "GET", "/api/v1/services", token=token_to_show(token, place)
    )
    if not names:
        return services
    groups = {str(s["name"]): s.get("instance_of") for s in services}
    chosen = set(select_services(names, groups))
    return [s for s in services if s["name"] in chosen]


def run_status(
    names: Sequence[str], config: Path, url: str | None, token: str | None, as_json: bool
) -> int:
    """``heartwatch status [NAME...]``: exit 0 when every service shown is running, 3 when
    one is not, 4 for a name that selects nothing (supervisorctl's codes)."""
    from heartwatch.cli.text import colours_for, probe_lines, say, status_table
    from heartwatch.core.selection import UnknownNames

    try:
        services = fetch_services(names, config, url, token)
    except UnknownNames as unknown:
        say(str(unknown), "red")
        return STATUS_UNKNOWN_NAME
    except Refused as refused:
        say(refused.message, "red")
        return refused.exit_code
    if as_json:
        sys.stdout.write(json.dumps(services, indent=2) + "\n")
    else:
        sys.stdout.write(status_table(services, colours_for(sys.stdout)) + "\n")
        if names:  # asked about by name: each probe's own verdict too
            probes = probe_lines(services)
            if probes:
                sys.stdout.write("\nPROBES\n" + "\n".join(probes) + "\n")
    running = all(s["state"] == "running" for s in services)
    return STATUS_ALL_RUNNING if running else STATUS_NOT_ALL_RUNNING


def run_beat(
    service: str,
    kind: str,
    data: str | None,
    addr: str | None,
    config: str | os.PathLike[str],
    token: str | None = None,
) -> int:
    """``heartwatch beat SERVICE``: one heartbeat or data event; 1 when the daemon is not
    there, 2 for a bad argument."""
    from heartwatch.client.address import token_for
    from heartwatch.client.oneshot import send_once

    message: dict[str, Any] = {"type": kind, "service": service}
    if data is not None:
        try:
            message["data"] = json.loads(data)
        except ValueError as error:
            _say(f"--data is not JSON: {error}")
            return 2
    try:
        address = heartbeat_address(addr, config)
    except Refused as refused:
        _say(refused.message, "red")
        return refused.exit_code
    sent_token = token_for(address, token)
    try:
        send_once(address, message if sent_token is None else {**message, "token": sent_token})
    except OSError as error:
        from heartwatch.daemon.oserrors import describe_os_error

        _say(f"cannot reach the heartwatch daemon: {describe_os_error(error)}", "red")
        return 1
    return 0


def heartbeat_address(addr: str | None, config: str | os.PathLike[str]) -> tuple[str, int]:
    """``--addr``, else ``HEARTWATCH_ADDR``, else the config file's daemon, else the
    default; ``Refused`` (exit 2) for an address that is not ``host:port``."""
    from heartwatch.core.addresses import DEFAULT_HEARTBEAT_ADDRESS, parse_address

    text = addr or os.environ.get("HEARTWATCH_ADDR")
    if text is None and os.path.exists(config):
        from pathlib import Path

        from heartwatch.cli.remote import read_place, read_place_fully

        path = Path(config)
        return (read_place(path) or read_place_fully(path)).tcp
    try:
        return parse_address(text or DEFAULT_HEARTBEAT_ADDRESS)
    except ValueError as error:
        raise Refused(f"--addr: {error}", exit_code=2) from None


def _say(text: str, style: str | None = None) -> None:
    from heartwatch.cli.text import say

    say(text, style)
