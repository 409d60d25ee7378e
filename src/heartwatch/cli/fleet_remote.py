"""``heartwatch --hub URL …``: the fleet's status, commands and live logs, through a hub.

The same commands as for one daemon, with ``host/service`` where a service's name was
(``heartwatch --hub http://hub:9300 restart farm-07/collector@2``; a selection works on the
service part: ``farm-07/collector@*``). A command is one request to the hub, refused whole if
a target is unknown; each target's command is then waited for until it expires and ``MARGIN``
seconds more (its ttl, the hub's ``command_ttl`` by default: long enough to see the broker
say it expired undelivered; ``--no-wait`` not at all) and its final answer printed::

    farm-07/collector@2: done (restarted)
    farm-09/collector: expired, never ran (not delivered within 60 s)

A target host the hub does not hear from (stale, unreachable) is said at once, on standard
error: ``farm-09 is unreachable (silent 40 s): the command waits in its queue until it
expires at 14:53:02`` (the hub's clock, shown in local time).

Exit codes as the local commands': 0 done, 1 refused, failed, expired or unanswered, or no
final answer by then (or the hub unreachable), 2 a usage problem; ``status`` 0 when every
service shown runs, 3 when one does not, 4 for an unknown host or service. Nothing printed
is markup, and control characters in what agents said are escaped (``cli/text.py``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from heartwatch.cli.remote import Refused, call
from heartwatch.cli.text import STATE_COLOURS, colours_for, paint, plain, say, table

MARGIN = 10.0  # seconds past a command's expiry its answer is still waited for
POLL, POLL_MAX = 0.25, 1.0  # seconds between asks, growing to at most POLL_MAX
# What a command ends as. "unanswered" (the hub heard nothing by its expiry + 30 s: unknown
# whether it ran) may still move on a late reply, but nothing more is waited for.
FINAL = frozenset({"done", "failed", "refused", "expired", "unanswered"})
PROBLEMS = frozenset({"unresponsive", "restarting", "backoff", "failed", "unknown"})
STATUS_ALL_RUNNING, STATUS_NOT_ALL_RUNNING, STATUS_UNKNOWN_NAME = 0, 3, 4


def ask(hub: str, method: str, path: str, token: str | None, body: Any = None) -> Any:
    """One call to the hub's API (``remote.call``, its words about the hub)."""
    try:
        return call(hub, method, path, token=token, body=body)
    except Refused as refused:
        message = refused.message.replace("--url", "--hub").replace("heartwatch daemon", "hub")
        message = message.replace("the daemon", "the hub")
        raise Refused(message, refused.exit_code, refused.body) from None


# -- status ------------------------------------------------------------------------------------


def select(fleet: dict[str, Any], targets: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The services ``targets`` name (``host`` or ``host/service``, a selection allowed), and
    the targets that name nothing. Pure."""
    from heartwatch.core.selection import UnknownNames, select_services

    services = fleet["services"]
    if not targets:
        return list(services), []
    hosts = {h["host"] for h in fleet["hosts"]}
    chosen: set[tuple[str, str]] = set()
    unknown: list[str] = []
    for target in targets:
        host, slash, name = target.partition("/")
        if host not in hosts:
            unknown.append(f"no host {host!r}")
            continue
        own = {s["name"]: s.get("instance_of") for s in services if s["host"] == host}
        if not slash:
            chosen.update((host, s) for s in own)
            continue
        try:
            chosen.update((host, s) for s in select_services([name], own))
        except UnknownNames as names:
            unknown.append(f"{host}: {names}")
    return [s for s in services if (s["host"], s["name"]) in chosen], unknown


def status_rows(fleet: dict[str, Any], services: Sequence[dict[str, Any]]) -> list[list[Any]]:
    """Rows grouped by host, the hosts with problems first, and in a host its problems
    first; an unreachable host says so in each row's reason. Pure."""
    hosts = {h["host"]: h for h in fleet["hosts"]}
    by_host: dict[str, list[dict[str, Any]]] = {}
    for service in services:
        by_host.setdefault(service["host"], []).append(service)

    def host_order(name: str) -> tuple[int, str]:
        host = hosts.get(name, {})
        troubled = host.get("state") != "live" or any(s["state"] in PROBLEMS for s in by_host[name])
        return (0 if troubled else 1, name)

    rows = []
    for name in sorted(by_host, key=host_order):
        host = hosts.get(name, {})
        members = sorted(by_host[name], key=lambda s: (s["state"] not in PROBLEMS, s["name"]))
        for service in members:
            reason = service.get("reason") or ""
            if host.get("state") == "unreachable":
                silent = host.get("last_seen_age") or 0
                reason = f"host unreachable (silent {silent:.0f} s); last: {service['last_state']}"
            elif host.get("state") == "stale":
                reason = f"host stale ({host.get('last_seen_age', 0):.0f} s); {reason}".rstrip("; ")
            rows.append([name, service["name"], service["state"], reason])
    return rows


def run_status(hub: str, targets: Sequence[str], token: str | None, as_json: bool) -> int:
    """``heartwatch --hub URL status [host[/service]...]``."""
    try:
        fleet = ask(hub, "GET", "/api/v1/fleet", token)
    except Refused as refused:
        say(refused.message, "red")
        return refused.exit_code
    services, unknown = select(fleet, targets)
    if unknown:
        say("; ".join(unknown), "red")
        return STATUS_UNKNOWN_NAME
    if as_json:
        sys.stdout.write(json.dumps(services, indent=2) + "\n")
    else:
        colour = colours_for(sys.stdout)
        rows = [
            [(plain(h), None), (plain(s), None), (st, STATE_COLOURS.get(st)), (plain(r), None)]
            for h, s, st, r in status_rows(fleet, services)
        ]
        sys.stdout.write(table(["HOST", "SERVICE", "STATE", "REASON"], rows, colour) + "\n")
    running = all(s["state"] == "running" for s in services)
    return STATUS_ALL_RUNNING if running else STATUS_NOT_ALL_RUNNING


# -- commands ----------------------------------------------------------------------------------


def describe(command: dict[str, Any]) -> str:
    """``farm-07/collector@2: done (restarted)``; an expiry says "never ran" itself. Pure."""
    target = command["host"] + ("" if command.get("service") is None else f"/{command['service']}")
    status, reason = command["status"], command.get("reason") or ""
    if reason.startswith(status):
        return f"{target}: {reason}"
    return f"{target}: {status} ({reason})" if reason else f"{target}: {status}"


def waiting_time(commands: Sequence[dict[str, Any]]) -> float:
    """Seconds to wait for ``commands``: the longest ttl among them (``expires_at`` -
    ``issued_at``, both the hub's clock, so this one's may differ) and ``MARGIN``. Pure."""
    ttls = (float(c["expires_at"]) - float(c["issued_at"]) for c in commands)
    return max(ttls, default=0.0) + MARGIN


def clock_time(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def host_notices(hosts: Sequence[dict[str, Any]], commands: Sequence[dict[str, Any]]) -> list[str]:
    """A line for each target host the hub does not hear from, saying until when its commands
    wait. Pure."""
    known = {h["host"]: h for h in hosts}
    lines = []
    for name in sorted({c["host"] for c in commands}):
        host = known.get(name)
        if host is None or host.get("state") in (None, "live"):
            continue
        mine = [c for c in commands if c["host"] == name]
        what = "the command waits" if len(mine) == 1 else f"its {len(mine)} commands wait"
        expires = max(float(c["expires_at"]) for c in mine)
        silent = float(host.get("last_seen_age") or 0.0)
        lines.append(
            f"{name} is {host['state']} (silent {silent:.0f} s): {what} in its queue until "
            f"{'it expires' if len(mine) == 1 else 'they expire'} at {clock_time(expires)}"
        )
    return lines


def wait_for(
    hub: str,
    commands: Sequence[dict[str, Any]],
    token: str | None,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Each command as last read: final, or as it was when ``timeout`` ran out."""
    latest = {c["id"]: c for c in commands}
    deadline = clock() + timeout
    pause = POLL
    while True:
        open_ids = [i for i, c in latest.items() if c["status"] not in FINAL]
        if not open_ids or clock() >= deadline:
            return list(latest.values())
        sleep(min(pause, max(0.0, deadline - clock())))
        pause = min(pause * 1.5, POLL_MAX)
        for command_id in open_ids:
            latest[command_id] = ask(hub, "GET", f"/api/v1/commands/{command_id}", token)


def unfinished(command: dict[str, Any]) -> str:
    """What to add to a command's line when no final answer came by its wait's end. Pure."""
    by = clock_time(float(command["expires_at"]) + MARGIN)
    if command["status"] == "accepted":
        return f"; not finished by {by} (command {command['id']})"
    return f"; no answer by {by}: unknown whether it ran (command {command['id']})"


def run_command(
    hub: str,
    verb: str,
    targets: Sequence[str],
    token: str | None,
    *,
    args: dict[str, Any] | None = None,
    wait: bool = True,
    timeout: float | None = None,
) -> int:
    """One request for every target; each reply waited for (``timeout`` seconds; None: until
    the commands expire, ``waiting_time``) and printed."""
    if not targets:
        say(f"usage: heartwatch --hub URL {verb} HOST/SERVICE...", "red")
        return 2
    try:
        answer = ask(
            hub,
            "POST",
            "/api/v1/commands",
            token,
            {"targets": list(targets), "verb": verb, "args": args or {}},
        )
        commands = answer["commands"]
        if not wait:
            for command in commands:
                say(f"{describe(command)}: id {command['id']}", stream=sys.stdout)
            return 0
        try:
            hosts = ask(hub, "GET", "/api/v1/hosts", token)
        except Refused:
            hosts = []  # the states are a courtesy: the answers are what matters
        for line in host_notices(hosts if isinstance(hosts, list) else [], commands):
            say(line, "yellow")
        wait_seconds = waiting_time(commands) if timeout is None else timeout
        final = wait_for(hub, commands, token, wait_seconds)
    except Refused as refused:
        say(refused.message, "red")
        return refused.exit_code
    failed = False
    colour = colours_for(sys.stdout)
    for command in final:
        status = command["status"]
        line = plain(describe(command))
        if status not in FINAL:
            line += plain(unfinished(command))
        ok = status == "done"
        failed = failed or not ok
        sys.stdout.write(paint(line, "green" if ok else "red", colour) + "\n")
    return 1 if failed else 0


def split_signal(arguments: Sequence[str]) -> tuple[str, list[str]] | None:
    """``SIG host/service...`` (or the local order, the signal last): the one word without
    a slash is the signal. Pure."""
    signals = [a for a in arguments if "/" not in a]
    if len(signals) != 1 or len(arguments) < 2:
        return None
    return signals[0], [a for a in arguments if "/" in a]


# -- tail --------------------------------------------------------------------------------------


def tail_url(hub: str, target: str, *, lines: int, grep: str | None, token: str | None) -> str:
    from urllib.parse import urlencode

    host, _, service = target.partition("/")
    query: dict[str, str] = {"lines": str(lines)}
    if grep:
        query["grep"] = grep
    if token:
        query["token"] = token
    root = hub.replace("http://", "ws://", 1).replace("https://", "wss://", 1).rstrip("/")
    return f"{root}/ws/logs/{quote(host, safe='')}/{quote(service, safe='')}?{urlencode(query)}"


def run_tail(hub: str, target: str | None, lines: int, grep: str | None, token: str | None) -> int:
    """``heartwatch --hub URL tail host/service``: follow it through the hub."""
    import asyncio

    from heartwatch.client.tail import TailRefused, follow_log

    if not target or "/" not in target.strip("/"):
        say("usage: heartwatch --hub URL tail HOST/SERVICE", "red")
        return 2
    try:
        asyncio.run(
            follow_log(lambda n: tail_url(hub, target, lines=n, grep=grep, token=token), lines)
        )
    except TailRefused as refused:
        say(f"{target}: {refused.reason}", "red")
        return 1
    except OSError as error:
        say(f"no hub answers at {hub}: {error}", "red")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
