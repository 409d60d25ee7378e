"""The hub's file, ``hub.toml``: its schema, and errors that name the key.

Two sections: ``[hub]`` (where the broker, the database and the HTTP side are, and the host
timings) and ``[alerts]``, the agent's own ``AlertsConfig`` (same URLs, rate limits, retries).
As with the agent's file, every problem is a ``Problem`` at the key path a person would type
(``hub.stale_after``, ``alerts.urls[0]``), all of them reported in one round, unknown keys
refused by name. Secrets (the broker's and the database's passwords, the tokens, the signing
key) never appear in a repr, a problem or a log line.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from heartwatch.config import (
    ALERTS,
    Address,
    AlertsConfig,
    ConfigError,
    Duration,
    Problem,
    ServerConfig,
    _notification_url_problems,
    _unknown_key,
    checked_amqp_url,
)
from heartwatch.core.addresses import is_loopback
from heartwatch.core.fleetwire import DEFAULT_EXCHANGE, is_host_name
from heartwatch.core.hoststates import HostRules
from heartwatch.core.redact import redact

HUB = "hub"
DEFAULT_HUB_HTTP = ("127.0.0.1", 9300)
DEFAULT_HUB_STATE_DIR = Path("/var/lib/heartwatch-hub")
KEY_ENVIRONMENT = "HEARTWATCH_HUB_KEY"  # the signing key itself, instead of a file
_EXCHANGE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HubSection(_Section):
    """``[hub]``."""

    name: str = Field(default_factory=socket.gethostname, validate_default=True)
    broker: str  # amqp(s)://user:password@host:port/vhost
    database: str  # postgresql://user:password@host:port/dbname
    exchange: str = DEFAULT_EXCHANGE
    http: Address = DEFAULT_HUB_HTTP
    state_dir: Path = DEFAULT_HUB_STATE_DIR
    token: str | None = Field(default=None, repr=False)  # control (or HEARTWATCH_TOKEN)
    read_token: str | None = Field(default=None, repr=False)  # reading only
    signing_key: Path | None = None  # the private key's file (or HEARTWATCH_HUB_KEY)
    stale_after: Duration = Field(default=15.0, gt=0, le=86400)
    unreachable_after: Duration = Field(default=45.0, gt=0, le=7 * 86400)
    start_grace: Duration = Field(default=60.0, ge=0, le=86400)
    command_ttl: Duration = Field(default=60.0, ge=1, le=86400)
    # Events, counts, finished commands and alerts older than this are deleted (hub/retention.py).
    retention: Duration = Field(default=30 * 86400.0, ge=60, le=100 * 365 * 86400)
    # Hosts unreachable this long are forgotten (as DELETE /api/v1/hosts/{host}); None: never.
    forget_after: Duration | None = Field(default=None, ge=60, le=100 * 365 * 86400)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not is_host_name(value):
            raise ValueError(
                "a hub name is letters, digits, '_', '.' and '-', starting with a letter or "
                "digit, at most 128"
            )
        return value

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        return checked_amqp_url(value, "broker URL")

    @field_validator("database")
    @classmethod
    def _check_database(cls, value: str) -> str:
        # libpq reads the rest (and says what it thinks at connect time); the URL is not quoted.
        if urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("a database URL starts with postgresql://")
        return value

    @field_validator("exchange")
    @classmethod
    def _check_exchange(cls, value: str) -> str:
        if not _EXCHANGE.fullmatch(value):
            raise ValueError("an exchange name is 1 to 100 letters, digits, '_', '.', ':' or '-'")
        return value

    @field_validator("token", "read_token")
    @classmethod
    def _check_token(cls, value: str | None) -> str | None:
        return ServerConfig._check_token(value)  # the agent's rule for its tokens

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # repr, str and rich show the URLs without their passwords (tracebacks, debug prints).
        for name, value in super().__repr_args__():
            yield name, redact(value) if name in ("broker", "database") else value


class HubConfig(_Section):
    """The whole ``hub.toml``."""

    hub: HubSection
    alerts: AlertsConfig = AlertsConfig()
    base_dir: Path = Path(".")  # filled by load_hub_config: relative paths are relative to it

    @property
    def name(self) -> str:
        return self.hub.name

    @property
    def state_dir(self) -> Path:
        return self.resolve(self.hub.state_dir)

    @property
    def host_rules(self) -> HostRules:
        hub = self.hub
        return HostRules(hub.stale_after, hub.unreachable_after, hub.start_grace)

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path

    def signing_key_text(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The base64 private key: ``HEARTWATCH_HUB_KEY``, else the ``signing_key`` file's
        content; None when neither is set (the hub then cannot issue commands)."""
        environ = os.environ if environ is None else environ
        if environ.get(KEY_ENVIRONMENT):
            return environ[KEY_ENVIRONMENT].strip()
        if self.hub.signing_key is None:
            return None
        return self.resolve(self.hub.signing_key).read_text(encoding="ascii").strip()


def parse_hub_config(
    data: Mapping[str, Any], base_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> HubConfig:
    """Validate a decoded ``hub.toml``; raise ``ConfigError`` listing every problem.

    ``environ`` (default: ``os.environ``) may supply the control token as ``HEARTWATCH_TOKEN``.
    """
    environ = os.environ if environ is None else environ
    problems: list[Problem] = []
    if "base_dir" in data:
        problems.append(Problem("base_dir", _unknown_key("base_dir", HubConfig)))
    config: HubConfig | None = None
    try:
        config = HubConfig.model_validate({**data, "base_dir": base_dir or Path(".")})
    except ValidationError as error:
        problems.extend(p for p in map(_problem_from, error.errors()) if p not in problems)
    raw = data.get(HUB)
    raw = raw if isinstance(raw, Mapping) else {}
    token = raw.get("token") or environ.get("HEARTWATCH_TOKEN")
    problems.extend(_cross_check(raw, bool(token)))
    raw_alerts = data.get(ALERTS)
    raw_urls = raw_alerts.get("urls") if isinstance(raw_alerts, Mapping) else None
    problems.extend(_notification_url_problems(raw_urls if isinstance(raw_urls, list) else []))
    if problems or config is None:
        raise ConfigError(problems)
    if not config.hub.token and environ.get("HEARTWATCH_TOKEN"):
        try:
            env_token = ServerConfig._check_token(environ["HEARTWATCH_TOKEN"])
        except ValueError as error:
            raise ConfigError([Problem("HEARTWATCH_TOKEN", str(error))]) from None
        config = config.model_copy(
            update={"hub": config.hub.model_copy(update={"token": env_token})}
        )
    return config


def load_hub_config(path: Path | str) -> HubConfig:
    """Read and validate ``hub.toml``; raise ``ConfigError`` naming the file and every problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError([Problem("", f"cannot read: {error.strerror}")], str(path)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError([Problem("", f"not valid TOML: {error}")], str(path)) from None
    try:
        return parse_hub_config(data, base_dir=path.resolve().parent)
    except ConfigError as error:
        raise ConfigError(error.problems, str(path)) from None


def _cross_check(raw: Mapping[str, Any], has_token: bool) -> list[Problem]:
    """Rules across keys, read from the raw section (so they come in the same round)."""
    problems = []
    stale = _duration(raw.get("stale_after", "15s"))
    unreachable = _duration(raw.get("unreachable_after", "45s"))
    if stale is not None and unreachable is not None and unreachable <= stale:
        problems.append(Problem(f"{HUB}.unreachable_after", "must be longer than hub.stale_after"))
    if raw.get("read_token") and not has_token:
        problems.append(
            Problem(f"{HUB}.read_token", "needs hub.token too (else everyone may control)")
        )
    http = raw.get("http")
    if isinstance(http, str) and not has_token:
        host = http.rpartition(":")[0].strip("[]")
        if host and not is_loopback(host):
            problems.append(
                Problem(
                    f"{HUB}.token",
                    f"required when hub.http listens on {host} (not loopback); "
                    "set it here or in HEARTWATCH_TOKEN",
                )
            )
    return problems


def _duration(value: object) -> float | None:
    from heartwatch.core.units import parse_duration

    try:
        return parse_duration(value)
    except (TypeError, ValueError):
        return None  # its own problem says why


_MODELS: dict[tuple[str | int, ...], type[BaseModel]] = {
    (): HubConfig,
    (HUB,): HubSection,
    (ALERTS,): AlertsConfig,
}


def _problem_from(error: Mapping[str, Any]) -> Problem:
    """pydantic's error at the key path a person would type (the hub's tables are flat: the
    location is the path, with list indexes in brackets)."""
    loc: Sequence[str | int] = tuple(error["loc"])
    kind = error.get("type")
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = str(error["msg"])
    if kind == "extra_forbidden" and loc and isinstance(loc[-1], str):
        message = _unknown_key(loc[-1], _MODELS.get(tuple(loc[:-1])))
    elif kind == "missing":
        message = "required, and missing"
    elif kind in ("model_type", "dict_type"):
        message = "expected a table"
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return Problem(path, message)
