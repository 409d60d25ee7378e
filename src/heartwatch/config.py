"""The configuration file: its schema, its validation, and errors that name the key.

``load_config`` reads ``heartwatch.toml``; ``parse_config`` validates an already-decoded mapping.
Every problem is reported as a ``Problem`` whose ``path`` is the key path a person would type
(``service[1] (collector).heartbeat_timeout``), and all problems found are reported together,
cross-key checks included, so fixing a file takes one round, not one per mistake. Relative
paths in the file are relative to the file. ``config_warnings`` says what would keep a valid
file from running as meant (an executable not found, a missing ``cwd``).
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import shutil
import signal
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from heartwatch.core.addresses import (
    DEFAULT_HEARTBEAT_ADDRESS,
    DEFAULT_HTTP_ADDRESS,
    is_loopback,
    parse_address,
)
from heartwatch.core.graph import DependencyCycleError, DependencyGraph
from heartwatch.core.liveness import LivenessRules
from heartwatch.core.redact import redact
from heartwatch.core.spec import QueueSpec, RestartRules, ServiceSpec
from heartwatch.core.units import parse_duration, parse_size
from heartwatch.core.wire import HEARTBEAT, is_data_kind

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ALERTS, OLD_ALERTS = "alerts", "notify"  # [notify] until it was confused with sd_notify


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration, at a key path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists every reason found."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(str(p) for p in self.problems))


def command_argv(command: str | Sequence[str]) -> list[str]:
    """A service's ``command`` as the program and its arguments: a string is split as a shell
    would (no shell runs it), a list is taken as it is."""
    return shlex.split(command) if isinstance(command, str) else list(command)


def parse_signal(value: object) -> signal.Signals:
    """``"TERM"``, ``"SIGTERM"`` or ``15`` to ``signal.SIGTERM``."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return signal.Signals(value)
        if isinstance(value, str):
            name = value.strip().upper()
            return signal.Signals[name if name.startswith("SIG") else "SIG" + name]
    except (KeyError, ValueError):
        pass
    raise ValueError(f'{value!r} is not a signal name or number (e.g. "TERM", "INT", 15)')


def parse_ready(value: object) -> str | float:
    """``"heartbeat"`` (ready at the first message), ``"notify"`` (ready when it says so:
    ``READY=1`` or ``"ready": true``) or a fixed delay after spawn."""
    if value in ("heartbeat", "notify"):
        return str(value)
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError('expected "heartbeat", "notify" or a delay such as "60s"') from None


Address = Annotated[tuple[str, int], BeforeValidator(parse_address)]
Signal = Annotated[signal.Signals, BeforeValidator(parse_signal)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    """``[server]``: where the daemon listens."""

    tcp: Address = DEFAULT_HEARTBEAT_ADDRESS
    http: Address | None = DEFAULT_HTTP_ADDRESS
    default_service: str | None = None
    max_connections: int = Field(default=1024, ge=1)
    max_line_bytes: Size = Field(default=64 * 1024, ge=256)
    # An HTTP request must arrive within this of connecting (or of its first byte on a kept-
    # alive connection); at most http_max_pending connections may be still sending one.
    http_header_timeout: Duration = Field(default=10.0, gt=0, le=3600)
    http_max_pending: int = Field(default=256, ge=1)
    # HTTP and websocket connections open at once (lowered to fit the open-files limit).
    http_max_connections: int = Field(default=1024, ge=1)
    token: str | None = None  # everything, control included (or HEARTWATCH_TOKEN)
    read_token: str | None = None  # reading only: status, events, logs, metrics
    ingest_token: str | None = None  # heartbeats from other machines (the token works too)

    @field_validator("token", "read_token", "ingest_token")
    @classmethod
    def _check_token(cls, value: str | None) -> str | None:
        if value is not None and (len(value) < 8 or not value.isprintable() or " " in value):
            raise ValueError("a token is at least 8 printable characters without spaces")
        return value


class HistoryConfig(_Section):
    """``[history]``: what happened, kept in SQLite."""

    path: Path | None = None  # default: <state_dir>/history.sqlite3
    retention: Duration = 30 * 86400.0


class AlertsConfig(_Section):
    """``[alerts]`` (``[notify]`` before: still read): alerts through apprise URLs."""

    urls: list[str] = []  # dingtalk://, wecom://, feishu://, tgram://, mailto://, json://, ...
    rate_limit: int = Field(default=10, ge=1)  # alerts per service per rate_window; gave-up always
    rate_window: Duration = 3600.0
    recovered_after: Duration = 10.0  # running this long again: recovered (not at once)
    retries: int = Field(default=3, ge=0)  # a failed send is tried again this many times
    retry_delay: Duration = 5.0  # before the first retry; doubled each time
    timeout: Duration = 30.0  # one send, all URLs together


class LogsConfig(_Section):
    """``[logs]``: live logs in the browser and the terminal."""

    roots: list[Path] = []  # folders whose files may be viewed (service output always may)
    initial_lines: int = Field(default=200, ge=0)
    max_initial_lines: int = Field(default=10_000, ge=0)
    ping_interval: Duration = 20.0  # websocket ping; a viewer that does not pong is dropped
    viewer_buffer_lines: int = Field(default=10_000, ge=100)  # history per file; behind it: skip
    partial_line_flush: Duration = 0.5  # show a line still missing its newline after this


class DaemonConfig(_Section):
    """``[daemon]``: where the daemon keeps its state and logs, and how it logs."""

    state_dir: Path = Path(".heartwatch")
    log_dir: Path = Path("logs")
    output_max_bytes: Size = 10 * 1024 * 1024
    output_backups: int = Field(default=5, ge=0)
    log_file: str = "heartwatch.log"
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = "INFO"
    # loguru rotation: one condition, or a list of them (a new file when any is met).
    log_rotation: str | list[str] = ["1 week", "50 MB"]
    log_retention: str = "2 months"

    @field_validator("log_rotation", mode="before")
    @classmethod
    def _check_rotation(cls, value: object) -> object:
        # The conditions themselves are parsed by loguru when the log is opened (logs.py).
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
            return value
        raise ValueError(
            'expected a rotation such as "1 week" or "50 MB", or a list of them '
            '(["1 week", "50 MB"]: a new file when any is met)'
        )


class QueueConfig(_Section):
    """``queue = {…}`` of a service: the RabbitMQ queue it consumes, watched for stalls."""

    url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    name: str
    stalled_after: Duration = 120.0
    check_interval: Duration | None = None  # default: stalled_after / 4, from 1 s to 30 s

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        # Checked as pika will read it, so that `check` says what the watch would only say
        # at run time; the message never repeats the URL (it may hold a password).
        parts = urlsplit(value)
        if "@" not in parts.netloc and "@" in value.partition("://")[2]:
            raise ValueError(
                "the queue URL's user-info holds a raw '/', '?' or '#': percent-encode them "
                "in the password (%2F, %3F, %23)"
            )
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError("a queue URL starts with amqp:// or amqps://")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            raise ValueError("the port of the queue URL is not a number from 0 to 65535") from None
        if not parts.hostname:
            raise ValueError("the queue URL names no host")
        return value

    @property
    def interval(self) -> float:
        if self.check_interval is not None:
            return max(0.05, self.check_interval)
        return min(30.0, max(1.0, self.stalled_after / 4))

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # repr, str and rich show the URL without its password (tracebacks, debug prints).
        for name, value in super().__repr_args__():
            yield name, redact(value) if name == "url" else value


class ServiceConfig(_Section):
    """``[[service]]``: one part of the pipeline."""

    name: str
    command: str | list[str] | None = None
    cwd: Path | None = None
    env: dict[str, str] = {}
    requires: list[str] = []
    # "heartbeat": ready at the first message; a duration: ready that long after spawn.
    ready: Annotated[str | float | None, BeforeValidator(parse_ready)] = None
    startup_grace: Duration = 60.0
    heartbeat_timeout: Duration | None = None
    data_timeout: dict[str, Duration] = {}
    restart: Literal["service", "group"] = "service"
    autorestart: Literal["always", "on-failure", "never"] = "always"
    stop_signal: Signal = signal.SIGTERM
    stop_timeout: Duration = 10.0
    on_down: str | None = None
    on_down_timeout: Duration = 60.0
    backoff_initial: Duration = 1.0
    backoff_max: Duration = 60.0
    backoff_factor: float = Field(default=2.0, ge=1.0)
    backoff_jitter: float = Field(default=0.1, ge=0.0, le=1.0)
    healthy_after: Duration = 60.0
    max_restarts: int = Field(default=5, ge=0)
    restart_window: Duration = 300.0
    queue: QueueConfig | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                "a service name is 1-64 letters, digits, '_', '.', '-' and starts with a letter "
                "or digit"
            )
        return value

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is None:
            return value
        try:
            argv = command_argv(value)
        except ValueError as error:
            raise ValueError(f"cannot split the command like a shell would: {error}") from None
        if not argv:
            raise ValueError("a command cannot be empty; leave it out for a watch-only service")
        if any("\0" in arg for arg in argv):
            raise ValueError("a command cannot contain a NUL character")
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"{name!r} is not an environment variable name")
            if "\0" in text:
                raise ValueError(f"the value of {name} cannot contain a NUL character")
        return value

    @field_validator("data_timeout")
    @classmethod
    def _check_kinds(cls, value: dict[str, float]) -> dict[str, float]:
        for kind in value:
            if not is_data_kind(kind):
                hint = " (use heartbeat_timeout for beats)" if kind == HEARTBEAT else ""
                raise ValueError(f"{kind!r} is not a data kind{hint}")
        return value

    @property
    def watch_only(self) -> bool:
        """No command: the service runs elsewhere and is only watched."""
        return self.command is None

    @property
    def ready_on_message(self) -> bool:
        return self.ready == "heartbeat" or (
            self.ready is None and (self.heartbeat_timeout is not None or bool(self.data_timeout))
        )

    @property
    def ready_on_notice(self) -> bool:
        """Ready only when it says so (``READY=1``, ``"ready": true``, ``ready()``)."""
        return self.ready == "notify"

    @property
    def ready_delay(self) -> float:
        """Seconds after spawn at which a service that never beats counts as ready."""
        return self.ready if isinstance(self.ready, float) else 0.0

    def spec(self) -> ServiceSpec:
        """What the watchdog is told about this service (the core never sees this schema)."""
        return ServiceSpec(
            name=self.name,
            liveness=LivenessRules(
                ready_on_message=self.ready_on_message,
                ready_delay=self.ready_delay,
                startup_grace=self.startup_grace,
                heartbeat_timeout=self.heartbeat_timeout,
                data_timeout=dict(self.data_timeout),
                ready_on_notice=self.ready_on_notice,
            ),
            requires=tuple(self.requires),
            watch_only=self.watch_only,
            has_on_down=self.on_down is not None,
            restart=self.restart,
            autorestart=self.autorestart,
            restart_rules=RestartRules(
                initial=self.backoff_initial,
                maximum=self.backoff_max,
                factor=self.backoff_factor,
                jitter=self.backoff_jitter,
                healthy_after=self.healthy_after,
                max_restarts=self.max_restarts,
                window=self.restart_window,
            ),
            queue=None
            if self.queue is None
            else QueueSpec(name=self.queue.name, stalled_after=self.queue.stalled_after),
        )


class Config(_Section):
    """The whole file."""

    server: ServerConfig = ServerConfig()
    daemon: DaemonConfig = DaemonConfig()
    logs: LogsConfig = LogsConfig()
    history: HistoryConfig = HistoryConfig()
    alerts: AlertsConfig = AlertsConfig()
    service: list[ServiceConfig] = []
    # Filled by load_config: the folder relative paths are resolved against.
    base_dir: Path = Path(".")
    # What the file calls [alerts]: "notify" in files written before the rename.
    _alerts_section: str = PrivateAttr(default=ALERTS)

    @property
    def alerts_section(self) -> str:
        """The name the file gave the alerts section, to speak of its keys as it does."""
        return self._alerts_section

    def services_by_name(self) -> dict[str, ServiceConfig]:
        return {s.name: s for s in self.service}

    def graph(self) -> DependencyGraph:
        return DependencyGraph({s.name: s.requires for s in self.service})

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path

    @property
    def history_path(self) -> Path:
        if self.history.path is not None:
            return self.resolve(self.history.path)
        return self.resolve(self.daemon.state_dir) / "history.sqlite3"


def parse_config(
    data: Mapping[str, Any],
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate a decoded TOML document; raise ``ConfigError`` listing every problem.

    ``environ`` (default: ``os.environ``) may supply the token as ``HEARTWATCH_TOKEN``.
    """
    environ = os.environ if environ is None else environ
    problems: list[Problem] = []
    if "base_dir" in data:
        problems.append(Problem("base_dir", _unknown_key("base_dir", Config)))
    data, alerts_section, rename_problems = _with_alerts_renamed(data)
    problems.extend(rename_problems)
    config: Config | None = None
    try:
        config = Config.model_validate({**data, "base_dir": base_dir or Path(".")})
    except ValidationError as error:
        problems.extend(_problem_from(e) for e in error.errors())
    # Checks across keys read the raw document, so they are reported in the same round as
    # field errors, even when some service entries are broken.
    problems.extend(_cross_check(data))
    # So are the checks on the server and alerts sections: on the keys that are valid, even
    # when other keys (or other sections) are not.
    raw_server = data.get("server")
    raw_server = raw_server if isinstance(raw_server, Mapping) else {}
    if config is not None:
        server, broken = config.server, frozenset[str]()
    else:
        server, broken = _valid_part(ServerConfig, raw_server)
    server, token_problems = _with_environment_token(server, environ)
    problems.extend(token_problems)
    problems.extend(_exposure_problems(server, broken))
    raw_alerts = data.get(ALERTS)
    raw_urls = raw_alerts.get("urls") if isinstance(raw_alerts, Mapping) else None
    problems.extend(_notification_url_problems(raw_urls if isinstance(raw_urls, list) else []))
    if problems or config is None:
        problems = _under_section_name(problems, alerts_section)
        raise ConfigError(_name_services(problems, data))
    if server is not config.server:
        config = config.model_copy(update={"server": server})
    config._alerts_section = alerts_section
    return config


def _with_alerts_renamed(
    data: Mapping[str, Any],
) -> tuple[Mapping[str, Any], str, list[Problem]]:
    """A file's ``[notify]`` read as ``[alerts]``, its name before; and the name it uses.

    Both in one file is an error naming both: which one was meant cannot be guessed."""
    if OLD_ALERTS not in data:
        return data, ALERTS, []
    if ALERTS in data:
        both = Problem(
            OLD_ALERTS,
            f"[{OLD_ALERTS}] is the old name of [{ALERTS}]; the file has both: keep [{ALERTS}]",
        )
        return {k: v for k, v in data.items() if k != OLD_ALERTS}, ALERTS, [both]
    renamed = {(ALERTS if key == OLD_ALERTS else key): value for key, value in data.items()}
    return renamed, OLD_ALERTS, []


def _under_section_name(problems: Sequence[Problem], alerts_section: str) -> list[Problem]:
    """Problems in the alerts section, named as the file names it."""
    if alerts_section == ALERTS:
        return list(problems)
    renamed = []
    for problem in problems:
        path = problem.path
        if path == ALERTS or path.startswith((ALERTS + ".", ALERTS + "[")):
            problem = Problem(alerts_section + path[len(ALERTS) :], problem.message)
        renamed.append(problem)
    return renamed


def _with_environment_token(
    server: ServerConfig, environ: Mapping[str, str]
) -> tuple[ServerConfig, list[Problem]]:
    """``HEARTWATCH_TOKEN`` stands in for ``[server] token`` (secrets stay out of files);
    it is held to the same rules, and a bad one is reported under its own name."""
    token = environ.get("HEARTWATCH_TOKEN")
    if not token or server.token:
        return server, []
    try:
        ServerConfig._check_token(token)
    except ValueError as error:
        return server, [Problem("HEARTWATCH_TOKEN", str(error))]
    return server.model_copy(update={"token": token}), []


_M = TypeVar("_M", bound=BaseModel)


def _valid_part(model: type[_M], raw: Mapping[str, Any]) -> tuple[_M, frozenset[str]]:
    """The section made of its keys that are valid on their own (the rest at their defaults),
    and the keys that were given but are not valid (their problems are reported already)."""
    good: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in model.model_fields:
            continue
        try:
            model.model_validate({key: value})
        except ValidationError:
            continue
        good[key] = value
    return model.model_validate(good), frozenset(raw.keys() - good.keys())


def _notification_url_problems(urls: Sequence[object]) -> list[Problem]:
    """Each URL apprise would not take (a URL that is not a string is the schema's problem)."""
    if not any(isinstance(url, str) for url in urls):
        return []
    import apprise  # only when alerts are configured: it takes a quarter of a second

    problems = []
    for index, url in enumerate(urls):
        if isinstance(url, str) and not apprise.Apprise().add(url):
            # The scheme only: a notification URL usually carries a secret.
            scheme = url.partition("://")[0] if "://" in url else "?"
            problems.append(
                Problem(
                    f"{ALERTS}.urls[{index}]",
                    f"({scheme}://…) is not a notification URL apprise accepts; "
                    "see https://github.com/caronc/apprise/wiki",
                )
            )
    return problems


def _exposure_problems(server: ServerConfig, broken: frozenset[str] = frozenset()) -> list[Problem]:
    """Listening beyond this machine needs a token: strangers must not steer the pipeline,
    nor fake its heartbeats. A read-only token alone would leave control open to all.

    ``broken``: keys given but not valid (already reported): a token that is there but too
    short is not also "required"."""
    token = bool(server.token) or "token" in broken
    ingest_token = bool(server.ingest_token) or "ingest_token" in broken
    problems = []
    if server.read_token and not token:
        problems.append(
            Problem("server.read_token", "needs server.token too (else everyone may control)")
        )
    exposed_http = server.http is not None and not is_loopback(server.http[0])
    if exposed_http and not token:
        problems.append(_exposure("http", server.http, "server.token"))
    exposed_tcp = not is_loopback(server.tcp[0])
    if exposed_tcp and not (token or ingest_token):
        problems.append(_exposure("tcp", server.tcp, "server.token (or server.ingest_token)"))
    return problems


def _exposure(key: str, address: tuple[str, int] | None, needed: str) -> Problem:
    host = address[0] if address else "?"
    return Problem(
        needed.split(" ")[0],
        f"required when server.{key} listens on {host} (not loopback); "
        "set it here or in HEARTWATCH_TOKEN",
    )


def load_config(path: Path | str) -> Config:
    """Read and validate a TOML file; raise ``ConfigError`` naming the file and every problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError([Problem("", f"cannot read: {error.strerror}")], str(path)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError([Problem("", f"not valid TOML: {error}")], str(path)) from None
    if not data:
        # Defaults alone would run a daemon that supervises nothing: a wrong path, surely.
        message = (
            "the file is empty: there is nothing to run (heartwatch init writes a starter file)"
        )
        raise ConfigError([Problem("", message)], str(path))
    try:
        return parse_config(data, base_dir=path.resolve().parent)
    except ConfigError as error:
        raise ConfigError(error.problems, str(path)) from None


def _problem_from(error: Mapping[str, Any]) -> Problem:
    kind = error.get("type")
    raw_loc = tuple(error["loc"])
    unknown = raw_loc[-1] if kind == "extra_forbidden" and raw_loc else None
    loc, annotation = _key_path(raw_loc[:-1] if unknown is not None else raw_loc)
    if unknown is not None:
        loc.append(unknown)
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = str(error["msg"])
    if unknown is not None and isinstance(unknown, str):
        models = [
            m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)
        ]
        message = _unknown_key(unknown, models[0] if models else None)
    elif kind == "missing":
        message = "required, and missing"
    elif kind in ("model_type", "dict_type"):
        message = "expected a table"
    elif kind == "list_type" and loc == ["service"]:
        message = "expected [[service]] tables (an array of tables), not one [service] table"
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return Problem(path, message)


def _unknown_key(key: str, model: type[BaseModel] | None) -> str:
    """``unknown key `stat_dir`; did you mean `state_dir`?`` (the close known key, if any)."""
    known = [name for name in (model.model_fields if model else ()) if name != "base_dir"]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)  # not bogus -> logs
    return f"unknown key `{key}`" + (f"; did you mean `{close[0]}`?" if close else "")


def _key_path(loc: Sequence[str | int]) -> tuple[list[str | int], object]:
    """The parts of pydantic's error location a person would type, and the type they lead to.

    The location is walked along the schema: a part is kept when it is a field of the model
    reached so far, an index into a list, or a key of a table of values (``data_timeout``,
    ``env``). The other parts are the names pydantic gives the branches of a union
    (``command.list[str]``), which tell a user nothing; they are known by not being keys."""
    kept: list[str | int] = []
    annotation: object = Config
    for part in loc:
        inner = _step(annotation, part)
        if inner is None:
            continue
        kept.append(part)
        annotation = inner
    return kept, annotation


def _step(annotation: object, part: str | int) -> object | None:
    """What ``part`` of a value of type ``annotation`` is, or ``None`` if it is no key of it."""
    for member in _members(annotation):
        origin = get_origin(member)
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get(part) if isinstance(part, str) else None
            if field is not None:
                return field.annotation
        elif origin is list and isinstance(part, int):
            item: object = get_args(member)[0]
            return item
        elif origin is dict and isinstance(part, str):
            value: object = get_args(member)[1]
            return value
    return None


def _members(annotation: object) -> list[object]:
    """The types a value of ``annotation`` may have: unions opened, ``Annotated`` unwrapped."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (UnionType, Union):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [annotation]


_SERVICE_PATH = re.compile(r"service\[(\d+)\]")


def _name_services(problems: Sequence[Problem], data: Mapping[str, Any]) -> list[Problem]:
    """``service[2].x`` becomes ``service[2] (collector).x``: people know services by name.
    A name that is itself invalid is left out (its own problem says why)."""
    raw = data.get("service")
    services = raw if isinstance(raw, list) else []
    named = []
    for problem in problems:
        match = _SERVICE_PATH.match(problem.path)
        if match is not None:
            index = int(match.group(1))
            entry = services[index] if index < len(services) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and _NAME.fullmatch(name):
                path = f"{match.group(0)} ({name}){problem.path[match.end() :]}"
                problem = Problem(path, problem.message)
        named.append(problem)
    return named


def _cross_check(data: Mapping[str, Any]) -> list[Problem]:
    """Problems that involve more than one key: names, requirements, combinations, defaults."""
    raw = data.get("service", [])
    services = [s if isinstance(s, dict) else {} for s in raw] if isinstance(raw, list) else []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, service in enumerate(services):
        where = f"service[{index}]"
        name = service.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(
                    Problem(f"{where}.name", f"{name!r} is already service[{seen[name]}]")
                )
            seen.setdefault(name, index)
        if service.get("on_down") is not None and service.get("command") is not None:
            problems.append(
                Problem(f"{where}.on_down", "on_down is for watch-only services (no command)")
            )
        initial = _duration_or_none(
            service.get("backoff_initial", _default(ServiceConfig, "backoff_initial"))
        )
        maximum = _duration_or_none(
            service.get("backoff_max", _default(ServiceConfig, "backoff_max"))
        )
        if initial is not None and maximum is not None and maximum < initial:
            problems.append(Problem(f"{where}.backoff_max", "must be >= backoff_initial"))
    requires: dict[str, list[str]] = {}
    for index, service in enumerate(services):
        needs = service.get("requires", [])
        name = service.get("name")
        for position, required in enumerate(needs if isinstance(needs, list) else []):
            where = f"service[{index}].requires[{position}]"
            if not isinstance(required, str):
                continue  # the schema reports the type
            if required not in seen:
                problems.append(Problem(where, f"no service {required!r}"))
            elif required == name:
                problems.append(Problem(where, "a service cannot require itself"))
            elif isinstance(name, str):
                requires.setdefault(name, []).append(required)
    try:
        DependencyGraph(requires).start_order()
    except DependencyCycleError as error:
        index = seen[error.cycle[0]]
        problems.append(Problem(f"service[{index}].requires", f"cycle: {' -> '.join(error.cycle)}"))
    server = data.get("server")
    default = server.get("default_service") if isinstance(server, dict) else None
    if isinstance(default, str) and default not in seen:
        problems.append(Problem("server.default_service", f"no service {default!r}"))
    # A service's output goes to <log_dir>/<name>.log, beside the daemon's own log.
    daemon = data.get("daemon", {})
    log_file = (
        daemon.get("log_file", _default(DaemonConfig, "log_file"))
        if isinstance(daemon, dict)
        else None
    )
    if isinstance(log_file, str) and log_file.endswith(".log") and log_file[:-4] in seen:
        index = seen[log_file[:-4]]
        problems.append(
            Problem(
                f"service[{index}].name",
                f"its output would go to {log_file}, the daemon's own log (daemon.log_file)",
            )
        )
    return problems


def _default(model: type[BaseModel], key: str) -> object:
    """A key's default, as the schema says it (the raw document's checks need it too)."""
    return model.model_fields[key].default


def _duration_or_none(value: object) -> float | None:
    try:
        return parse_duration(value)
    except ValueError:
        return None


def config_warnings(config: Config, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """What would keep a valid configuration from running as meant: a command whose
    executable is not found (on the ``PATH`` the service will get: its ``env``'s, else this
    environment's) or not executable, a ``cwd`` that does not exist, no service at all.

    Warnings, not errors: the daemon may run with another ``PATH``, and a folder or program
    may be installed after the check. A service that cannot start is a failed start at run
    time (backoff, then ``failed``), said as plainly as here.
    """
    environ = os.environ if environ is None else environ
    if not config.service:
        return [Problem("service", "no [[service]] in the file: there is nothing to supervise")]
    warnings = []
    for index, service in enumerate(config.service):
        where = f"service[{index}] ({service.name})"
        cwd = config.resolve(service.cwd) if service.cwd is not None else config.base_dir
        if not cwd.is_dir():
            what = "does not exist" if not cwd.exists() else "is not a folder"
            warnings.append(Problem(f"{where}.cwd", f"folder {cwd} {what}"))
            continue  # a relative executable is looked for in it: nothing more to say
        if service.command is None:
            continue
        argv = command_argv(service.command)
        problem = _executable_problem(argv[0], cwd, service.env.get("PATH", environ.get("PATH")))
        if problem is not None:
            warnings.append(Problem(f"{where}.command", problem))
    return warnings


def _executable_problem(program: str, cwd: Path, search_path: str | None) -> str | None:
    """Why ``program`` would not be executed as the supervisor runs it, or ``None``.

    As ``execvp`` does: a name with a slash is a path (relative ones from the service's
    ``cwd``), any other name is looked for on ``PATH``."""
    if "/" not in program:
        if shutil.which(program, path=search_path or os.defpath) is None:
            return f"executable `{program}` not found on PATH"
        return None
    path = cwd / program
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_file() or not os.access(path, os.X_OK):
        return f"{path} is not an executable file"
    return None
