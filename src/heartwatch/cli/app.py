"""The ``heartwatch`` command, defined with typer: run the daemon, check a file, and talk to a
running daemon (status, control, signals, reload, scale, logs, the live view).

What is printed never passes through rich markup: service text such as ``[red]`` is text
(``cli/text.py`` writes plain lines; rich is loaded by ``top`` alone). Commands that talk to
the daemon take ``--url`` and ``--token`` (``HEARTWATCH_TOKEN``); a refusal for want of a
token names both. Exit codes follow supervisorctl: 0 done, 1 refused or unreachable (an
unknown name included), 2 a usage or configuration problem; ``status`` 3 when a service
shown is not running and 4 for an unknown name.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

import heartwatch
from heartwatch.cli import hot, options
from heartwatch.cli.hub import hub_app
from heartwatch.cli.options import DEFAULT_CONFIG_NAME, Flag
from heartwatch.cli.remote import Refused, call, locate, token_to_show
from heartwatch.cli.text import (
    STATE_COLOURS,
    colours_for,
    paint,
    plain,
    problem_lines,
    say,
    size,
)
from heartwatch.config import ALERTS, OLD_ALERTS, Config, ConfigError, config_warnings, load_config
from heartwatch.core.events import describe_exit
from heartwatch.core.selection import UnknownNames
from heartwatch.daemon.oserrors import describe_os_error

if TYPE_CHECKING:
    from heartwatch.client.tail import TailTarget

DEFAULT_CONFIG = Path(DEFAULT_CONFIG_NAME)

app = typer.Typer(
    help="Keep data pipelines alive: supervise, hear heartbeats and data flow, recover.",
    no_args_is_help=True,
    # Help texts name TOML sections ("[alerts]", "[logs]"): plain text, never rich markup.
    rich_markup_mode=None,
    # A traceback must not print local variables: they hold tokens and notification URLs.
    pretty_exceptions_show_locals=False,
)


def _option(flag: Flag, **extra: Any) -> Any:
    """typer's option from the shared definition (``cli/options.py``, read by the fast path)."""
    return typer.Option(*flag.flags, help=flag.help, envvar=flag.envvar, **extra)


ConfigOption = Annotated[Path, _option(options.CONFIG)]
UrlOption = Annotated[str | None, _option(options.URL)]
TokenOption = Annotated[str | None, _option(options.TOKEN, show_envvar=False)]
AddrOption = Annotated[str | None, _option(options.ADDR)]
SendTokenOption = Annotated[str | None, _option(options.SEND_TOKEN)]
JsonOption = Annotated[bool, _option(options.JSON)]


def _complete_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of service names: asks the running daemon (quickly; nothing if it
    does not answer), with ``all`` and each ``[[service]]`` name that has instances."""
    config = Path(ctx.params.get("config") or DEFAULT_CONFIG)
    try:
        base, place = locate(config, ctx.params.get("url"))
        token = token_to_show(ctx.params.get("token"), place)
        services = call(base, "GET", "/api/v1/services", token=token, timeout=1.0)
    except Refused:
        return []
    groups = {s.get("instance_of") for s in services} - {None}
    names = ["all", *sorted(groups), *(s["name"] for s in services)]
    return [name for name in names if name.startswith(incomplete)]


_NAMES_HELP = "Services: names, all, a [[service]] name with instances, globs (collector@*)."
NamesArgument = Annotated[
    list[str],
    typer.Argument(help=_NAMES_HELP, metavar="NAME", autocompletion=_complete_names),
]
SomeNamesArgument = Annotated[
    list[str] | None,
    typer.Argument(
        help=_NAMES_HELP + " Default: every service.",
        metavar="NAME",
        autocompletion=_complete_names,
    ),
]


def _version(value: bool) -> None:
    if value:
        say(heartwatch.__version__, stream=sys.stdout)
        raise typer.Exit()


_HUB_COMMANDS = ("status", "restart", "stop", "start", "signal", "reload", "tail")


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    hub: Annotated[
        str | None,
        typer.Option(
            "--hub",
            metavar="URL",
            help="Ask a fleet's hub (http://host:port): status, restart, stop, start, signal, "
            "reload and tail then take HOST/SERVICE (reload: HOST).",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            help="With --hub: wait for each command's final answer (until it expires, and "
            "a few seconds more)."
        ),
    ] = True,
) -> None:
    """Keep data pipelines alive: supervise, hear heartbeats and data flow, recover."""
    if hub is not None and ctx.invoked_subcommand not in _HUB_COMMANDS:
        say(f"--hub works with {', '.join(_HUB_COMMANDS)}, not {ctx.invoked_subcommand}", "red")
        raise typer.Exit(2)
    _ROOT_OPTIONS.update(hub=hub, wait=wait)  # this invocation's, for the commands below


# The root's --hub and --wait, as this invocation gave them (the callback runs first).
_ROOT_OPTIONS: dict[str, Any] = {}


def _wait() -> bool:
    return bool(_ROOT_OPTIONS.get("wait", True))


def _hub() -> str | None:
    """``--hub URL`` as given before the command, if it was."""
    hub = _ROOT_OPTIONS.get("hub")
    return hub if isinstance(hub, str) else None


def _token_for_hub(token: str | None) -> str | None:
    return token or os.environ.get("HEARTWATCH_TOKEN")


def _exit(code: int) -> None:
    if code:
        raise typer.Exit(code)


def _refused(refused: Refused) -> typer.Exit:
    say(refused.message, "red")
    return typer.Exit(refused.exit_code)


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as error:
        headline, *problems = problem_lines(error.source or path, error.problems)
        say(headline, "red")
        for line in problems:
            say(line)
        raise typer.Exit(2) from None


# -- the daemon and its file ---------------------------------------------------------------


@app.command()
def run(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Run the daemon in the foreground until SIGTERM or Ctrl-C (children are stopped first)."""
    from heartwatch.cli.daemon_run import run_daemon_command

    _exit(run_daemon_command(config))


@app.command()
def check(
    config: ConfigOption = DEFAULT_CONFIG,
    strict: Annotated[
        bool, typer.Option(help="Exit 2 on warnings too (a command not found, a missing cwd).")
    ] = False,
) -> None:
    """Validate a configuration file; print every problem and exit 2 if there are any.

    Warnings (an executable not on PATH, a cwd that does not exist) are printed too, but
    exit 0: the daemon may run with another PATH. --strict makes them fail the check.
    """
    loaded = _load(config)
    names = ", ".join(loaded.graph().start_order())
    say(
        f"{config}: ok, {len(loaded.service)} service(s), start order: {names}",
        stream=sys.stdout,
    )
    if loaded.alerts_section == OLD_ALERTS:
        # A note, not a warning: --strict must not fail a file that works as it always did.
        say(f"{config}: note: [{OLD_ALERTS}] is the old name of [{ALERTS}]; both work")
    warnings = config_warnings(loaded)
    if warnings:
        say(f"{config}: {len(warnings)} warning(s)", "yellow")
        for warning in warnings:
            say(f"  {warning}")
        if strict:
            raise typer.Exit(2)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write it.")] = DEFAULT_CONFIG,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter configuration."""
    if path.exists() and not force:
        say(f"{path} exists; use --force to overwrite it")
        raise typer.Exit(1)
    path.write_text(resources.files("heartwatch").joinpath("starter.toml").read_text())
    say(f"wrote {path}; check it with: heartwatch check -c {path}", stream=sys.stdout)


# -- status and control --------------------------------------------------------------------


@app.command()
def status(
    names: SomeNamesArgument = None,
    config: ConfigOption = DEFAULT_CONFIG,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """Show services: state, pid, uptime, restarts, heartbeat age, data, CPU and memory (when
    measured), the service's own status text, and the last reason.

    Exit 0 when every service shown is running, 3 when one is not, 4 for an unknown name."""
    if (hub := _hub()) is not None:
        from heartwatch.cli import fleet_remote

        _exit(fleet_remote.run_status(hub, names or [], _token_for_hub(token), json))
        return
    _exit(hot.run_status(names or [], config, url, token, json))


def _control(verb: str, names: list[str], config: Path, url: str | None, token: str | None) -> None:
    """One request for every name (expanded by the daemon, all checked before any is done)."""
    if (hub := _hub()) is not None:
        from heartwatch.cli import fleet_remote

        _exit(fleet_remote.run_command(hub, verb, names, _token_for_hub(token), wait=_wait()))
        return
    try:
        base, place = locate(config, url)
        services = call(
            base,
            "POST",
            f"/api/v1/control/{verb}",
            token=token_to_show(token, place),
            body={"names": names},
        )
    except Refused as refused:
        raise _refused(refused) from None
    for service in services:
        _say_state(service)


def _say_state(service: dict[str, Any], detail: str | None = None) -> None:
    state = str(service["state"])
    colour = colours_for(sys.stdout)
    text = f"{plain(service['name'])}: {paint(state, STATE_COLOURS.get(state), colour)}"
    sys.stdout.write(f"{text} ({plain(detail or service['reason'])})\n")


@app.command()
def restart(
    names: NamesArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Restart services and the services that require them."""
    _control("restart", names, config, url, token)


@app.command()
def stop(
    names: NamesArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Stop services (and, first, the services that require them)."""
    _control("stop", names, config, url, token)


@app.command()
def start(
    names: NamesArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Start services (and, first, what they require); clears failed and exited."""
    _control("start", names, config, url, token)


@app.command(name="signal")
def signal_(
    arguments: Annotated[
        list[str],
        typer.Argument(help="Services as for status, then a signal.", metavar="NAME... SIGNAL"),
    ],
    group: Annotated[
        bool, typer.Option(help="Signal the whole process group, not only the main process.")
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Send a signal (HUP, USR1, TERM or a number) to services' main processes.

    Example: heartwatch signal collector@* HUP. A service without a running process is
    refused with why (exit 1); the others still get the signal."""
    if len(arguments) < 2:
        say("usage: heartwatch signal NAME... SIGNAL (e.g. heartwatch signal collector HUP)")
        raise typer.Exit(2)
    if (hub := _hub()) is not None:
        from heartwatch.cli import fleet_remote

        split = fleet_remote.split_signal(arguments)
        if split is None:
            say("usage: heartwatch --hub URL signal SIGNAL HOST/SERVICE...")
            raise typer.Exit(2)
        args = {"signal": split[0], "group": group}
        _exit(
            fleet_remote.run_command(
                hub, "signal", split[1], _token_for_hub(token), args=args, wait=_wait()
            )
        )
        return
    *names, signal_name = arguments
    try:
        services = hot.fetch_services(names, config, url, token)
        base, place = locate(config, url)
    except UnknownNames as unknown:
        say(str(unknown), "red")
        raise typer.Exit(1) from None
    except Refused as refused:
        raise _refused(refused) from None
    failed = False
    body = {"signal": signal_name, "group": group}
    whom = "process group" if group else "main process"
    for service in services:
        try:
            answer = call(
                base,
                "POST",
                f"/api/v1/services/{service['name']}/signal",
                token=token_to_show(token, place),
                body=body,
            )
        except Refused as refused:
            answered = refused.body if isinstance(refused.body, dict) else {}
            if answered.get("code") != "not_running":
                raise _refused(refused) from None  # a bad signal, no token: no use going on
            say(refused.message, "red")  # "collector is stopped: it has no process to signal"
            failed = True
            continue
        _say_state(answer, f"{signal_name} sent to its {whom}, pid {answer['pid']}")
    _exit(1 if failed else 0)


def _print_change(result: dict[str, Any]) -> None:
    """A reload's or a scale's result: what was added, removed, changed (restarted), what
    went along with a changed requirement, what was not touched at all."""
    for key in ("added", "removed", "changed", "restarted", "unchanged"):
        names = result.get(key) or []
        say(f"{key}: {', '.join(names) if names else '-'}", stream=sys.stdout)
    overrides = result.get("overrides") or {}
    if overrides:
        counts = ", ".join(f"{name} = {count}" for name, count in sorted(overrides.items()))
        say(
            f"instances by scale: {counts} (the file's count returns at a daemon restart "
            "or when the file's instances changes)",
            stream=sys.stdout,
        )
    restart_needed = result.get("needs_daemon_restart") or []
    if restart_needed:
        say(
            f"needs a daemon restart to take effect: {', '.join(restart_needed)}",
            "yellow",
            stream=sys.stdout,
        )
    for warning in result.get("warnings") or []:  # a scale restarting dependents
        say(warning, "yellow", stream=sys.stdout)


def _change(path: str, body: Any, config: Path, url: str | None, token: str | None) -> None:
    try:
        base, place = locate(config, url)
        result = call(base, "POST", path, token=token_to_show(token, place), body=body)
    except Refused as refused:
        answer = refused.body if isinstance(refused.body, dict) else {}
        if answer.get("code") == "invalid_config":
            found = [f"{p.get('path')}: {p.get('message')}" for p in answer.get("problems") or []]
            headline, *problems = problem_lines(answer.get("message"), found)
            say(headline, "red")
            for line in problems:
                say(line)
            say("the daemon goes on with the configuration it had")
            raise typer.Exit(2) from None
        raise _refused(refused) from None
    _print_change(result)


@app.command()
def reload(
    hosts: Annotated[
        list[str] | None, typer.Argument(help="With --hub: the hosts to reload.", metavar="HOST")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Re-read the daemon's configuration file and apply the difference (as SIGHUP does).

    Added services start, removed ones stop, changed ones restart, the rest go on untouched.
    An invalid file is refused whole: every problem is printed and the exit code is 2."""
    if (hub := _hub()) is not None:
        from heartwatch.cli import fleet_remote

        _exit(
            fleet_remote.run_command(
                hub, "reload", hosts or [], _token_for_hub(token), wait=_wait()
            )
        )
        return
    if hosts:
        say("reload takes host names with --hub URL only (a daemon reloads itself)")
        raise typer.Exit(2)
    _change("/api/v1/reload", None, config, url, token)


@app.command()
def scale(
    name: Annotated[str, typer.Argument(help="A [[service]] name.")],
    instances: Annotated[
        int, typer.Argument(help="How many instances it should have.", min=1, max=1000)
    ],
    config: ConfigOption = DEFAULT_CONFIG,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Change a service's number of instances at run time (name@0 ... name@N-1)."""
    _change(f"/api/v1/scale/{name}", {"instances": instances}, config, url, token)


@app.command()
def clear(
    names: NamesArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Clear services' captured output (their log files under [daemon] log_dir)."""
    try:
        services = hot.fetch_services(names, config, url, token)
        base, place = locate(config, url)
        shown = token_to_show(token, place)
        for service in services:
            name = service["name"]
            answer = call(base, "DELETE", f"/api/v1/services/{name}/output", token=shown)
            removed = answer.get("bytes_removed") if isinstance(answer, dict) else None
            freed = f" ({size(removed)})" if isinstance(removed, int) else ""
            say(f"{name}: output cleared{freed}", stream=sys.stdout)
    except UnknownNames as unknown:
        say(str(unknown), "red")
        raise typer.Exit(1) from None
    except Refused as refused:
        raise _refused(refused) from None


@app.command()
def top(
    names: SomeNamesArgument = None,
    config: ConfigOption = DEFAULT_CONFIG,
    url: UrlOption = None,
    token: TokenOption = None,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.2)] = 1.0,
) -> None:
    """A live view of the services (as pm2 monit): state, pid, uptime, restarts, heartbeat
    age, data rates, CPU, memory, status text. q or Ctrl-C quits; piped, one snapshot."""
    from heartwatch.cli.top import run_top

    _exit(run_top(names or [], config, url, token, interval))


@app.command()
def history(
    name: Annotated[
        str,
        typer.Argument(help="A service's name.", metavar="NAME", autocompletion=_complete_names),
    ],
    since: Annotated[
        str, typer.Option(help="How far back: a duration such as 1h, 24h, 7d, 30d.")
    ] = "24h",
    config: ConfigOption = DEFAULT_CONFIG,
    url: UrlOption = None,
    token: TokenOption = None,
    json: JsonOption = False,
) -> None:
    """A service's past: its state strip (unknown apart: the daemon was down), uptime,
    incidents, time to recover, longest outage, and a rate line per data kind with its
    timeout and gaps. Piped, a plain table of the state segments (start, end, state, reason)."""
    from heartwatch.cli.history import run_history

    _exit(run_history(name, since, config, url, token, json))


# -- heartbeats from the shell -------------------------------------------------------------


@app.command()
def beat(
    service: Annotated[str, typer.Argument(help="The service the message is from.")],
    kind: Annotated[str, _option(options.KIND)] = "heartbeat",
    data: Annotated[str | None, _option(options.DATA)] = None,
    addr: AddrOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    token: SendTokenOption = None,
) -> None:
    """Send one heartbeat or data event, for shell scripts."""
    _exit(hot.run_beat(service, kind, data, addr, config, token))


@app.command(
    name="exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def exec_(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service the command runs as.")],
    addr: AddrOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    token: SendTokenOption = None,
) -> None:
    """Run a command as SERVICE: report its start, pass its output through, report its exit code.

    Example (cron): heartwatch exec backup -- /usr/local/bin/backup.sh --full
    """
    command = list(ctx.args)
    if not command:
        say("usage: heartwatch exec SERVICE -- COMMAND [ARGS...]")
        raise typer.Exit(2)
    try:
        address: tuple[str, int] | None = hot.heartbeat_address(addr, config)
    except Refused:
        address = None  # a job must run whether or not the daemon is there to hear of it
    _report(address, token, {"type": "start", "service": service})
    try:
        returncode = subprocess.run(command).returncode
    except OSError as error:
        say(f"cannot run {command[0]}: {describe_os_error(error)}")
        returncode = 127
    if returncode == 0:
        _report(address, token, {"type": "heartbeat", "service": service})
    else:
        reason = describe_exit(returncode)
        _report(address, token, {"type": "fail", "service": service, "reason": reason})
    raise typer.Exit(returncode if returncode >= 0 else 128 - returncode)


def _report(address: tuple[str, int] | None, given: str | None, message: dict[str, Any]) -> None:
    """Best effort: a job must run whether or not the daemon is there to hear of it."""
    from heartwatch.client.address import token_for
    from heartwatch.client.oneshot import send_once

    if address is None:
        return
    token = token_for(address, given)
    try:
        send_once(address, message if token is None else {**message, "token": token})
    except OSError as error:
        say(f"heartwatch: could not report {message['type']!r}: {describe_os_error(error)}")


# -- logs ----------------------------------------------------------------------------------


@app.command()
def tail(
    target: Annotated[
        str | None,
        typer.Argument(help="A service, or a log file under [logs] roots (or its output file)."),
    ] = None,
    daemon: Annotated[
        bool, typer.Option("--daemon", help="The daemon's own log (also: @daemon).")
    ] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", help="Initial lines.")] = 10,
    follow: Annotated[bool, typer.Option(help="Keep following (like tail -F).")] = True,
    grep: Annotated[str | None, typer.Option(help="Only lines matching this regex.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Show a service's output or a log file, then follow it; colours kept in a terminal."""
    if (hub := _hub()) is not None:
        from heartwatch.cli import fleet_remote

        _exit(fleet_remote.run_tail(hub, target, lines, grep, _token_for_hub(token)))
        return
    from heartwatch.client.tail import TailRefused, TailUsage, follow_log, tail_url

    try:
        base, place = locate(config, url)
    except Refused as refused:
        raise _refused(refused) from None
    shown = token_to_show(token, place)
    try:
        chosen = _tail_target(target, daemon, config, url)
    except TailUsage as usage:
        say(f"{target or 'tail'}: {usage}", "red")
        raise typer.Exit(1) from None

    def url_for(count: int) -> str:
        # Asked again at each reconnect: a restarted daemon may listen somewhere else.
        try:
            where = base if url is not None else locate(config, None)[0]
        except Refused as refused:  # not there (yet): follow_log tries again, as for a refusal
            raise ConnectionRefusedError(refused.message) from None
        return tail_url(
            where,
            chosen.name,
            is_service=chosen.is_service,
            lines=count,
            follow=follow,
            grep=grep,
            token=shown,
        )

    try:
        asyncio.run(follow_log(url_for, lines, reconnect=follow))
    except TailRefused as refused_tail:
        say(f"{target or chosen.name}: {refused_tail.reason}", "red")
        raise typer.Exit(1) from None
    except Refused as refused:
        raise _refused(refused) from None
    except OSError as error:
        say(f"no heartwatch daemon answers at {base}: {error}", "red")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _tail_target(target: str | None, daemon: bool, config: Path, url: str | None) -> TailTarget:
    """What ``tail`` asks for: a service, the daemon's log, or a file (``choose_target``)."""
    from heartwatch.client.tail import choose_target

    local = os.path.realpath(target) if target and os.path.isfile(target) else None
    if not config.exists() or url is not None:  # another daemon's: it knows its services
        return choose_target(target, daemon=daemon, services=None, local_path=local)
    loaded = _load(config)
    log_dir = loaded.resolve(loaded.daemon.log_dir)
    return choose_target(
        target,
        daemon=daemon,
        services=list(loaded.services_by_name()),
        log_dir=os.path.realpath(log_dir),
        daemon_log=os.path.realpath(log_dir / loaded.daemon.log_file),
        local_path=local,
    )


# -- the rest ------------------------------------------------------------------------------


@app.command(name="alerts-test")
def alerts_test(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Send a test message through every [alerts] URL; say which ones delivered it.

    Also as notify-test, its name from when [alerts] was [notify]."""
    from heartwatch.daemon.alerts import send_test

    loaded = _load(config)
    section = loaded.alerts_section  # the keys named as the file names them
    if not loaded.alerts.urls:
        say(f"{config}: [{section}] urls is empty: there is nothing to test")
        raise typer.Exit(2)
    results = asyncio.run(send_test(loaded.alerts.urls, loaded.alerts.timeout))
    colour = colours_for(sys.stdout)
    for index, scheme, delivered in results:
        verdict, style = ("delivered", "green") if delivered else ("not delivered", "red")
        line = plain(f"{section}.urls[{index}] ({scheme}://…): ")
        sys.stdout.write(line + paint(verdict, style, colour) + "\n")
    if not all(delivered for _, _, delivered in results):
        raise typer.Exit(1)


# The name it had while [alerts] was [notify]: scripts and habits keep working.
app.command(name="notify-test", help=alerts_test.__doc__, hidden=True)(alerts_test)


@app.command()
def version() -> None:
    """Print the version (also: heartwatch --version)."""
    say(heartwatch.__version__, stream=sys.stdout)


app.add_typer(hub_app, name="hub")  # heartwatch hub, heartwatch hub keygen (cli/hub.py)
