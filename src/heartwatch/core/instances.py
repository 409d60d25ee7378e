"""``instances = N``: one ``[[service]]`` table as concrete services ``name@0`` ... ``name@N-1``.

Pure, on the decoded TOML document, before the schema validates it: each instance is its own
table, with its templated settings expanded (``core/template.py``), so every check the schema
makes (a command split as a shell would, a probe's ``host:port``) is made on the values that
will really run. Problems are ``(path, message)`` pairs at the ``[[service]]`` table's key
paths (``service[1].env.PORT``), each said once however many instances share it.

``requires`` names ``[[service]]`` tables; it is mapped onto instances: a service with N
instances that requires one with the same N requires its own counterpart (``collector@3``
needs ``emulator@3``, so one emulator's fall recovers only its own pair); otherwise it
requires every instance. A concrete name (``emulator@0``) may be required too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from heartwatch.core.template import TemplateError, expand, fields_in

__all__ = [
    "INSTANCE_SEPARATOR",
    "MAX_INSTANCES",
    "Expansion",
    "concrete_name",
    "expand_services",
    "instance_count",
    "template_fields",
]

INSTANCE_SEPARATOR = "@"
MAX_INSTANCES = 1000  # a typo of 10000 must not fork ten thousand emulators
# The settings written once for all instances, and the probe fields among them.
TEMPLATED_KEYS = ("command", "cwd", "env", "env_file", "on_down")
PROBE_KEYS = ("startup", "readiness", "liveness")
TEMPLATED_PROBE_KEYS = ("exec", "http", "tcp")
# Set by the expansion, never by a file.
SET_BY_EXPANSION = ("instance_of", "instance")


def concrete_name(name: str, instance: int) -> str:
    return f"{name}{INSTANCE_SEPARATOR}{instance}"


@dataclass
class Expansion:
    """The document's services with instances expanded, and what went wrong."""

    services: Any  # the ``service`` value to validate: a list of tables, or as it was
    origins: list[int] = field(default_factory=list)  # each entry's [[service]] index
    problems: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # instances in force, by table name

    def problem(self, path: str, message: str) -> None:
        if (path, message) not in self.problems:
            self.problems.append((path, message))


def instance_count(entry: Mapping[str, Any]) -> int | None:
    """The valid ``instances`` of a ``[[service]]`` table, or ``None``."""
    value = entry.get("instances")
    if type(value) is int and 1 <= value <= MAX_INSTANCES:
        return value
    return None


def expand_services(raw: object, overrides: Mapping[str, int] | None = None) -> Expansion:
    """Expand every ``[[service]]`` of ``raw`` (the document's ``service`` value).

    ``overrides``: run-time counts (``heartwatch scale``) in place of the file's, by name,
    for tables that have ``instances``."""
    if not isinstance(raw, list):
        return Expansion(services=raw)
    overrides = overrides or {}
    expansion = Expansion(services=[])
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            continue
        _check_own_keys(entry, index, expansion)
        name = entry.get("name")
        count = instance_count(entry)
        if isinstance(name, str) and count is not None:
            expansion.counts[name] = overrides.get(name, count)
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            expansion.services.append(entry)
            expansion.origins.append(index)
            continue
        for concrete in _expand_entry(entry, index, expansion):
            expansion.services.append(concrete)
            expansion.origins.append(index)
    return expansion


def _check_own_keys(entry: Mapping[str, Any], index: int, expansion: Expansion) -> None:
    where = f"service[{index}]"
    for key in SET_BY_EXPANSION:
        if key in entry:
            expansion.problem(f"{where}.{key}", "set by heartwatch for instances; leave it out")
    name = entry.get("name")
    if isinstance(name, str) and INSTANCE_SEPARATOR in name:
        expansion.problem(
            f"{where}.name",
            f"'{INSTANCE_SEPARATOR}' is kept for instances (name@0, name@1, ...): "
            "write instances = N instead",
        )
    if "instances" in entry and instance_count(entry) is None:
        expansion.problem(
            f"{where}.instances", f"expected a whole number from 1 to {MAX_INSTANCES}"
        )


def _expand_entry(entry: dict[str, Any], index: int, expansion: Expansion) -> list[dict[str, Any]]:
    name = entry.get("name")
    body = {k: v for k, v in entry.items() if k != "instances"}
    count = expansion.counts.get(name) if isinstance(name, str) and "instances" in entry else None
    if count is None or not isinstance(name, str):
        body["requires"] = _mapped_requires(entry.get("requires"), None, None, expansion)
        if "requires" not in entry:
            del body["requires"]
        return [body]
    concretes = []
    for instance in range(count):
        concrete = dict(body)
        concrete_id = concrete_name(name, instance)
        for key in TEMPLATED_KEYS:
            if key in entry:
                concrete[key] = _expand_value(
                    entry[key], instance, concrete_id, f"service[{index}].{key}", expansion
                )
        for key in PROBE_KEYS:
            probe = entry.get(key)
            if isinstance(probe, dict):
                concrete[key] = {
                    k: _expand_value(
                        v, instance, concrete_id, f"service[{index}].{key}.{k}", expansion
                    )
                    if k in TEMPLATED_PROBE_KEYS
                    else v
                    for k, v in probe.items()
                }
        concrete["name"] = concrete_id
        concrete["instance_of"] = name
        concrete["instance"] = instance
        if "requires" in entry:
            concrete["requires"] = _mapped_requires(entry["requires"], count, instance, expansion)
        concretes.append(concrete)
    return concretes


def template_fields(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The fields in a table's templated settings, as ``(key path, field)`` (``("env.PORT",
    "{5554 + instance}")``): what ``check`` warns of in a table without ``instances``, where
    they are passed as written."""
    found: list[tuple[str, str]] = []
    for key in TEMPLATED_KEYS:
        if key in entry:
            found.extend(_fields_of(entry[key], key))
    for key in PROBE_KEYS:
        probe = entry.get(key)
        if isinstance(probe, dict):
            for probe_key in TEMPLATED_PROBE_KEYS:
                if probe_key in probe:
                    found.extend(_fields_of(probe[probe_key], f"{key}.{probe_key}"))
    return found


def _fields_of(value: object, path: str) -> list[tuple[str, str]]:
    """As ``_expand_value`` walks a value: strings, in lists and tables too."""
    if isinstance(value, str):
        return [(path, field) for field in fields_in(value)]
    if isinstance(value, list):
        return [
            f
            for position, item in enumerate(value)
            for f in _fields_of(item, f"{path}[{position}]")
        ]
    if isinstance(value, dict):
        return [f for key, item in value.items() for f in _fields_of(item, f"{path}.{key}")]
    return []


def _expand_value(
    value: object, instance: int, name: str, path: str, expansion: Expansion
) -> object:
    """Strings expanded (in lists and tables too); anything else is left to the schema."""
    if isinstance(value, str):
        try:
            return expand(value, instance, name)
        except TemplateError as error:
            expansion.problem(path, str(error))
            return value
    if isinstance(value, list):
        return [
            _expand_value(item, instance, name, f"{path}[{position}]", expansion)
            for position, item in enumerate(value)
        ]
    if isinstance(value, dict):
        return {
            key: _expand_value(item, instance, name, f"{path}.{key}", expansion)
            for key, item in value.items()
        }
    return value


def _mapped_requires(
    requires: object, count: int | None, instance: int | None, expansion: Expansion
) -> object:
    """``requires`` on concrete names: the counterpart of the same count, else every instance."""
    if not isinstance(requires, list):
        return requires  # the schema reports it
    mapped: list[object] = []
    for required in requires:
        needed_count = expansion.counts.get(required) if isinstance(required, str) else None
        if needed_count is None:
            mapped.append(required)  # no instances, a concrete name, or wrong: as written
        elif count == needed_count and instance is not None:
            mapped.append(concrete_name(required, instance))
        else:
            mapped.extend(concrete_name(required, k) for k in range(needed_count))
    return mapped
