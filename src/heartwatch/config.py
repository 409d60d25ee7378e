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
import grp
import hashlib
import io
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
)
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from heartwatch.core import fleetwire as _fleetwire
from heartwatch.core import probes as _probes
from heartwatch.core.addresses import (
    DEFAULT_HEARTBEAT_ADDRESS,
    DEFAULT_HTTP_ADDRESS,
    is_loopback,
    parse_address,
)
from heartwatch.core.graph import DependencyCycleError, DependencyGraph
from heartwatch.core.instances import (
    INSTANCE_SEPARATOR,
    SET_BY_EXPANSION,
    expand_services,
    instance_count,
    template_fields,
)
from heartwatch.core.limits import ResourceLimits
from heartwatch.core.liveness import LivenessRules
from heartwatch.core.redact import redact
from heartwatch.core.selection import ALL as SELECT_ALL
from heartwatch.core.spec import QueueSpec, RestartByCause, RestartRules, ServiceSpec
from heartwatch.core.units import format_duration, parse_duration, parse_size
from heartwatch.core.wire import HEARTBEAT, is_data_kind
from heartwatch.daemon.daemon_info import DEFAULT_STATE_DIR
from heartwatch.daemon.identity import IdentityError, resolve_run_as

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# As systemd and POSIX shells take them (a name a program can read back with getenv and a
# shell with $NAME); one rule for ``env`` and ``env_file``.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_NAME_IS = "letters, digits and _, not starting with a digit"
_INSTANCE_NAME = re.compile(_NAME.pattern + INSTANCE_SEPARATOR + r"[0-9]{1,4}")
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


def checked_command(value: str | list[str], what: str, if_empty: str = "") -> str | list[str]:
    """``value`` if it is a command that can be run: splittable as a shell would, not empty,
    no NUL; else ``ValueError`` saying why (``what``: "a command", "a probe's command")."""
    try:
        argv = command_argv(value)
    except ValueError as error:
        raise ValueError(f"cannot split the command like a shell would: {error}") from None
    if not argv:
        raise ValueError(f"{what} cannot be empty{if_empty}")
    if any("\0" in arg for arg in argv):
        raise ValueError(f"{what} cannot contain a NUL character")
    return value


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


def checked_amqp_url(value: str, what: str) -> str:
    """``value`` if pika and aio-pika can read it as a broker URL, else ``ValueError`` saying
    why (``what``: "queue URL", "broker URL"). Checked as they will read it, so that `check`
    says what the daemon would only say at run time; the message never repeats the URL (it
    may hold a password)."""
    parts = urlsplit(value)
    if "@" not in parts.netloc and "@" in value.partition("://")[2]:
        raise ValueError(
            f"the {what}'s user-info holds a raw '/', '?' or '#': percent-encode them "
            "in the password (%2F, %3F, %23)"
        )
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"a {what} starts with amqp:// or amqps://")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError(f"the port of the {what} is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"the {what} names no host")
    return value


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

    state_dir: Path = Path(DEFAULT_STATE_DIR)
    log_dir: Path = Path("logs")
    output_max_bytes: Size = 10 * 1024 * 1024
    # How often the services' process trees are read (CPU, RSS): one wake-up for all of them,
    # only while a service has a limit or someone looked at status or metrics recently.
    sample_interval: Duration = Field(default=5.0, ge=0.1, le=3600)
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
        return checked_amqp_url(value, "queue URL")

    @property
    def interval(self) -> float:
        if self.check_interval is not None:
            return max(0.05, self.check_interval)
        return min(30.0, max(1.0, self.stalled_after / 4))

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # repr, str and rich show the URL without its password (tracebacks, debug prints).
        for name, value in super().__repr_args__():
            yield name, redact(value) if name == "url" else value


def _hostname() -> str:
    return socket.gethostname()  # looked up when a file is read, not when this is imported


def _checked_hub_key(value: str) -> str:
    from heartwatch.core.fleetcommands import parse_public_key  # cryptography: only with [fleet]

    try:
        parse_public_key(value)
    except ValueError as error:
        raise ValueError(f"not a hub's public key: {error}") from None
    return value.strip()


class FleetConfig(_Section):
    """``[fleet]``: this daemon is one host of a fleet, an agent publishing to a hub's broker
    and taking the commands its trusted hubs sign (``docs/fleet.md``)."""

    broker: str  # amqp(s)://user:password@host:port/vhost: never printed with its password
    host: str = Field(default_factory=_hostname, validate_default=True)
    labels: dict[str, str] = Field(default={}, max_length=64)
    exchange: str = _fleetwire.DEFAULT_EXCHANGE
    heartbeat_interval: Duration = Field(default=5.0, ge=0.1, le=3600)
    snapshot_interval: Duration = Field(default=300.0, ge=1, le=86400)
    outbox_max: int = Field(default=100_000, ge=10, le=100_000_000)
    # Base64 Ed25519 public keys of the hubs whose signed commands run here; none: all refused.
    hub_keys: list[Annotated[str, AfterValidator(_checked_hub_key)]] = []

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        return checked_amqp_url(value, "broker URL")

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        if not _fleetwire.is_host_name(value):
            raise ValueError(
                f"{redact(value)[:130]!r} is not a fleet host name (letters, digits, '_', '.' "
                "and '-', starting with a letter or digit, at most 128): set fleet.host"
            )
        return value

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, label in value.items():
            if not key or len(key) > 64 or not key.isprintable():
                raise ValueError(f"label name {key[:70]!r}: 1 to 64 printable characters")
            if len(label) > 256 or not label.isprintable():
                raise ValueError(f"label {key!r}: a value is at most 256 printable characters")
        return value

    @field_validator("exchange")
    @classmethod
    def _check_exchange(cls, value: str) -> str:
        # AMQP names are short strings (255 bytes); the command queues add ".commands.<host>".
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", value):
            raise ValueError("an exchange name is 1 to 100 letters, digits, '_', '.', ':' or '-'")
        return value

    def public_keys(self) -> list[Ed25519PublicKey]:
        """The trusted hubs' keys, parsed (each was checked when the file was read)."""
        from heartwatch.core.fleetcommands import parse_public_key

        return [parse_public_key(key) for key in self.hub_keys]

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # repr, str and rich show the broker URL without its password (tracebacks, prints).
        for name, value in super().__repr_args__():
            yield name, redact(value) if name == "broker" else value


class MaxCpuConfig(_Section):
    """``max_cpu = { percent = 95, for = "5m" }`` of a service: its process tree's CPU (of one
    core: a tree busy on two cores is at 200 %) over ``percent`` for ``for`` in a row is a
    failure (a ``frida-server`` spinning at 100 %)."""

    model_config = ConfigDict(populate_by_name=True)

    percent: float = Field(gt=0, allow_inf_nan=False)
    for_: Duration = Field(default=60.0, gt=0, alias="for")


class ProbeConfig(_Section):
    """``[service.startup]``, ``[service.readiness]``, ``[service.liveness]``: one probe.

    Exactly one of ``exec`` (a command, split like ``command``; exit 0 passes), ``http`` (a
    URL; a 2xx or 3xx answer passes, or ``status``) and ``tcp`` (``host:port``; a connection
    passes). Defaults are Kubernetes', but ``timeout`` (5 s: 1 s is too short for ``adb``)."""

    exec: str | list[str] | None = None
    http: str | None = None
    tcp: Address | None = None
    period: Duration = Field(default=_probes.DEFAULT_PERIOD, gt=0)
    timeout: Duration = Field(default=_probes.DEFAULT_TIMEOUT, gt=0)
    initial_delay: Duration = Field(default=0.0, ge=0)
    failure_threshold: int = Field(default=_probes.DEFAULT_FAILURE_THRESHOLD, ge=1)
    success_threshold: int = Field(default=_probes.DEFAULT_SUCCESS_THRESHOLD, ge=1)
    status: int | None = Field(default=None, ge=100, le=599)  # http: the one status that passes
    expect: str | None = None  # a regular expression the output (exec) or body (http) contains

    @field_validator("exec")
    @classmethod
    def _check_exec(cls, value: str | list[str] | None) -> str | list[str] | None:
        return value if value is None else checked_command(value, "a probe's command")

    @field_validator("http")
    @classmethod
    def _check_http(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError('expected an http:// or https:// URL ("http://127.0.0.1:8080/ready")')
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            raise ValueError("the port of the URL is not a number from 0 to 65535") from None
        return value

    @field_validator("expect")
    @classmethod
    def _check_expect(cls, value: str | None) -> str | None:
        if value is not None:
            import regex  # what the probe driver matches with (a time limit), only when used

            try:
                regex.compile(value, regex.MULTILINE | regex.VERSION0)
            except regex.error as error:
                raise ValueError(f"not a regular expression: {error}") from None
        return value

    @model_validator(mode="after")
    def _check_kind(self) -> ProbeConfig:
        given = [key for key in ("exec", "http", "tcp") if getattr(self, key) is not None]
        if len(given) != 1:
            has = " and ".join(given) if given else "none"
            raise ValueError(f"a probe needs exactly one of exec, http, tcp (it has {has})")
        if self.status is not None and self.http is None:
            raise ValueError("status is for http probes")
        if self.expect is not None and self.tcp is not None:
            raise ValueError("expect is for exec and http probes (a tcp probe reads nothing)")
        return self

    def probe_spec(self, role: _probes.ProbeRole) -> _probes.ProbeSpec:
        """What the core is told about this probe."""
        check: _probes.Check
        if self.exec is not None:
            argv = command_argv(self.exec)
            check = _probes.ExecCheck(tuple(argv))
            label = self.exec if isinstance(self.exec, str) else shlex.join(argv)
        elif self.http is not None:
            check = _probes.HttpCheck(self.http, self.status)
            label = f"GET {redact(self.http)}"
        else:
            assert self.tcp is not None
            check = _probes.TcpCheck(*self.tcp)
            label = f"tcp {self.tcp[0]}:{self.tcp[1]}"
        return _probes.ProbeSpec(
            role=role,
            check=check,
            label=label,
            period=self.period,
            timeout=self.timeout,
            initial_delay=self.initial_delay,
            failure_threshold=self.failure_threshold,
            success_threshold=self.success_threshold,
            expect=self.expect,
        )


RestartModeName = Literal["service", "group"]


class RestartConfig(_Section):
    """``restart`` of a service: who restarts with it, by what its failure was.

    ``restart = "group"`` is ``{ hang = "group", exit = "group" }``; a table sets each cause:
    ``hang``, it is still there but failing (a missed heartbeat or data deadline, a queue
    stall, a liveness probe, a resource limit, its own failure report); ``exit``, its process
    ended (a crash, a failed start)."""

    hang: RestartModeName = "service"
    exit: RestartModeName = "service"

    def spec(self) -> RestartByCause | RestartModeName:
        return self.hang if self.hang == self.exit else RestartByCause(self.hang, self.exit)


_RESTART_SHAPES = (
    'expected "service", "group" or a table such as { hang = "group", exit = "service" }'
)


def parse_restart(value: object) -> object:
    """``"service"`` or ``"group"`` (for every cause), or a table ``{ hang, exit }``."""
    if isinstance(value, str) and value in ("service", "group"):
        return {"hang": value, "exit": value}
    if isinstance(value, (dict, RestartConfig)):
        return value
    raise ValueError(_RESTART_SHAPES)


# Far beyond any environment a service is given; a path to something else (a log, a disk
# image, /dev/zero) is refused unread, not read into memory.
MAX_ENV_FILE_BYTES = 256 * 1024


class EnvFiles(_Section):
    """``env_file`` of a service, read when the configuration is loaded (``read_env_files``):
    the files as written, and the variables they set. Read at load, so that a changed file
    is a changed configuration to a reload, and a missing one a problem at its key."""

    paths: list[str]
    values: dict[str, str] = Field(default={}, repr=False)  # often secrets: never printed


def read_env_files(value: object, base_dir: Path) -> EnvFiles:
    """Read ``env_file`` (a path relative to ``base_dir``, or a list; later files win) in
    dotenv format with python-dotenv's parser, values taken literally (no ``${VAR}``
    expansion, as systemd's ``EnvironmentFile``); ``ValueError`` says every problem."""
    if isinstance(value, str):
        paths = [value]
    elif isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        paths = list(value)
    else:
        raise ValueError("expected a path or a list of paths to dotenv files")
    from dotenv.parser import parse_stream  # only for a configuration that has env files

    values: dict[str, str] = {}
    problems: list[str] = []
    for written in paths:
        path = Path(written) if Path(written).is_absolute() else base_dir / written
        try:
            text = _read_env_file(path)
        except OSError as error:
            problems.append(f"cannot read {path}: {error.strerror or type(error).__name__}")
            continue
        except _NotAnEnvFile as error:
            problems.append(str(error))
            continue
        # A line's number only, never its text: a bad line may be a secret (a key pasted
        # alone, a password file named by mistake), and problems reach the log and the API.
        for binding in parse_stream(io.StringIO(text)):
            where = f"{path} line {binding.original.line}"
            if binding.error:
                problems.append(f"{where}: not NAME=value")
            elif binding.key is None:
                continue  # a comment or a blank line
            elif binding.value is None:
                problems.append(f"{where}: a name without a value (write NAME= for an empty value)")
            elif "\0" in binding.value or "\0" in binding.key:
                problems.append(f"{where}: a NUL character")
            elif not _ENV_NAME.fullmatch(binding.key):
                problems.append(f"{where}: not an environment variable name ({_ENV_NAME_IS})")
            else:
                values[binding.key] = binding.value
    if problems:
        raise ValueError("; ".join(problems))
    return EnvFiles(paths=paths, values=values)


class _NotAnEnvFile(ValueError):
    """What is at an ``env_file`` path cannot be one (the message says why)."""


def _read_env_file(path: Path) -> str:
    """The text of a regular file of at most ``MAX_ENV_FILE_BYTES``. Opened without blocking
    and checked once open (not before, so it cannot be swapped in between): a FIFO would
    block the load (and a reload, holding its lock) until someone writes to it."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise _NotAnEnvFile(f"{path} is not a regular file")
        data = file.read(MAX_ENV_FILE_BYTES + 1)
    if len(data) > MAX_ENV_FILE_BYTES:
        raise _NotAnEnvFile(
            f"{path} is larger than {MAX_ENV_FILE_BYTES // 1024} KiB "
            "(an env file is lines of NAME=value)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _NotAnEnvFile(f"{path} is not UTF-8 text") from None


def parse_umask(value: object) -> int:
    """``"022"`` or ``"0o022"``: octal, as people write a umask, in a string.

    A TOML number is refused: decoded, ``umask = 77`` is seventy-seven (0o115, files
    world-writable) and ``umask = 0o77`` sixty-three, and which way it was written is gone,
    so reading its digits as octal would misread ``0o22`` as much as decimal misreads ``77``."""
    if isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if text and all(ch in "01234567" for ch in text) and int(text, 8) <= 0o777:
            return int(text, 8)
    elif isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            'write the umask as a string, in octal: umask = "077" (a TOML number does not '
            "keep how it was written: 77 and 0o77 are different umasks)"
        )
    raise ValueError('expected an octal umask such as "022" or "0o027" (at most "777")')


Umask = Annotated[int, BeforeValidator(parse_umask)]


class ServiceConfig(_Section):
    """``[[service]]``: one part of the pipeline."""

    name: str
    # Set by the expansion of ``instances = N`` (core/instances.py), never by a file: the
    # ``[[service]]`` name this one is an instance of, and its number.
    instance_of: str | None = None
    instance: int | None = None
    command: str | list[str] | None = None
    cwd: Path | None = None
    env: dict[str, str] = {}
    requires: list[str] = []
    # "heartbeat": ready at the first message; a duration: ready that long after spawn.
    ready: Annotated[str | float | None, BeforeValidator(parse_ready)] = None
    startup_grace: Duration = 60.0
    heartbeat_timeout: Duration | None = None
    data_timeout: dict[str, Duration] = {}
    restart: Annotated[RestartConfig, BeforeValidator(parse_restart)] = RestartConfig()
    autorestart: Literal["always", "on-failure", "never"] = "always"
    autostart: bool = True  # started with the daemon (else by a person, or as a requirement)
    startsecs: Duration = Field(default=1.0, ge=0)  # up this long, or it was a failed start
    env_file: EnvFiles | None = None  # dotenv file(s), relative to the config file
    user: str | int | None = None  # run as this user (the daemon runs as root)
    group: str | int | None = None  # and group (default: the user's own)
    umask: Umask | None = None
    output_timestamps: bool = False  # each captured line starts with the daemon's time
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
    startup: ProbeConfig | None = None  # holds the others and the deadlines until it passes
    readiness: ProbeConfig | None = None  # what makes it ready (dependents start then)
    liveness: ProbeConfig | None = None  # failing: a failure, with the probe's reason
    max_memory: Size | None = Field(default=None, gt=0)  # RSS of its whole process tree
    max_cpu: MaxCpuConfig | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        # name@k: an instance, named by the expansion (a file's '@' is refused before).
        if not _NAME.fullmatch(value) and not _INSTANCE_NAME.fullmatch(value):
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
        return checked_command(value, "a command", "; leave it out for a watch-only service")

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if "{" in name or "}" in name:
                raise ValueError(
                    f"{name!r} is not an environment variable name (names are not templated: "
                    "only values are)"
                )
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name ({_ENV_NAME_IS})")
            if "\0" in text:
                raise ValueError(f"the value of {name} cannot contain a NUL character")
        return value

    @field_validator("env_file", mode="before")
    @classmethod
    def _read_env_files(cls, value: object, info: ValidationInfo) -> object:
        if value is None or isinstance(value, EnvFiles):
            return value
        context = info.context if isinstance(info.context, Mapping) else {}
        return read_env_files(value, Path(context.get("base_dir", ".")))

    @field_validator("user")
    @classmethod
    def _check_user(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            try:
                pwd.getpwnam(value) if isinstance(value, str) else pwd.getpwuid(value)
            except (KeyError, OverflowError):
                raise ValueError(f"no user {value!r} on this machine") from None
        return value

    @field_validator("group")
    @classmethod
    def _check_group(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            try:
                grp.getgrnam(value) if isinstance(value, str) else grp.getgrgid(value)
            except (KeyError, OverflowError):
                raise ValueError(f"no group {value!r} on this machine") from None
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

    @property
    def environment(self) -> dict[str, str]:
        """What the service adds to the environment it inherits: ``env_file``, then ``env``."""
        from_files = self.env_file.values if self.env_file is not None else {}
        return {**from_files, **self.env}

    def revision(self) -> str:
        """A digest of everything this service is run with: equal for equal configurations
        (the order of ``env`` keys aside), so that a reload restarts only what changed."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()

    def probe_specs(self) -> tuple[_probes.ProbeSpec, ...]:
        """The service's probes, startup first."""
        configured = {"startup": self.startup, "readiness": self.readiness}
        configured["liveness"] = self.liveness
        return tuple(
            probe.probe_spec(role)
            for role in _probes.ROLES
            if (probe := configured[role]) is not None
        )

    def spec(self) -> ServiceSpec:
        """What the watchdog is told about this service (the core never sees this schema)."""
        return ServiceSpec(
            name=self.name,
            instance_of=self.instance_of,
            instance=self.instance,
            revision=self.revision(),
            liveness=LivenessRules(
                ready_on_message=self.ready_on_message,
                ready_delay=self.ready_delay,
                startup_grace=self.startup_grace,
                heartbeat_timeout=self.heartbeat_timeout,
                data_timeout=dict(self.data_timeout),
                ready_on_notice=self.ready_on_notice,
                # a watch-only service has no process of its own to stay up
                startsecs=0.0 if self.watch_only else self.startsecs,
            ),
            requires=tuple(self.requires),
            watch_only=self.watch_only,
            has_on_down=self.on_down is not None,
            restart=self.restart.spec(),
            autorestart=self.autorestart,
            autostart=self.autostart,
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
            probes=self.probe_specs(),
            limits=ResourceLimits(
                max_memory=self.max_memory,
                max_cpu_percent=None if self.max_cpu is None else self.max_cpu.percent,
                max_cpu_for=60.0 if self.max_cpu is None else self.max_cpu.for_,
            ),
        )


class Config(_Section):
    """The whole file."""

    server: ServerConfig = ServerConfig()
    daemon: DaemonConfig = DaemonConfig()
    logs: LogsConfig = LogsConfig()
    history: HistoryConfig = HistoryConfig()
    alerts: AlertsConfig = AlertsConfig()
    fleet: FleetConfig | None = None  # absent: not a fleet agent (nothing of it is loaded)
    service: list[ServiceConfig] = []
    # Filled by load_config: the folder relative paths are resolved against.
    base_dir: Path = Path(".")
    # What the file calls [alerts]: "notify" in files written before the rename.
    _alerts_section: str = PrivateAttr(default=ALERTS)
    # Filled by parse_config and load_config: the document as decoded (a reload or a scale
    # parses it again), the file it was read from, and the run-time instance counts
    # (``heartwatch scale``) that replace the file's.
    _document: Mapping[str, Any] = PrivateAttr(default_factory=dict)
    _source: Path | None = PrivateAttr(default=None)
    _instance_overrides: dict[str, int] = PrivateAttr(default_factory=dict)
    _table_index: dict[str, int] = PrivateAttr(default_factory=dict)  # by concrete name

    @property
    def alerts_section(self) -> str:
        """The name the file gave the alerts section, to speak of its keys as it does."""
        return self._alerts_section

    def services_by_name(self) -> dict[str, ServiceConfig]:
        """The concrete services (instances expanded: ``collector@0``, ...), by name."""
        return {s.name: s for s in self.service}

    @property
    def source(self) -> Path | None:
        """The file this configuration was read from (``None``: parsed from a mapping)."""
        return self._source

    @property
    def document(self) -> Mapping[str, Any]:
        """The document as decoded, before instances were expanded."""
        return self._document

    @property
    def instance_overrides(self) -> dict[str, int]:
        """Run-time instance counts in force instead of the file's, by ``[[service]]`` name."""
        return dict(self._instance_overrides)

    def instances_in_file(self) -> dict[str, int]:
        """``instances`` as the file says it, by ``[[service]]`` name (those that have it)."""
        raw = self._document.get("service")
        counts: dict[str, int] = {}
        for entry in raw if isinstance(raw, list) else []:
            count = instance_count(entry) if isinstance(entry, dict) else None
            if count is not None and isinstance(entry.get("name"), str):
                counts[entry["name"]] = count
        return counts

    def key_path(self, name: str) -> str:
        """Where a concrete service is written, as problems say it: ``service[1] (collector)``
        for ``collector@3`` too (its ``[[service]]`` table)."""
        service = self.services_by_name()[name]
        index = self._table_index.get(name, self.service.index(service))
        return f"service[{index}] ({service.instance_of or name})"

    def instance_groups(self) -> dict[str, list[str]]:
        """Each ``[[service]]`` with instances: its concrete services, in order."""
        groups: dict[str, list[str]] = {}
        for service in self.service:
            if service.instance_of is not None:
                groups.setdefault(service.instance_of, []).append(service.name)
        return groups

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
    instances: Mapping[str, int] | None = None,
    source: Path | None = None,
) -> Config:
    """Validate a decoded TOML document; raise ``ConfigError`` listing every problem.

    ``environ`` (default: ``os.environ``) may supply the token as ``HEARTWATCH_TOKEN``.
    ``instances``: run-time counts (``heartwatch scale``) in place of the file's, by
    ``[[service]]`` name; one for a table without ``instances`` is not applied.
    ``source``: the file the document was read from, kept for reloads (``Config.source``).
    """
    document = data
    environ = os.environ if environ is None else environ
    problems: list[Problem] = []
    if "base_dir" in data:
        problems.append(Problem("base_dir", _unknown_key("base_dir", Config)))
    data, alerts_section, rename_problems = _with_alerts_renamed(data)
    problems.extend(rename_problems)
    config: Config | None = None
    # Instances expanded first, so that the schema checks the values that will really run;
    # its problems name the [[service]] table they come from.
    expansion = expand_services(data.get("service"), instances)
    problems.extend(Problem(path, message) for path, message in expansion.problems)
    expanded = {**data, "service": expansion.services} if "service" in data else data
    try:
        config = Config.model_validate(
            {**expanded, "base_dir": base_dir or Path(".")},
            context={"base_dir": base_dir or Path(".")},  # env_file is read relative to it
        )
    except ValidationError as error:
        for problem in (_problem_from(e) for e in error.errors()):
            problem = _at_table(problem, expansion.origins)
            if problem not in problems:
                problems.append(problem)
    # Checks across keys read the raw document, so they are reported in the same round as
    # field errors, even when some service entries are broken.
    problems.extend(_cross_check(data, expansion.counts))
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
    config._document = document
    tables = zip(config.service, expansion.origins, strict=True)  # one origin per service
    config._table_index = {service.name: origin for service, origin in tables}
    config._source = source
    in_file = config.instances_in_file()
    config._instance_overrides = {
        name: count
        for name, count in (instances or {}).items()
        if name in in_file and in_file[name] != count
    }
    return config


def _at_table(problem: Problem, origins: Sequence[int]) -> Problem:
    """A problem of expanded service ``service[j]`` at the ``[[service]]`` table it came from."""
    match = _SERVICE_PATH.match(problem.path)
    if match is None or not origins:
        return problem
    index = int(match.group(1))
    origin = origins[index] if index < len(origins) else index
    return Problem(f"service[{origin}]{problem.path[match.end() :]}", problem.message)


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
        return parse_config(data, base_dir=path.resolve().parent, source=path.resolve())
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
    known = [
        field.alias or name
        for name, field in (model.model_fields.items() if model else ())
        if name not in ("base_dir", *SET_BY_EXPANSION)  # not for a file to write
    ]
    if model is ServiceConfig:
        known.append("instances")  # read (and taken out) before the schema sees the table
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
            field = _field_named(member, part) if isinstance(part, str) else None
            if field is not None:
                return field.annotation
        elif origin is list and isinstance(part, int):
            item: object = get_args(member)[0]
            return item
        elif origin is dict and isinstance(part, str):
            value: object = get_args(member)[1]
            return value
    return None


def _field_named(model: type[BaseModel], key: str) -> FieldInfo | None:
    """The field a key of the file names: its alias where it has one (``for``, a Python
    keyword, is the field ``for_``)."""
    for name, field in model.model_fields.items():
        if (field.alias or name) == key:
            return field
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


def _cross_check(data: Mapping[str, Any], counts: Mapping[str, int]) -> list[Problem]:
    """Problems that involve more than one key: names, requirements, combinations, defaults.

    ``counts``: the instances in force, by ``[[service]]`` name (``emulator@2`` is a service
    when ``emulator`` has more than 2)."""
    raw = data.get("service", [])
    services = [s if isinstance(s, dict) else {} for s in raw] if isinstance(raw, list) else []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, service in enumerate(services):
        where = f"service[{index}]"
        name = service.get("name")
        if name == SELECT_ALL:  # its own instances (all@0) too: `all` is the table's name
            problems.append(
                Problem(
                    f"{where}.name",
                    f"{SELECT_ALL!r} is reserved: it means every service "
                    f"(heartwatch stop {SELECT_ALL}); choose another name",
                )
            )
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
        problems.extend(_limit_problems(where, service, data.get("daemon")))
        initial = _duration_or_none(
            service.get("backoff_initial", _default(ServiceConfig, "backoff_initial"))
        )
        maximum = _duration_or_none(
            service.get("backoff_max", _default(ServiceConfig, "backoff_max"))
        )
        if initial is not None and maximum is not None and maximum < initial:
            problems.append(Problem(f"{where}.backoff_max", "must be >= backoff_initial"))
        problems.extend(_probe_problems(where, service))
    requires: dict[str, list[str]] = {}
    for index, service in enumerate(services):
        needs = service.get("requires", [])
        name = service.get("name")
        for position, required in enumerate(needs if isinstance(needs, list) else []):
            where = f"service[{index}].requires[{position}]"
            if not isinstance(required, str):
                continue  # the schema reports the type
            table = _instance_table(required, counts) or required
            if table not in seen:
                problems.append(Problem(where, f"no service {required!r}"))
            elif table == name:
                problems.append(Problem(where, "a service cannot require itself"))
            elif isinstance(name, str):
                requires.setdefault(name, []).append(table)
    try:
        DependencyGraph(requires).start_order()
    except DependencyCycleError as error:
        index = seen[error.cycle[0]]
        problems.append(Problem(f"service[{index}].requires", f"cycle: {' -> '.join(error.cycle)}"))
    server = data.get("server")
    default = server.get("default_service") if isinstance(server, dict) else None
    if isinstance(default, str) and default in counts:
        problems.append(
            Problem(
                "server.default_service",
                f"{default!r} has instances: name one of them ({default}@0, ...)",
            )
        )
    elif isinstance(default, str) and (_instance_table(default, counts) or default) not in seen:
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


def _limit_problems(where: str, service: Mapping[str, Any], daemon: object) -> list[Problem]:
    """``max_memory`` and ``max_cpu`` measure a process this daemon runs, over whole sample
    intervals."""
    problems = []
    for key in ("max_memory", "max_cpu"):
        if service.get(key) is not None and service.get("command") is None:
            problems.append(
                Problem(
                    f"{where}.{key}",
                    f"{key} needs a command (a watch-only service has no process here)",
                )
            )
    max_cpu = service.get("max_cpu")
    raw_interval = (
        daemon.get("sample_interval", _default(DaemonConfig, "sample_interval"))
        if isinstance(daemon, dict)
        else _default(DaemonConfig, "sample_interval")
    )
    interval = _duration_or_none(raw_interval)
    stretch = _duration_or_none(max_cpu.get("for")) if isinstance(max_cpu, dict) else None
    if interval is not None and stretch is not None and 0 < stretch < interval:
        problems.append(
            Problem(
                f"{where}.max_cpu.for",
                f"shorter than daemon.sample_interval ({format_duration(interval)}): CPU is "
                "measured over whole sample intervals",
            )
        )
    return problems


def _probe_problems(where: str, service: Mapping[str, Any]) -> list[Problem]:
    """What Kubernetes also refuses of probes, and a ready delay beside a readiness probe."""
    problems = []
    for role in ("startup", "liveness"):
        probe = service.get(role)
        threshold = probe.get("success_threshold", 1) if isinstance(probe, dict) else 1
        if threshold != 1 and isinstance(threshold, int):
            problems.append(
                Problem(
                    f"{where}.{role}.success_threshold",
                    f"must be 1 for a {role} probe (one pass is a pass; "
                    "success_threshold is for readiness)",
                )
            )
    ready = service.get("ready")
    if isinstance(service.get("readiness"), dict) and ready not in (None, "heartbeat", "notify"):
        problems.append(
            Problem(
                f"{where}.ready",
                "a readiness probe decides when the service is ready: leave out the ready delay",
            )
        )
    return problems


def _instance_table(name: str, counts: Mapping[str, int]) -> str | None:
    """The ``[[service]]`` name of an instance's name (``emulator@3``: ``emulator``, if it has
    more than 3 instances), or ``None``."""
    table, separator, number = name.rpartition(INSTANCE_SEPARATOR)
    if separator and number.isdigit() and int(number) < counts.get(table, 0):
        return table
    return None


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
    environment's) or not executable, a ``cwd`` that does not exist, no service at all, a
    ``user`` that a daemon run as this user (not root) could not switch to, a ``max_cpu``
    beyond what this machine's cores can use, a template field (``{instance}``) in a service
    without ``instances`` (passed as written).

    Warnings, not errors: the daemon may run with another ``PATH``, and a folder or program
    may be installed after the check. A service that cannot start is a failed start at run
    time (backoff, then ``failed``), said as plainly as here.
    """
    environ = os.environ if environ is None else environ
    if not config.service:
        return [Problem("service", "no [[service]] in the file: there is nothing to supervise")]
    warnings = []
    tables = config.document.get("service")
    for service in config.service:
        where = config.key_path(service.name)
        index = config._table_index.get(service.name)
        if service.instance_of is None and isinstance(tables, list) and index is not None:
            table = tables[index] if index < len(tables) else None
            for key, field in template_fields(table) if isinstance(table, dict) else []:
                warnings.append(
                    Problem(
                        f"{where}.{key}",
                        f"{field} is passed as written: fields are expanded only in a "
                        "[[service]] with instances",
                    )
                )
        cwd = config.resolve(service.cwd) if service.cwd is not None else config.base_dir
        if not cwd.is_dir():
            what = "does not exist" if not cwd.exists() else "is not a folder"
            warnings.append(Problem(f"{where}.cwd", f"folder {cwd} {what}"))
            continue  # a relative executable is looked for in it: nothing more to say
        for probe in service.probe_specs():  # probes run with the service's PATH and cwd
            if isinstance(probe.check, _probes.ExecCheck):
                program = probe.check.argv[0]
                path = service.environment.get("PATH", environ.get("PATH"))
                problem = _executable_problem(program, cwd, path)
                if problem is not None:
                    warnings.append(Problem(f"{where}.{probe.role}.exec", problem))
        if service.command is None:
            continue
        try:
            resolve_run_as(service.user, service.group)  # the daemon asks so at each spawn
        except IdentityError as error:
            warnings.append(Problem(f"{where}.user", str(error)))
        argv = command_argv(service.command)
        search_path = service.environment.get("PATH", environ.get("PATH"))
        problem = _executable_problem(argv[0], cwd, search_path)
        if problem is not None:
            warnings.append(Problem(f"{where}.command", problem))
        cores = os.cpu_count() or 1
        if service.max_cpu is not None and service.max_cpu.percent >= 100 * cores:
            warnings.append(
                Problem(
                    f"{where}.max_cpu.percent",
                    f"{service.max_cpu.percent:g} % can never be exceeded on this machine's "
                    f"{cores} core{'s' if cores > 1 else ''} (at most {100 * cores} %)",
                )
            )
    return list(dict.fromkeys(warnings))  # instances of one table share their warnings


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
