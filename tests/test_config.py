"""Configuration: durations, the schema, and errors that name the key path."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from heartwatch.config import (
    ConfigError,
    config_warnings,
    load_config,
    parse_config,
)
from heartwatch.core.addresses import is_loopback
from heartwatch.core.graph import DependencyCycleError, DependencyGraph
from heartwatch.core.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("2m30s", 150.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1h 30m", 5400.0),
        ("1d", 86400.0),
    ],
)
def test_parse_duration_accepts_the_documented_forms(text: object, seconds: float) -> None:
    """90, "90s", "2m30s", "1h" and friends are seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "-1", "m", "1.5.2s", True, None, [1], "nan"])
def test_parse_duration_refuses_what_is_not_a_duration(text: object) -> None:
    """Anything else is a ValueError with a hint."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration_reads_like_a_reason() -> None:
    """Tenths below 100 s; whole units above, two at most and no zero."""
    assert format_duration(3.0) == "3.0 s"
    assert format_duration(61.23) == "61.2 s"
    assert format_duration(600) == "10 min"
    assert format_duration(7505) == "2 h 5 min"


def test_parse_size() -> None:
    """Sizes are bytes, with K/M/G as powers of 1024."""
    assert parse_size("10MB") == 10 * 1024**2
    assert parse_size("512 KiB") == 512 * 1024
    assert parse_size(100) == 100
    with pytest.raises(ValueError, match="size"):
        parse_size("ten")


def test_parse_config_sketch_from_design() -> None:
    """The design's sketch parses, with defaults for everything it leaves out."""
    config = parse_config(
        {
            "server": {"tcp": "127.0.0.1:5005", "http": "127.0.0.1:8765", "default_service": "c"},
            "service": [
                {"name": "emulator", "command": "emulator -avd x", "ready": "60s"},
                {
                    "name": "c",
                    "command": ["python", "c.py"],
                    "requires": ["emulator"],
                    "startup_grace": "150s",
                    "heartbeat_timeout": "60s",
                    "data_timeout": {"poiid": "10m"},
                    "restart": "group",
                    "stop_signal": "INT",
                },
            ],
        }
    )
    emulator, collector = config.service
    assert config.server.tcp == ("127.0.0.1", 5005)
    assert emulator.ready_delay == 60.0 and not emulator.ready_on_message
    assert collector.ready_on_message and collector.data_timeout == {"poiid": 600.0}
    assert collector.stop_signal is signal.SIGINT
    assert config.graph().start_order() == ["emulator", "c"]


def problems_of(data: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ=environ or {})
    return [str(p) for p in caught.value.problems]


def test_config_errors_name_the_key_path_and_all_are_reported() -> None:
    """Every field problem is reported at once, each at its key path."""
    problems = problems_of(
        {
            "server": {"tcp": "x:99999", "bogus": 1},
            "service": [
                {"name": "a", "command": "x", "heartbeat_timeout": "abc"},
                {"name": "b", "extra": 2, "stop_signal": "FOO", "data_timeout": {"poiid": "z"}},
            ],
        }
    )
    paths = [p.split(":")[0] for p in problems]
    assert paths == [
        "server.tcp",
        "server.bogus",
        "service[0] (a).heartbeat_timeout",
        "service[1] (b).data_timeout.poiid",
        "service[1] (b).stop_signal",
        "service[1] (b).extra",
    ]


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        ([{"name": "a"}, {"name": "a"}], "service[1] (a).name: 'a' is already service[0]"),
        ([{"name": "a", "requires": ["zz"]}], "service[0] (a).requires[0]: no service 'zz'"),
        (
            [{"name": "a", "requires": ["a"]}],
            "service[0] (a).requires[0]: a service cannot require",
        ),
        (
            [{"name": "a", "requires": ["b"]}, {"name": "b", "requires": ["a"]}],
            "service[0] (a).requires: cycle: a -> b -> a",
        ),
        ([{"name": "a", "command": "x", "on_down": "y"}], "service[0] (a).on_down: on_down is for"),
        ([{"name": "bad name"}], "service[0].name: a service name is"),
        ([{"name": "a", "command": ""}], "service[0] (a).command: a command cannot be empty"),
        ([{"name": "a", "data_timeout": {"heartbeat": 5}}], "service[0] (a).data_timeout:"),
        ([{"name": "a", "restart": "all"}], "service[0] (a).restart:"),
        ([{"name": "a", "backoff_initial": 10, "backoff_max": 1}], "service[0] (a).backoff_max:"),
        # Against the default of the key not given (60 s), as the schema has it.
        ([{"name": "a", "backoff_initial": 100}], "service[0] (a).backoff_max: must be >="),
        ([{"name": "a", "data_timeout": {"start": 5}}], "service[0] (a).data_timeout: 'start' is"),
        (
            [{"name": "a"}, {"name": "heartwatch", "command": "x"}],
            "service[1] (heartwatch).name: its output would go to heartwatch.log",
        ),
        # `all` selects every service (heartwatch stop all): one so named could not be chosen.
        (
            [{"name": "all", "command": "x"}],
            "service[0] (all).name: 'all' is reserved: it means every service",
        ),
        (
            [{"name": "all", "command": "x", "instances": 2}],
            "service[0] (all).name: 'all' is reserved: it means every service",
        ),
    ],
)
def test_config_cross_checks(services: list[dict[str, Any]], expected: str) -> None:
    """Names, requirements, cycles and key combinations are checked with a named path."""
    assert any(p.startswith(expected) for p in problems_of({"service": services}))


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"service": [{"name": "a", "command": 5}]}, "service[0] (a).command"),
        ({"daemon": {"log_rotation": ["1 week", 5]}}, "daemon.log_rotation"),
        (
            {"service": [{"name": "a", "queue": {"name": "q", "url": 5}}]},
            "service[0] (a).queue.url",
        ),
        ({"service": [{"name": "a", "env": {"X": 5}}]}, "service[0] (a).env.X"),
        ({"server": {"http": [1]}}, "server.http"),
    ],
)
def test_problem_paths_leave_out_the_names_of_union_branches(
    data: dict[str, Any], path: str
) -> None:
    """A key path is what a person types: pydantic's names for the branches of a union
    (``str``, ``list[str]``, ``function-before[...]``) are never part of it."""
    problems = problems_of(data)
    assert problems and {p.split(": ")[0] for p in problems} == {path}, problems


def test_unknown_default_service_is_an_error() -> None:
    """default_service must name a configured service."""
    assert problems_of({"server": {"default_service": "q"}}) == [
        "server.default_service: no service 'q'"
    ]


def test_load_config_reports_file_and_toml_position(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the position."""
    path = tmp_path / "heartwatch.toml"
    path.write_text("[server\ntcp = 1\n")
    with pytest.raises(ConfigError, match=r"heartwatch\.toml: not valid TOML.*line 1"):
        load_config(path)


def test_load_config_resolves_paths_against_the_file(tmp_path: Path) -> None:
    """Relative paths in the file are relative to the file's folder, not the working directory."""
    path = tmp_path / "heartwatch.toml"
    path.write_text('[daemon]\nstate_dir = "st"\n')
    config = load_config(path)
    assert config.resolve(config.daemon.state_dir) == tmp_path / "st"


def test_load_config_missing_file(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_starter_file_is_valid() -> None:
    """The file ``heartwatch init`` writes passes the checks."""
    starter = Path(__file__).parents[1] / "src" / "heartwatch" / "starter.toml"
    config = load_config(starter)
    assert [s.name for s in config.service] == ["emulator", "collector"]


def test_graph_recovery_sets() -> None:
    """Service restart takes dependents; group restart also takes requirements and theirs."""
    graph = DependencyGraph({"emu": [], "app": ["emu"], "sink": [], "col": ["app", "sink"]})
    assert graph.recovery_set("app", "service") == {"app", "col"}
    assert graph.recovery_set("col", "service") == {"col"}
    assert graph.recovery_set("col", "group") == {"col", "app", "emu", "sink"}
    assert graph.start_order() == ["emu", "app", "sink", "col"]
    assert graph.sort({"col", "emu"}) == ["emu", "col"]


def test_graph_cycle_is_named() -> None:
    """A cycle is reported as the loop of names."""
    with pytest.raises(DependencyCycleError) as caught:
        DependencyGraph({"a": ["b"], "b": ["c"], "c": ["a"]}).start_order()
    assert caught.value.cycle == ["a", "b", "c", "a"]


def test_field_and_cross_key_problems_come_in_one_round() -> None:
    """A broken field does not hide a dangling requirement or a bad default_service."""
    problems = problems_of(
        {
            "server": {"default_service": "ghost"},
            "service": [
                {"name": "a", "heartbeat_timeout": "soon", "requires": ["nope"]},
                {"name": "a", "command": "x", "on_down": "y"},
                "not a table",
            ],
        }
    )
    paths = sorted(p.split(":")[0] for p in problems)
    assert paths == [
        "server.default_service",
        "service[0] (a).heartbeat_timeout",
        "service[0] (a).requires[0]",
        "service[1] (a).name",
        "service[1] (a).on_down",
        "service[2]",
    ]


@pytest.mark.parametrize("key", ["http", "tcp"])
def test_listening_beyond_loopback_needs_a_token(key: str) -> None:
    """A non-loopback address without a token is refused, naming server.token and why."""
    assert problems_of({"server": {key: "0.0.0.0:1"}}) == [
        f"server.token: required when server.{key} listens on 0.0.0.0 (not loopback); "
        "set it here or in HEARTWATCH_TOKEN"
    ]
    with_token = parse_config({"server": {key: "0.0.0.0:1", "token": "long-enough"}}, environ={})
    assert with_token.server.token == "long-enough"
    from_env = parse_config({"server": {key: "[::]:1"}}, environ={"HEARTWATCH_TOKEN": "t" * 12})
    assert from_env.server.token == "t" * 12
    assert parse_config({"server": {key: "[::1]:1"}}, environ={}).server.token is None


def test_tokens_must_be_long_and_plain() -> None:
    """Short tokens, or ones with spaces, are refused at their key."""
    assert problems_of({"server": {"read_token": "short"}}) == [
        "server.read_token: a token is at least 8 printable characters without spaces"
    ]
    assert problems_of({"server": {"token": "has a space"}})[0].startswith("server.token:")


def test_notify_urls_are_checked_without_showing_them() -> None:
    """A URL apprise does not take is named by its index and scheme, never in full."""
    problems = problems_of(
        {"notify": {"urls": ["json://127.0.0.1:9/x", "nope://user:secret@host", "plain"]}}
    )
    assert problems[0].startswith("notify.urls[1]: (nope://…) is not a notification URL")
    assert problems[1].startswith("notify.urls[2]: (?://…)")
    assert not any("secret" in problem for problem in problems)


def test_alerts_were_notify_and_the_old_name_still_works() -> None:
    """``[notify]`` is read as ``[alerts]``, and problems in it are named as the file names
    them; ``[alerts]`` and ``[notify]`` together are an error naming both."""
    old = parse_config({"notify": {"rate_limit": 3}})
    assert (old.alerts.rate_limit, old.alerts_section) == (3, "notify")
    new = parse_config({"alerts": {"rate_limit": 4}})
    assert (new.alerts.rate_limit, new.alerts_section) == (4, "alerts")
    assert problems_of({"notify": {"rate_limit": 0, "rate_windw": 1}}) == [
        "notify.rate_limit: Input should be greater than or equal to 1",
        "notify.rate_windw: unknown key `rate_windw`; did you mean `rate_window`?",
    ]
    assert problems_of({"alerts": {"rate_limit": 0}}) == [
        "alerts.rate_limit: Input should be greater than or equal to 1"
    ]
    assert problems_of({"notify": {}, "alerts": {}}) == [
        "notify: [notify] is the old name of [alerts]; the file has both: keep [alerts]"
    ]


def test_history_defaults_to_the_state_dir(tmp_path: Path) -> None:
    """History lives beside the daemon's state unless [history] path says otherwise."""
    config = parse_config({"daemon": {"state_dir": "st"}}, base_dir=tmp_path, environ={})
    assert config.history_path == tmp_path / "st" / "history.sqlite3"
    assert config.history.retention == 30 * 86400
    moved = parse_config({"history": {"path": "h.db", "retention": "7d"}}, base_dir=tmp_path)
    assert moved.history_path == tmp_path / "h.db" and moved.history.retention == 7 * 86400


def test_token_combinations() -> None:
    """A read-only token needs the control one; an ingest token alone may open TCP only."""
    assert problems_of({"server": {"read_token": "read-only-1"}}) == [
        "server.read_token: needs server.token too (else everyone may control)"
    ]
    tcp_only = parse_config(
        {"server": {"tcp": "0.0.0.0:5005", "ingest_token": "ingest-1234"}}, environ={}
    )
    assert tcp_only.server.token is None
    assert problems_of({"server": {"http": "0.0.0.0:1", "ingest_token": "ingest-1234"}}) == [
        "server.token: required when server.http listens on 0.0.0.0 (not loopback); "
        "set it here or in HEARTWATCH_TOKEN"
    ]
    assert problems_of({}, environ={"HEARTWATCH_TOKEN": " short "}) == [
        "HEARTWATCH_TOKEN: a token is at least 8 printable characters without spaces"
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("x.y", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    """Loopback as sockets report it, IPv4-mapped addresses included."""
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"daemon": {"stat_dir": "st"}},
            ["daemon.stat_dir: unknown key `stat_dir`; did you mean `state_dir`?"],
        ),
        ({"servr": {"tcp": 1}}, ["servr: unknown key `servr`; did you mean `server`?"]),
        ({"bogus": 1}, ["bogus: unknown key `bogus`"]),  # no far-fetched suggestion
        ({"base_dir": "/"}, ["base_dir: unknown key `base_dir`"]),
        (
            {"service": [{"name": "collector", "hearbeat_timeout": 5}]},
            [
                "service[0] (collector).hearbeat_timeout: unknown key `hearbeat_timeout`; "
                "did you mean `heartbeat_timeout`?"
            ],
        ),
        (
            {"service": [{"name": "c", "queue": {"name": "q", "staled_after": 5}}]},
            [
                "service[0] (c).queue.staled_after: unknown key `staled_after`; "
                "did you mean `stalled_after`?"
            ],
        ),
        (
            {"service": [{"name": "a"}, {"name": "b"}, {"name": "collector", "startup_grace": 0j}]},
            ["service[2] (collector).startup_grace: "],
        ),
        ({"service": [{"command": "x"}]}, ["service[0].name: required, and missing"]),
        ({"service": ["not a table"]}, ["service[0]: expected a table"]),
        ({"service": {"name": "a"}}, ["service: expected [[service]] tables (an array of"]),
        # A broken name names nothing: the index alone, and the name's own problem.
        (
            {"service": [{"name": "bad name", "restart": "x"}]},
            ["service[0].name: a service name is", "service[0].restart: "],
        ),
        (
            {"service": [{"name": "a", "requires": ["ghost"]}, {"name": "a"}]},
            ["service[1] (a).name: 'a' is", "service[0] (a).requires[0]: no service 'ghost'"],
        ),
    ],
)
def test_broken_configs_say_what_and_where(data: dict[str, Any], expected: list[str]) -> None:
    """Unknown keys suggest the close one; services are named by index and name."""
    problems = problems_of(data)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), problems


def test_twenty_problems_come_in_one_round_with_the_token_one() -> None:
    """A bind beyond loopback without a token is reported with every other problem, not once
    they are all fixed (it used to need a valid file to be checked at all)."""
    problems = problems_of(
        {
            "server": {"http": "0.0.0.0:8765", "tcp": "x:99999", "max_connections": 0, "tken": "t"},
            "daemon": {"stat_dir": "st", "output_backups": -1},
            "logs": {"initial_lines": -1, "ping_interval": "often"},
            "history": {"retention": "forever"},
            "notify": {"rate_limit": 0, "urls": ["nope://secret@x"]},
            "service": [
                {"name": "bad name"},
                {"name": "a", "heartbeat_timeout": "soon", "requires": ["ghost"]},
                {"name": "a", "restart": "sometimes", "stop_signal": "FOO"},
                {"name": "b", "command": "", "backoff_factor": 0.5},
                {"command": "x"},
            ],
        }
    )
    assert len(problems) == 20, problems
    assert (
        "server.token: required when server.http listens on 0.0.0.0 (not loopback); "
        "set it here or in HEARTWATCH_TOKEN"
    ) in problems
    assert any(p.startswith("notify.urls[0]: (nope://…)") for p in problems)
    assert "server.tken: unknown key `tken`; did you mean `token`?" in problems


def test_a_broken_token_is_not_also_reported_missing() -> None:
    """A token that is there but too short is one problem, not also "required"."""
    assert problems_of({"server": {"http": "0.0.0.0:1", "token": "short"}, "bogus": 1}) == [
        "server.token: a token is at least 8 printable characters without spaces",
        "bogus: unknown key `bogus`",
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  # and another\n"])
def test_an_empty_file_is_an_error(tmp_path: Path, text: str) -> None:
    """A file with nothing in it would run a daemon that supervises nothing: refused."""
    path = tmp_path / "heartwatch.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [
        "the file is empty: there is nothing to run (heartwatch init writes a starter file)"
    ]


def test_warnings_name_commands_that_cannot_start(tmp_path: Path) -> None:
    """Executables not on PATH (or not executable) and missing folders are warned about, each
    at its key; what would start gets no warning."""
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "work" / "run.sh").chmod(0o755)
    config = parse_config(
        {
            "service": [
                {"name": "a", "command": "nonexist-hw-7f3 --x"},
                {"name": "b", "command": ["./run.sh"], "cwd": "missing"},
                {"name": "c", "command": "sh -c 'exit 0'"},
                {"name": "d", "command": [str(plain)]},
                {"name": "e", "command": "tool --go", "env": {"PATH": str(tmp_path / "bin")}},
                {"name": "f", "command": "/nonexistent/bin/x"},
                {"name": "g", "command": "./run.sh", "cwd": "work"},
                {"name": "h", "command": "./run.sh"},
                {"name": "w", "heartbeat_timeout": 5},
            ]
        },
        base_dir=tmp_path,
        environ={},
    )
    warnings = [str(w) for w in config_warnings(config, environ={"PATH": "/usr/bin:/bin"})]
    assert warnings == [
        "service[0] (a).command: executable `nonexist-hw-7f3` not found on PATH",
        f"service[1] (b).cwd: folder {tmp_path / 'missing'} does not exist",
        f"service[3] (d).command: {plain} is not an executable file",
        "service[5] (f).command: /nonexistent/bin/x does not exist",
        f"service[7] (h).command: {tmp_path / 'run.sh'} does not exist",
    ]


def test_a_file_without_services_is_warned_about() -> None:
    """Sections but no [[service]]: valid, but nothing to supervise."""
    config = parse_config({"server": {"tcp": 5005}}, environ={})
    assert [str(w) for w in config_warnings(config)] == [
        "service: no [[service]] in the file: there is nothing to supervise"
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://guest:Pa#ss-SEKRIT@127.0.0.1:1/", "user-info holds a raw '/', '?' or '#'"),
        ("amqp://guest:Pa/ss@127.0.0.1/", "user-info holds a raw '/', '?' or '#'"),
        ("amqp://g:p@h:notaport/", "the port of the queue URL is not a number"),
        ("http://broker/", "starts with amqp:// or amqps://"),
        ("amqp:///vhost", "names no host"),
    ],
)
def test_queue_urls_are_checked_as_the_watch_will_read_them(url: str, expected: str) -> None:
    """`check` finds what the queue watch would only find at run time, never quoting the URL
    (its password)."""
    found = problems_of({"service": [{"name": "a", "queue": {"name": "q", "url": url}}]})
    assert [p for p in found if p.startswith("service[0] (a).queue.url:")] != []
    assert any(expected in p for p in found), found
    assert not any("SEKRIT" in p or "Pa/ss" in p for p in found)
