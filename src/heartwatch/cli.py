"""The ``heartwatch`` command: run the daemon, check a file, and talk to a running daemon."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

import heartwatch
from heartwatch.client.address import token_for
from heartwatch.client.oneshot import send_once
from heartwatch.config import (
    ALERTS,
    OLD_ALERTS,
    Config,
    ConfigError,
    config_warnings,
    load_config,
)
from heartwatch.core.addresses import DEFAULT_HEARTBEAT_ADDRESS, parse_address
from heartwatch.core.events import describe_exit
from heartwatch.core.units import format_duration
from heartwatch.daemon.daemon_info import read_daemon_info
from heartwatch.daemon.oserrors import describe_os_error

if TYPE_CHECKING:
    from rich.text import Text

    from heartwatch.client.tail import TailTarget

app = typer.Typer(
    help="Keep data pipelines alive: supervise, hear heartbeats and data flow, recover.",
    no_args_is_help=True,
    add_completion=False,
    # Help texts name TOML sections ("[alerts]", "[logs]"): plain text, never rich markup.
    rich_markup_mode=None,
    # A traceback must not print local variables: they hold tokens and notification URLs.
    pretty_exceptions_show_locals=False,
)


class _LazyConsole:
    """A rich console made on first use: the daemon (``heartwatch run``) never loads rich.

    Markup, emoji codes and highlighting are off: what is printed comes from services, config
    files, the daemon and the user, and ``[red]`` or ``:smile:`` in it is text. Colour is
    given with ``style=`` or as ``rich.text.Text`` spans, never inside a string.
    """

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            console = Console(
                stderr=self._stderr, markup=False, emoji=False, highlight=False, soft_wrap=True
            )
            if not console.is_terminal:
                console.width = 10_000  # into a pipe: a table row stays one line, for grep
            self._console = console
        return getattr(self._console, name)


err = _LazyConsole(stderr=True)
out = _LazyConsole(stderr=False)

DEFAULT_CONFIG = Path("heartwatch.toml")  # what init writes and every command reads
ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="The configuration file.", envvar="HEARTWATCH_CONFIG"),
]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="The daemon's HTTP address (default: from the config file)."),
]


def main() -> None:
    app()


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as error:
        err.print(f"{error.source or path}: {len(error.problems)} problem(s)", style="red")
        for problem in error.problems:
            err.print(f"  {problem}")
        raise typer.Exit(2) from None


@app.command()
def run(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Run the daemon in the foreground until SIGTERM or Ctrl-C (children are stopped first)."""
    from heartwatch.assembly.daemon import run_daemon
    from heartwatch.daemon.own_log import configure_logging
    from heartwatch.daemon.statedir import DaemonAlreadyRunning

    loaded = _load(config)
    try:
        configure_logging(loaded)
        _log_warnings(config, loaded)
        asyncio.run(run_daemon(loaded))
    except ConfigError as error:
        for problem in error.problems:
            err.print(f"{config}: {problem}")
        raise typer.Exit(2) from None
    except DaemonAlreadyRunning as error:
        err.print(str(error), style="red")
        raise typer.Exit(1) from None
    except OSError as error:
        err.print(f"cannot start: {describe_os_error(error)}", style="red")
        raise typer.Exit(1) from None


def _log_warnings(path: Path, config: Config) -> None:
    """What ``check`` would warn about, in the daemon's log before anything starts."""
    from loguru import logger

    for warning in config_warnings(config):
        logger.warning("{}: {}", path, warning)


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
    out.print(f"{config}: ok, {len(loaded.service)} service(s), start order: {names}")
    if loaded.alerts_section == OLD_ALERTS:
        # A note, not a warning: --strict must not fail a file that works as it always did.
        err.print(f"{config}: note: [{OLD_ALERTS}] is the old name of [{ALERTS}]; both work")
    warnings = config_warnings(loaded)
    if warnings:
        err.print(f"{config}: {len(warnings)} warning(s)", style="yellow")
        for warning in warnings:
            err.print(f"  {warning}")
        if strict:
            raise typer.Exit(2)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write it.")] = DEFAULT_CONFIG,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter configuration."""
    if path.exists() and not force:
        err.print(f"{path} exists; use --force to overwrite it")
        raise typer.Exit(1)
    path.write_text(resources.files("heartwatch").joinpath("starter.toml").read_text())
    out.print(f"wrote {path}; check it with: heartwatch check -c {path}")


@app.command()
def status(
    config: ConfigOption = DEFAULT_CONFIG,
    url: UrlOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show every service: state, pid, restarts, heartbeat age, data, last reason."""
    services = _request("GET", "/api/v1/services", config, url)
    if as_json:
        out.print_json(json.dumps(services))
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    for column in ("SERVICE", "STATE", "PID", "RESTARTS", "LAST BEAT", "DATA", "REASON"):
        table.add_column(column)
    for service in services:
        data = ", ".join(
            f"{kind} {d['count']}" + (f" ({_age(d['last_age'])} ago)" if d["last_age"] else "")
            for kind, d in service["data"].items()
        )
        # Cells as Text: a str cell would be parsed as markup whatever the console says.
        table.add_row(
            Text(str(service["name"])),
            _coloured_state(str(service["state"])),
            Text(str(service["pid"] or "-")),
            Text(str(service["restarts"])),
            Text(_age(service["last_heartbeat_age"])),
            Text(data or "-"),
            Text(str(service["reason"])),
        )
    out.print(table)


def _control(verb: str, name: str, config: Path, url: str | None) -> None:
    from rich.text import Text

    service = _request("POST", f"/api/v1/services/{name}/{verb}", config, url)
    state = _coloured_state(str(service["state"]))
    out.print(Text.assemble(f"{name}: ", state, f" ({service['reason']})"))


@app.command()
def restart(name: str, config: ConfigOption = DEFAULT_CONFIG, url: UrlOption = None) -> None:
    """Restart a service and the services that require it."""
    _control("restart", name, config, url)


@app.command()
def stop(name: str, config: ConfigOption = DEFAULT_CONFIG, url: UrlOption = None) -> None:
    """Stop a service (and, first, the services that require it)."""
    _control("stop", name, config, url)


@app.command()
def start(name: str, config: ConfigOption = DEFAULT_CONFIG, url: UrlOption = None) -> None:
    """Start a service (and, first, what it requires); clears failed and exited."""
    _control("start", name, config, url)


AddrOption = Annotated[
    str | None,
    typer.Option(
        "--addr",
        help="The daemon's heartbeat address, host:port (default: HEARTWATCH_ADDR, "
        "else the config file's).",
    ),
]


@app.command()
def beat(
    service: Annotated[str, typer.Argument(help="The service the message is from.")],
    kind: Annotated[
        str, typer.Option(help="heartbeat, or a data kind such as poiid.")
    ] = "heartbeat",
    data: Annotated[str | None, typer.Option(help="A JSON payload for a data event.")] = None,
    addr: AddrOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Send one heartbeat or data event, for shell scripts."""
    message: dict[str, Any] = {"type": kind, "service": service}
    if data is not None:
        try:
            message["data"] = json.loads(data)
        except ValueError as error:
            err.print(f"--data is not JSON: {error}")
            raise typer.Exit(2) from None
    try:
        _send(_heartbeat_address(addr, config), message)
    except OSError as error:
        err.print(f"cannot reach the heartwatch daemon: {describe_os_error(error)}", style="red")
        raise typer.Exit(1) from None


@app.command(
    name="exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def exec_(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="The service the command runs as.")],
    addr: AddrOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Run a command as SERVICE: report its start, pass its output through, report its exit code.

    Example (cron): heartwatch exec backup -- /usr/local/bin/backup.sh --full
    """
    command = list(ctx.args)
    if not command:
        err.print("usage: heartwatch exec SERVICE -- COMMAND [ARGS...]")
        raise typer.Exit(2)
    address = _heartwatch_address_or_none(addr, config)
    _report(address, {"type": "start", "service": service})
    try:
        returncode = subprocess.run(command).returncode
    except OSError as error:
        err.print(f"cannot run {command[0]}: {describe_os_error(error)}")
        returncode = 127
    if returncode == 0:
        _report(address, {"type": "heartbeat", "service": service})
    else:
        _report(address, {"type": "fail", "service": service, "reason": describe_exit(returncode)})
    raise typer.Exit(returncode if returncode >= 0 else 128 - returncode)


def _report(address: tuple[str, int] | None, message: dict[str, Any]) -> None:
    """Best effort: a job must run whether or not the daemon is there to hear of it."""
    if address is None:
        return
    try:
        _send(address, message)
    except OSError as error:
        err.print(f"heartwatch: could not report {message['type']!r}: {describe_os_error(error)}")


def _send(address: tuple[str, int], message: dict[str, Any]) -> None:
    """One message, with the token when the daemon is on another machine."""
    token = token_for(address, None)
    send_once(address, message if token is None else {**message, "token": token})


def _heartwatch_address_or_none(addr: str | None, config: Path) -> tuple[str, int] | None:
    try:
        return _heartbeat_address(addr, config)
    except typer.Exit:
        return None


def _heartbeat_address(addr: str | None, config: Path) -> tuple[str, int]:
    text = addr or os.environ.get("HEARTWATCH_ADDR")
    if text is None and config.exists():
        loaded = _load(config)
        info = read_daemon_info(loaded.resolve(loaded.daemon.state_dir)) or {}
        text = info.get("tcp")
        if not text:
            return loaded.server.tcp
    try:
        return parse_address(text or DEFAULT_HEARTBEAT_ADDRESS)
    except ValueError as error:
        err.print(f"--addr: {error}")
        raise typer.Exit(2) from None


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
    token: Annotated[
        str | None,
        typer.Option(
            envvar="HEARTWATCH_TOKEN", help="The daemon's token (default: the config file's)."
        ),
    ] = None,
) -> None:
    """Show a service's output or a log file, then follow it; colours kept in a terminal."""
    from heartwatch.client.tail import TailRefused, TailUsage, follow_log, tail_url

    base = _daemon_url(config, url)
    token = token or _token(config)
    try:
        chosen = _tail_target(target, daemon, config, url)
    except TailUsage as usage:
        err.print(f"{target or 'tail'}: {usage}", style="red")
        raise typer.Exit(1) from None

    def url_for(count: int) -> str:
        # Asked again at each reconnect: a restarted daemon may listen somewhere else.
        where = base if url is not None else _daemon_url(config, None)
        return tail_url(
            where,
            chosen.name,
            is_service=chosen.is_service,
            lines=count,
            follow=follow,
            grep=grep,
            token=token,
        )

    try:
        asyncio.run(follow_log(url_for, lines, reconnect=follow))
    except TailRefused as refused:
        err.print(f"{target or chosen.name}: {refused.reason}", style="red")
        raise typer.Exit(1) from None
    except OSError as error:
        err.print(f"no heartwatch daemon answers at {base}: {error}", style="red")
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
        services=[service.name for service in loaded.service],
        log_dir=os.path.realpath(log_dir),
        daemon_log=os.path.realpath(log_dir / loaded.daemon.log_file),
        local_path=local,
    )


@app.command(name="alerts-test")
def alerts_test(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Send a test message through every [alerts] URL; say which ones delivered it.

    Also as notify-test, its name from when [alerts] was [notify]."""
    from heartwatch.daemon.alerts import send_test

    loaded = _load(config)
    section = loaded.alerts_section  # the keys named as the file names them
    if not loaded.alerts.urls:
        err.print(f"{config}: [{section}] urls is empty: there is nothing to test")
        raise typer.Exit(2)
    results = asyncio.run(send_test(loaded.alerts.urls, loaded.alerts.timeout))
    from rich.text import Text

    for index, scheme, delivered in results:
        verdict = ("delivered", "green") if delivered else ("not delivered", "red")
        out.print(Text.assemble(f"{section}.urls[{index}] ({scheme}://…): ", verdict))
    if not all(delivered for _, _, delivered in results):
        raise typer.Exit(1)


# The name it had while [alerts] was [notify]: scripts and habits keep working.
app.command(name="notify-test", help=alerts_test.__doc__, hidden=True)(alerts_test)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(heartwatch.__version__)


def _daemon_url(config: Path, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    loaded = _load(config)
    info = read_daemon_info(loaded.resolve(loaded.daemon.state_dir)) or {}
    if info.get("http"):
        return f"http://{info['http']}"
    if loaded.server.http is None:
        err.print(f"{config}: [server] http is off; the daemon has no API to ask")
        raise typer.Exit(2)
    host, port = loaded.server.http
    return f"http://{host}:{port}"


def _token(config: Path) -> str | None:
    """The token to show the daemon: ``HEARTWATCH_TOKEN``, else the config file's."""
    token = os.environ.get("HEARTWATCH_TOKEN")
    if token:
        return token
    return _load(config).server.token if config.exists() else None


def _request(method: str, path: str, config: Path, url: str | None) -> Any:
    base = _daemon_url(config, url)
    request = urllib.request.Request(base + path, method=method)
    token = _token(config)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        try:
            message = json.load(error).get("message", error.reason)
        except (ValueError, AttributeError):
            message = error.reason
        err.print(str(message), style="red")
        raise typer.Exit(1) from None
    except OSError as error:
        why = error.reason if isinstance(error, urllib.error.URLError) else error
        text = describe_os_error(why) if isinstance(why, OSError) else str(why)
        err.print(f"no heartwatch daemon answers at {base}: {text}", style="red")
        raise typer.Exit(1) from None


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


_STATE_COLOURS = {
    "running": "green",
    "starting": "cyan",
    "unresponsive": "red",
    "restarting": "yellow",
    "backoff": "yellow",
    "failed": "bold red",
    "exited": "magenta",
    "stopping": "yellow",
    "stopped": "dim",
}


def _coloured_state(state: str) -> Text:
    from rich.text import Text

    return Text(state, style=_STATE_COLOURS.get(state, "white"))
