"""Instances: templates, the expansion of ``instances = N``, the requires mapping, and the
problems a file gets at its own key paths."""

from __future__ import annotations

import json
from typing import Any

import pytest

from heartwatch.config import Config, ConfigError, config_warnings, parse_config
from heartwatch.core.events import Spawn, Stop
from heartwatch.core.instances import MAX_INSTANCES, expand_services
from heartwatch.core.reconfigure import diff_services
from heartwatch.core.template import MAX_MAGNITUDE, TemplateError, expand
from heartwatch.core.watchdog import Watchdog


def parse(*services: dict[str, Any], **sections: Any) -> Config:
    return parse_config({"service": list(services), **sections}, environ={})


def problems(*services: dict[str, Any], **sections: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(*services, **sections)
    return [str(problem) for problem in caught.value.problems]


# -- templates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "instance", "expected"),
    [
        ("emulator -port {5554 + 2 * instance}", 3, "emulator -port 5560"),
        ("emulator-{5554+2*instance}", 0, "emulator-5554"),
        ("{instance}", 7, "7"),
        ("{ instance }", 7, "7"),
        ("{name}.log", 2, "farm@2.log"),
        ("{(instance + 1) * 10 // 4 % 7}", 3, "3"),
        ("{-instance}", 2, "-2"),
        ("awk '{{print $1}}' {instance}", 1, "awk '{print $1}' 1"),
        ("no fields at all", 4, "no fields at all"),
        ("{{instance}}", 4, "{instance}"),
        ("{{{instance}}}", 4, "{4}"),
    ],
)
def test_template_expands(template: str, instance: int, expected: str) -> None:
    """Fields are replaced by their value for the instance; doubled braces are braces."""
    assert expand(template, instance, f"farm@{instance}") == expected


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{instance / 2}", "use // for whole numbers"),
        ("{instance ** 2}", "not allowed"),
        ("{__import__('os')}", "not allowed"),
        ("{instance.real}", "not allowed"),
        ("{port}", "unknown name `port`"),
        ("{name + 1}", "`name` is text, not a number"),
        ("{1.5 + instance}", "not allowed"),
        ("{True}", "not allowed"),
        ("{'a' * 3}", "not allowed"),
        ("{[instance]}", "not allowed"),
        ("{instance if 1 else 2}", "not allowed"),
        ("{}", "empty field"),
        ("{instance", "never closed"),
        ("instance}", "single '}'"),
        ("{instance +}", "not an expression"),
        ("{10 // (instance - 3)}", "divides by zero for instance 3"),
        ("{1000000 * 1000000 * 1000000}", "too large"),
        ("{" + "1" * 300 + "}", "longer than"),
    ],
)
def test_template_refuses(template: str, says: str) -> None:
    """Anything beyond integers, `instance` and + - * // % is an error saying what is allowed."""
    with pytest.raises(TemplateError, match=says.replace("(", r"\(").replace("*", r"\*")):
        expand(template, 3, "x@3")


def test_template_results_are_bounded() -> None:
    """A field's value stays within MAX_MAGNITUDE, at every step as at the end."""
    assert expand(f"{{{MAX_MAGNITUDE}}}", 0, "x@0") == str(MAX_MAGNITUDE)
    with pytest.raises(TemplateError, match="too large"):
        expand(f"{{{MAX_MAGNITUDE} + 1}}", 0, "x@0")


# -- expansion -----------------------------------------------------------------------------


FARM = (
    {
        "name": "emulator",
        "instances": 3,
        "command": "emulator -avd farm -port {5554 + 2 * instance}",
        "cwd": "/srv/{name}",
        "env": {"ANDROID_SERIAL": "emulator-{5554 + 2 * instance}"},
        "ready": "30s",
    },
    {
        "name": "frida",
        "instances": 3,
        "command": ["frida-server", "--listen", "127.0.0.1:{27042 + instance}"],
        "requires": ["emulator"],
    },
    {"name": "collector", "instances": 3, "command": "collect {instance}", "requires": ["frida"]},
    {"name": "report", "command": "report", "requires": ["collector"]},
)


def test_instances_expand_into_concrete_services() -> None:
    """`instances = N` makes name@0 ... name@N-1, each with its own values and identity."""
    config = parse(*FARM)
    services = config.services_by_name()
    assert list(services)[:3] == ["emulator@0", "emulator@1", "emulator@2"]
    second = services["emulator@1"]
    assert second.command == "emulator -avd farm -port 5556"
    assert str(second.cwd) == "/srv/emulator@1"
    assert second.env == {"ANDROID_SERIAL": "emulator-5556"}
    assert (second.instance_of, second.instance) == ("emulator", 1)
    assert services["frida@2"].command == ["frida-server", "--listen", "127.0.0.1:27044"]
    assert services["report"].instance_of is None and services["report"].instance is None
    spec = second.spec()
    assert (spec.instance_of, spec.instance) == ("emulator", 1)
    assert config.instance_groups()["collector"] == ["collector@0", "collector@1", "collector@2"]
    assert config.instances_in_file() == {"emulator": 3, "frida": 3, "collector": 3}


def test_requires_maps_instance_to_instance_or_to_all() -> None:
    """The same count: instance k requires instance k; otherwise every instance is required."""
    services = parse(*FARM).services_by_name()
    assert services["frida@1"].requires == ["emulator@1"]
    assert services["collector@2"].requires == ["frida@2"]
    assert services["report"].requires == ["collector@0", "collector@1", "collector@2"]
    fewer = parse(
        {"name": "emulator", "instances": 2, "command": "emu"},
        {"name": "collector", "instances": 3, "command": "c", "requires": ["emulator"]},
        {"name": "pinned", "command": "p", "requires": ["emulator@1"]},
    ).services_by_name()
    assert fewer["collector@0"].requires == ["emulator@0", "emulator@1"]
    assert fewer["pinned"].requires == ["emulator@1"]


def test_templates_are_only_read_with_instances() -> None:
    """A service without `instances` keeps its braces as written (awk, JSON in env)."""
    service = parse({"name": "one", "command": "awk '{print $1}'", "env": {"J": "{}"}}).service[0]
    assert service.command == "awk '{print $1}'" and service.env == {"J": "{}"}


def test_check_warns_of_fields_in_a_service_without_instances() -> None:
    """``{5554 + 2*instance}`` in a service without ``instances`` is passed as written:
    ``check`` says so, at each key where a field would have been expanded; braces that are
    no field (awk's, ``${HOME}``, JSON) are not warned about."""
    config = parse(
        {
            "name": "emu",
            "command": "true -port {5554 + 2*instance}",
            "env": {"SERIAL": "emulator-{name}", "J": "{}", "H": "${HOME}"},
            "readiness": {"exec": ["true", "{5554 + instance}"]},
        },
        {"name": "awk", "command": "awk '{print $1}'"},
    )
    assert [str(w) for w in config_warnings(config, environ={"PATH": "/usr/bin:/bin"})] == [
        "service[0] (emu).command: {5554 + 2*instance} is passed as written: fields are "
        "expanded only in a [[service]] with instances",
        "service[0] (emu).env.SERIAL: {name} is passed as written: fields are expanded only "
        "in a [[service]] with instances",
        "service[0] (emu).readiness.exec[1]: {5554 + instance} is passed as written: fields "
        "are expanded only in a [[service]] with instances",
    ]


def test_env_names_are_not_templated_and_braces_are_refused() -> None:
    """Only ``env`` values are expanded: a name ``K{instance}`` would be taken as written, so
    it is refused, saying why."""
    with pytest.raises(ConfigError) as caught:
        parse({"name": "e", "instances": 2, "command": "e", "env": {"K{instance}": "1"}})
    assert [str(p) for p in caught.value.problems] == [
        "service[0] (e).env: 'K{instance}' is not an environment variable name (names are not "
        "templated: only values are)"
    ]


def test_probe_fields_are_templated() -> None:
    """Probe commands, URLs and addresses are expanded too (they are checked as written)."""
    raw = [
        {
            "name": "frida",
            "instances": 2,
            "command": "frida",
            "readiness": {"exec": "frida-ps -D emulator-{5554 + 2*instance}", "period": "5s"},
            "liveness": {"tcp": "127.0.0.1:{27042 + instance}"},
        }
    ]
    expanded = expand_services(raw).services
    assert expanded[1]["readiness"] == {"exec": "frida-ps -D emulator-5556", "period": "5s"}
    assert expanded[1]["liveness"] == {"tcp": "127.0.0.1:27043"}
    assert raw[0]["readiness"]["exec"].startswith("frida-ps -D emulator-{")  # not mutated


def test_overrides_replace_the_file_count() -> None:
    """A run-time count (scale) replaces the file's; it is said as an override only if it
    differs, and only for a table with instances."""
    config = parse_config(
        {"service": list(FARM)}, environ={}, instances={"collector": 5, "emulator": 3, "report": 2}
    )
    names = list(config.services_by_name())
    assert names.count("report") == 1 and "collector@4" in names and "emulator@3" not in names
    assert config.instance_overrides == {"collector": 5}
    # frida has 3, collector now 5: each collector requires every frida
    assert config.services_by_name()["collector@4"].requires == ["frida@0", "frida@1", "frida@2"]


def test_revision_follows_the_concrete_configuration() -> None:
    """Equal configurations have equal revisions; any change of what runs changes it."""
    first = parse(*FARM).services_by_name()
    again = parse(*FARM).services_by_name()
    assert first["emulator@1"].spec() == again["emulator@1"].spec()
    assert first["emulator@0"].spec().revision != first["emulator@1"].spec().revision
    changed = parse({**FARM[0], "env": {"ANDROID_SERIAL": "x"}}, *FARM[1:]).services_by_name()
    assert changed["emulator@1"].spec() != first["emulator@1"].spec()
    assert changed["frida@1"].spec() == first["frida@1"].spec()
    reordered = parse({"name": "a", "command": "a", "env": {"X": "1", "Y": "2"}})
    same = parse({"name": "a", "command": "a", "env": {"Y": "2", "X": "1"}})
    assert reordered.service[0].revision() == same.service[0].revision()


# -- problems at their key paths -------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (
            {"name": "e", "instances": 2, "command": "e {port}"},
            "service[0] (e).command: {port}: unknown name `port` (fields know `instance` and "
            "`name`)",
        ),
        (
            {"name": "e", "instances": 2, "command": ["e", "{instance/2}"]},
            "service[0] (e).command[1]: {instance/2}: / (use // for whole numbers) is not "
            "allowed; a field takes integers, `instance`, + - * // %, parentheses",
        ),
        (
            {"name": "e", "instances": 2, "command": "e", "env": {"P": "{1 // (instance - 1)}"}},
            "service[0] (e).env.P: {1 // (instance - 1)} divides by zero for instance 1",
        ),
        (
            {"name": "e", "instances": 0, "command": "e"},
            f"service[0] (e).instances: expected a whole number from 1 to {MAX_INSTANCES}",
        ),
        (
            {"name": "e", "instances": "3", "command": "e"},
            f"service[0] (e).instances: expected a whole number from 1 to {MAX_INSTANCES}",
        ),
        (
            {"name": "e@1", "command": "e"},
            "service[0].name: '@' is kept for instances (name@0, name@1, ...): write "
            "instances = N instead",
        ),
        (
            {"name": "e", "command": "e", "instance_of": "x"},
            "service[0] (e).instance_of: set by heartwatch for instances; leave it out",
        ),
    ],
)
def test_instance_problems_name_the_key(service: dict[str, Any], expected: str) -> None:
    """Each problem is said once, at the [[service]] table's key, however many instances."""
    assert problems(service) == [expected]


def test_schema_problems_of_instances_are_at_their_table() -> None:
    """A schema problem in expanded instances is reported once, at the table it came from."""
    found = problems(
        {"name": "ok", "command": "ok"},
        {"name": "e", "instances": 3, "command": "e", "stop_timeout": "soon"},
        {"name": "f", "command": "f", "stop_signal": "NOPE"},
    )
    assert len(found) == 2
    assert found[0].startswith("service[1] (e).stop_timeout: ")
    assert found[1].startswith("service[2] (f).stop_signal: ")


def test_requires_and_default_service_of_instances() -> None:
    """A concrete name must exist; default_service names one instance, not a group."""
    found = problems(
        {"name": "e", "instances": 2, "command": "e"},
        {"name": "c", "command": "c", "requires": ["e@2", "e@1"]},
        server={"default_service": "e"},
    )
    assert found == [
        "service[1] (c).requires[0]: no service 'e@2'",
        "server.default_service: 'e' has instances: name one of them (e@0, ...)",
    ]
    config = parse({"name": "e", "instances": 2, "command": "e"}, server={"default_service": "e@1"})
    assert config.server.default_service == "e@1"


def test_one_instance_falls_alone() -> None:
    """collector@1's hang recovers emulator@1 and collector@1 (restart = "group"), no other."""
    config = parse(
        {"name": "emulator", "instances": 3, "command": "emu {instance}"},
        {
            "name": "collector",
            "instances": 3,
            "command": "collect {instance}",
            "requires": ["emulator"],
            "heartbeat_timeout": "10s",
            "restart": "group",
        },
    )
    wd = Watchdog([s.spec() for s in config.service], random=lambda: 0.5)
    wd.receive_start([r.name for r in wd.records()], 0.0, "daemon started")
    now = 0.0
    for _ in range(10):  # emulators first, then the collectors once those are ready
        for action in wd.actions_to_take():
            assert isinstance(action, Spawn)
            wd.receive_spawned(action.service, 100, now)
        for k in range(3):
            wd.receive_message(f"collector@{k}", "heartbeat", now)
        if all(record.state.value == "running" for record in wd.records()):
            break
        now += 1.0
        wd.tick(now)
    assert all(record.state.value == "running" for record in wd.records())
    for k in (0, 2):
        wd.receive_message(f"collector@{k}", "heartbeat", now + 9.0)
    wd.tick(now + 10.5)
    stops = [a.service for a in wd.actions_to_take() if isinstance(a, Stop)]
    assert stops == ["collector@1"]  # the emulator waits for its collector to be down
    wd.receive_exit("collector@1", -15, now + 10.6)
    stops = [a.service for a in wd.actions_to_take() if isinstance(a, Stop)]
    assert stops == ["emulator@1"]
    untouched = {"emulator@0", "emulator@2", "collector@0", "collector@2"}
    assert all(wd.record(name).state.value == "running" for name in untouched)


def test_warnings_of_instances_are_at_their_table() -> None:
    """check's warnings name the [[service]] table, once for all its instances."""
    config = parse(
        {"name": "a", "command": "true"},
        {"name": "e", "instances": 3, "command": "no-such-program-here {instance}"},
    )
    assert [str(w) for w in config_warnings(config, environ={"PATH": "/usr/bin:/bin"})] == [
        "service[1] (e).command: executable `no-such-program-here` not found on PATH"
    ]
    assert config.key_path("e@2") == "service[1] (e)"


def test_growing_every_table_of_a_chain_leaves_the_running_chains_alone() -> None:
    """4 -> 6 in each table: the four chains' specs are equal, only the new ones are added."""

    def chain(count: int) -> dict[str, Any]:
        tables = [
            {"name": "emulator", "instances": count, "command": "emu {5554 + 2 * instance}"},
            {"name": "frida", "instances": count, "command": "frida", "requires": ["emulator"]},
            {"name": "collector", "instances": count, "command": "c", "requires": ["frida"]},
        ]
        return {s.name: s.spec() for s in parse(*tables).service}

    changes = diff_services(chain(4), chain(6))
    assert changes.changed == () and changes.removed == ()
    assert changes.added == tuple(
        f"{t}@{k}" for t in ("emulator", "frida", "collector") for k in (4, 5)
    )
    tables = [
        {"name": "emulator", "instances": 4, "command": "emu"},
        {"name": "frida", "instances": 4, "command": "frida", "requires": ["emulator"]},
    ]
    before = {s.name: s.spec() for s in parse(*tables).service}
    scaled = parse_config({"service": tables}, environ={}, instances={"emulator": 6})
    one_table = diff_services(before, {s.name: s.spec() for s in scaled.service})
    assert one_table.added == ("emulator@4", "emulator@5")
    assert one_table.changed == tuple(f"frida@{k}" for k in range(4))  # now require all 6


def test_a_misspelt_instances_is_suggested() -> None:
    """`instnaces` suggests `instances`, never the keys heartwatch sets itself."""
    assert problems({"name": "a", "command": "a", "instnaces": 3}) == [
        "service[0] (a).instnaces: unknown key `instnaces`; did you mean `instances`?"
    ]


@pytest.mark.parametrize(
    "body", ['{"instances": true}', '{"instances": "5"}', '{"instances": 2.5}']
)
def test_scale_takes_a_whole_number_only(body: str) -> None:
    """``POST /api/v1/scale/{service}``'s body: ``true`` is not one instance, nor ``"5"``
    five, nor 2.5 anything (the request is refused, 422, rather than read as something else)."""
    from pydantic import ValidationError

    from heartwatch.web.reload import ScaleRequest

    assert ScaleRequest.model_validate_json('{"instances": 3}').instances == 3
    # 3.0 is the same JSON number (JSON Schema's integers include it): three.
    assert ScaleRequest.model_validate_json('{"instances": 3.0}').instances == 3
    with pytest.raises(ValidationError):
        ScaleRequest.model_validate_json(body)
    with pytest.raises(ValidationError):  # as FastAPI validates the decoded body
        ScaleRequest.model_validate(json.loads(body))
