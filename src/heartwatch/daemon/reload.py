"""Live reload and scale: read the configuration again, validate it whole, apply the difference.

``heartwatch reload``, SIGHUP and ``POST /api/v1/reload`` all end in ``Reloader.reload``;
``heartwatch scale NAME N`` (``POST /api/v1/scale/{name}``) in ``Reloader.scale``, which
takes the document in force with another instance count, through the same path:

1. Read and validate (in a worker thread: a file with alerts imports apprise). An invalid file
   is refused whole (``ReloadRefused``, every problem at its key path): the daemon goes on
   with the configuration it has, and says why in its log and its journal.
2. Compare the daemon's settings: those a running daemon cannot take (listen addresses, the
   state and log folders, the history file, tokens, ...: all but ``APPLIED_LIVE``) are kept
   as they are and reported as ``needs_daemon_restart``, every time, until it restarts.
3. Apply the services' difference (``Supervisor.reconfigure``): added start, removed stop,
   changed restart, the others are not touched. Journal and log the result.

Run-time instance counts (``scale``) are kept in memory, not in the state directory: after a
daemon restart the file is in force again, as ``heartwatch check`` validated it (a forgotten
override outliving restarts is the drift operators fear most). A reload keeps an override
while the file's ``instances`` of that service is what it was when scaled; once the file says
another number, the file wins and the override is dropped (as ``kubectl apply`` after a
``kubectl scale``). Reloads and scales run one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from heartwatch.config import Config, ConfigError, Problem, load_config, parse_config
from heartwatch.core.reconfigure import ServiceChanges, settings_needing_restart
from heartwatch.daemon.supervisor import Supervisor

__all__ = ["APPLIED_LIVE", "NotScalable", "ReloadRefused", "ReloadResult", "Reloader"]

# The daemon settings a running daemon applies; every other change waits for its restart.
APPLIED_LIVE = frozenset({"server.default_service"})
_DAEMON_SECTIONS = ("server", "daemon", "logs", "history", "alerts", "fleet")


class ReloadRefused(Exception):
    """The configuration cannot be used; nothing was changed. ``problems`` says why, and
    ``headline`` what was refused (``cannot use /etc/heartwatch.toml``); ``str()`` has both."""

    def __init__(self, problems: list[Problem], headline: str) -> None:
        self.problems = problems
        self.headline = headline
        super().__init__(f"{headline}: " + "; ".join(str(p) for p in problems))


class NotScalable(Exception):
    """``scale`` of a service that has no ``instances`` (the message says what to do)."""


class UnknownTable(Exception):
    """``scale`` of a name no ``[[service]]`` has."""


@dataclass(frozen=True)
class ReloadResult:
    """What a reload or a scale did."""

    changes: ServiceChanges
    needs_daemon_restart: list[str] = field(default_factory=list)
    overrides: dict[str, int] = field(default_factory=dict)  # instances by scale, in force
    # What a person may not expect of it: a scale restarting what requires the table.
    warnings: list[str] = field(default_factory=list)

    def describe(self, what: str = "reload") -> str:
        """``reload: added a; changed b; removed c`` and what waits for a daemon restart."""
        text = f"{what}: {self.changes.describe()}"
        if self.needs_daemon_restart:
            text += "; needs a daemon restart for " + ", ".join(self.needs_daemon_restart)
        if self.overrides:
            text += "; instances by scale: " + ", ".join(
                f"{name} = {count}" for name, count in sorted(self.overrides.items())
            )
        if self.warnings:
            text += "; " + "; ".join(self.warnings)
        return text

    def as_dict(self) -> dict[str, Any]:
        changes = self.changes
        return {
            "added": list(changes.added),
            "removed": list(changes.removed),
            "changed": list(changes.changed),
            "unchanged": list(changes.unchanged),
            "restarted": list(changes.restarted),
            "needs_daemon_restart": list(self.needs_daemon_restart),
            "overrides": dict(self.overrides),
            "warnings": list(self.warnings),
        }


class Reloader:
    """Reloads and scales for one supervisor; its configuration file is ``source``."""

    def __init__(self, supervisor: Supervisor, source: Path | None) -> None:
        self.supervisor = supervisor
        self.source = source
        self._lock = asyncio.Lock()
        # Each override's count, and the file's count when it was set: a file that says
        # another number since makes the override go.
        self._scaled_from: dict[str, int] = {}

    @property
    def overrides(self) -> dict[str, int]:
        """Run-time instance counts in force, by ``[[service]]`` name."""
        return self.supervisor.config.instance_overrides

    async def reload(self, why: str = "reload") -> ReloadResult:
        """Read the file again and apply it; ``ReloadRefused`` if it cannot be used."""
        async with self._lock:
            if self.source is None:
                problem = Problem("", "the daemon was not started from a file")
                raise ReloadRefused([problem], "cannot reload")
            source = self.source
            try:
                from_file = await asyncio.to_thread(load_config, source)
            except ConfigError as error:
                raise self._refused(error.problems, f"cannot use {source}", why) from None
            overrides = self._overrides_kept(from_file)
            parsed = from_file
            if overrides:
                try:
                    parsed = await asyncio.to_thread(_reparse, from_file, overrides)
                except ConfigError as error:
                    raise self._refused(error.problems, f"cannot use {source}", why) from None
            return self._apply(parsed, why)

    async def scale(self, name: str, instances: int) -> ReloadResult:
        """Run ``instances`` of the ``[[service]]`` ``name`` from now on (the rest as it is)."""
        async with self._lock:
            config = self.supervisor.config
            in_file = config.instances_in_file()
            if name not in in_file:
                tables = _table_names(config.document)
                if name not in tables:
                    raise UnknownTable(name)
                raise NotScalable(
                    f"{name} has no instances: give its [[service]] `instances = N` to scale it"
                )
            overrides = dict(config.instance_overrides)
            if instances == in_file[name]:
                overrides.pop(name, None)  # back to the file's count: no override
                self._scaled_from.pop(name, None)
            else:
                overrides[name] = instances
                self._scaled_from[name] = in_file[name]
            why = f"scale {name} to {instances}"
            try:
                parsed = await asyncio.to_thread(_reparse, config, overrides)
            except ConfigError as error:
                raise self._refused(error.problems, f"cannot {why}", why) from None
            return self._apply(parsed, why, scaled=name)

    def _overrides_kept(self, from_file: Config) -> dict[str, int]:
        in_file = from_file.instances_in_file()
        kept = {}
        for name, count in self.overrides.items():
            if in_file.get(name) == self._scaled_from.get(name):
                kept[name] = count
            else:
                logger.info(
                    "{}: the file's instances changed ({} -> {}): the file's count is in "
                    "force again (was {} by scale)",
                    name,
                    self._scaled_from.get(name),
                    in_file.get(name, "none"),
                    count,
                )
                self._scaled_from.pop(name, None)
        return kept

    def _apply(self, parsed: Config, why: str, scaled: str | None = None) -> ReloadResult:
        """Put ``parsed`` in force; ``scaled``: the table a scale changed the count of."""
        supervisor = self.supervisor
        old = supervisor.config
        needs_restart = settings_needing_restart(
            daemon_settings(old), daemon_settings(parsed), APPLIED_LIVE
        )
        in_force = _in_force(parsed, old)
        changes = supervisor.reconfigure(in_force)
        warnings = [] if scaled is None else _scale_warnings(scaled, changes, in_force)
        result = ReloadResult(changes, needs_restart, in_force.instance_overrides, warnings)
        text = result.describe(why)
        logger.info("{}", text)
        supervisor.journal.append(
            "reload", None, text, supervisor.wall_time(), detail=result.as_dict()
        )
        return result

    def _refused(self, problems: list[Problem], headline: str, why: str) -> ReloadRefused:
        refused = ReloadRefused(problems, headline)
        logger.error("{} refused, the configuration in force is unchanged: {}", why, refused)
        self.supervisor.journal.append(
            "reload",
            None,
            f"{why} refused: {refused}",
            self.supervisor.wall_time(),
            detail={"problems": [{"path": p.path, "message": p.message} for p in problems]},
        )
        return refused


def _scale_warnings(table: str, changes: ServiceChanges, config: Config) -> list[str]:
    """A scale restarts what requires every instance of ``table`` (its ``requires`` changes
    with the count): said in the answer, since only the count was asked to change."""
    services = config.services_by_name()
    restarted = [
        name
        for name in (*changes.changed, *changes.restarted)
        if name in services and table not in (name, services[name].instance_of)
    ]
    if not restarted:
        return []
    they = "it requires" if len(restarted) == 1 else "they require"
    return [f"scaling {table} restarts {', '.join(restarted)}: {they} every instance of {table}"]


def daemon_settings(config: Config) -> dict[str, object]:
    """Every daemon setting as ``section.key`` -> value (what the services are not)."""
    settings: dict[str, object] = {}
    for section in _DAEMON_SECTIONS:
        part = getattr(config, section)
        if part is None:  # an optional section left out ([fleet])
            settings[section] = None
            continue
        for key, value in part.model_dump().items():
            settings[f"{section}.{key}"] = value
    return settings


def _in_force(parsed: Config, old: Config) -> Config:
    """``parsed``'s services and live settings, with ``old``'s settings that need a restart."""
    server = old.server.model_copy(update={"default_service": parsed.server.default_service})
    update: dict[str, Any] = {section: getattr(old, section) for section in _DAEMON_SECTIONS}
    update["server"] = server
    return parsed.model_copy(update=update)


def _reparse(config: Config, overrides: Mapping[str, int]) -> Config:
    """``config``'s document parsed again with run-time instance counts."""
    return parse_config(
        config.document, base_dir=config.base_dir, instances=overrides, source=config.source
    )


def _table_names(document: Mapping[str, Any]) -> set[str]:
    raw = document.get("service")
    entries = raw if isinstance(raw, list) else []
    return {e["name"] for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)}
