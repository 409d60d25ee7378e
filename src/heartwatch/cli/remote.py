"""Finding the running daemon and asking its HTTP API, for every command that talks to it.

Quick on purpose (``heartwatch status`` should answer before ``supervisorctl status`` does):
standard library only, and the config file is read without the schema when it can be. A
command needs four keys of it (``[daemon] state_dir``, ``[server] http``, ``tcp``, ``token``);
``read_place`` takes them from the TOML as they are. Anything unusual about them (a value of
the wrong type, a file that is not TOML) is left to the full reading (``config.load_config``,
pydantic), which reports every problem at its key path. The rest of the file is not
validated here: the daemon runs on what it read at its start (or its last reload), and
``heartwatch check`` is where a file is checked.

Errors become one plain line and an exit code (``Refused``), never a traceback. ``beat``
imports this module for ``Refused`` alone: the rest is imported by what uses it.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: see heartwatch/__init__.py
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

TOKEN_HINT = "pass --token or set HEARTWATCH_TOKEN"
REQUEST_TIMEOUT = 10.0  # seconds for one API call (a reload restarts nothing before answering)


class Refused(Exception):
    """A command cannot go on: ``message`` for the person, ``exit_code`` for the shell."""

    def __init__(self, message: str, exit_code: int = 1, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.body = body  # the daemon's JSON answer, when it gave one


class DaemonPlace:
    """Where the daemon of a config file is reached, and the token to show it."""

    __slots__ = ("http_url", "state_dir", "tcp", "token")

    def __init__(
        self, http_url: str | None, tcp: tuple[str, int], token: str | None, state_dir: Path
    ) -> None:
        self.http_url = http_url  # None: [server] http is off
        self.tcp = tcp
        self.token = token  # the file's [server] token
        self.state_dir = state_dir  # where daemon.json is


def read_place(config: Path) -> DaemonPlace | None:
    """The place from the file's few keys and the daemon's ``daemon.json``, or ``None`` when
    the file must be read in full (missing, not TOML, or one of the keys unusual)."""
    import tomllib
    from pathlib import Path

    from heartwatch.core.addresses import (
        DEFAULT_HEARTBEAT_ADDRESS,
        DEFAULT_HTTP_ADDRESS,
        parse_address,
    )
    from heartwatch.daemon.daemon_info import DEFAULT_STATE_DIR

    try:
        document = tomllib.loads(config.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    server = document.get("server", {})
    daemon = document.get("daemon", {})
    if not isinstance(server, dict) or not isinstance(daemon, dict):
        return None
    state_dir = daemon.get("state_dir", DEFAULT_STATE_DIR)
    http = server.get("http", DEFAULT_HTTP_ADDRESS)
    tcp = server.get("tcp", DEFAULT_HEARTBEAT_ADDRESS)
    token = server.get("token")
    if not isinstance(state_dir, str) or not (token is None or isinstance(token, str)):
        return None
    try:
        http_address, tcp_address = parse_address(http), parse_address(tcp)
    except ValueError:
        return None
    folder = Path(state_dir)
    folder = folder if folder.is_absolute() else config.resolve().parent / folder
    return place_of(folder, http_address, tcp_address, token)


def place_of(
    state_dir: Path,
    http: tuple[str, int] | None,
    tcp: tuple[str, int],
    token: str | None,
) -> DaemonPlace:
    """Where the daemon says it listens (``daemon.json``: ports asked as 0 are known only
    there), else where the file says it should."""
    from heartwatch.core.addresses import parse_address
    from heartwatch.daemon.daemon_info import read_daemon_info

    info = read_daemon_info(state_dir) or {}
    if info.get("http"):
        url: str | None = f"http://{info['http']}"
    else:
        url = None if http is None else f"http://{_host(http[0])}:{http[1]}"
    if info.get("tcp"):
        import contextlib

        with contextlib.suppress(ValueError):  # then where the file says
            tcp = parse_address(str(info["tcp"]))
    return DaemonPlace(url, tcp, token, state_dir)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def locate(config: Path, url: str | None) -> tuple[str, DaemonPlace | None]:
    """The daemon's API address (``--url``, else the config file's daemon) and its place (for
    the token), read quickly when it can be, else in full (``Refused``, exit 2: the file's
    problems)."""
    if url is not None:
        place = (read_place(config) or read_place_fully(config)) if config.exists() else None
        return url.rstrip("/"), place
    place = read_place(config) or read_place_fully(config)
    if place.http_url is None:
        raise Refused(f"{config}: [server] http is off; the daemon has no API to ask", 2)
    if place.http_url.endswith(":0"):  # only the daemon knows its port, and it is not there
        where = place.state_dir / "daemon.json"
        raise Refused(f"no heartwatch daemon is running for {config}: no {where}")
    return place.http_url, place


def read_place_fully(config: Path) -> DaemonPlace:
    """``read_place`` through the schema: ``Refused`` (exit 2) lists the file's problems."""
    from heartwatch.config import ConfigError, load_config

    try:
        loaded = load_config(config)
    except ConfigError as error:
        from heartwatch.cli.text import problem_lines

        lines = problem_lines(error.source or config, error.problems)
        raise Refused("\n".join(lines), exit_code=2) from None
    server = loaded.server
    return place_of(loaded.resolve(loaded.daemon.state_dir), server.http, server.tcp, server.token)


def token_to_show(given: str | None, place: DaemonPlace | None) -> str | None:
    """``--token``, else ``HEARTWATCH_TOKEN``, else the config file's ``[server] token``."""
    return given or os.environ.get("HEARTWATCH_TOKEN") or (place.token if place else None)


def call(
    base_url: str,
    method: str,
    path: str,
    *,
    token: str | None,
    body: Any = None,
    timeout: float = REQUEST_TIMEOUT,
) -> Any:
    """One API call: its JSON answer, or ``Refused`` with the daemon's message (and the
    token's remedy when that was the problem)."""
    import http.client
    import json
    from urllib.parse import urlsplit

    from heartwatch.daemon.oserrors import describe_os_error

    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"--url {base_url}: expected http://host:port", exit_code=2)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=timeout)
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    payload = None if body is None else json.dumps(body).encode()
    if payload is not None:
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, parts.path.rstrip("/") + path, payload, headers)
        response = connection.getresponse()
        data = response.read()
    except OSError as error:
        why = describe_os_error(error)
        raise Refused(f"no heartwatch daemon answers at {base_url}: {why}") from None
    except http.client.HTTPException as error:
        why = type(error).__name__
        raise Refused(f"the daemon at {base_url} answered badly: {why}") from None
    finally:
        connection.close()
    try:
        answer = json.loads(data) if data else None
    except ValueError:
        answer = None
    if response.status < 400:
        return answer
    raise refusal(response.status, answer, response.reason)


def refusal(status: int, answer: Any, reason: str) -> Refused:
    code = answer.get("code") if isinstance(answer, dict) else None
    message = str(answer.get("message", reason)) if isinstance(answer, dict) else reason
    if status == 401:
        message = f"the daemon needs a token: {TOKEN_HINT} ({message})"
    elif status == 403 and code == "forbidden":
        message = f"{message}: the control token is needed ({TOKEN_HINT})"
    # 422: the request itself was wrong (a signal name, a count): a usage problem.
    return Refused(message, exit_code=2 if status == 422 else 1, body=answer)
