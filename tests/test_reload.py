"""A new configuration applied as a difference: ``core/reconfigure.py`` and
``Watchdog.reconfigure``, with explicit ``now`` values."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException
from hypothesis import example, given, settings
from hypothesis import strategies as st

from heartwatch.config import Config, load_config, parse_config
from heartwatch.core.events import ServiceState, Spawn, Stop, UnknownService
from heartwatch.core.journal import Journal, JournalEntry
from heartwatch.core.liveness import LivenessRules
from heartwatch.core.reconfigure import ServiceChanges, diff_services, settings_needing_restart
from heartwatch.core.spec import ServiceSpec
from heartwatch.core.watchdog import CONFIGURATION_CHANGED, REMOVED, Watchdog
from heartwatch.daemon import supervisor as supervisor_module
from heartwatch.daemon.reload import NotScalable, Reloader, ReloadRefused, UnknownTable
from heartwatch.daemon.statedir import StateDir
from heartwatch.daemon.supervisor import Supervisor
from heartwatch.web.control import _carry_out, select_or_404
from test_watchdog import (
    VERBS,
    AnyDriver,
    _any_inputs,
    apply,
    behave,
    check_tables,
    make,
    pipelines,
)

S = ServiceState


class _AnyText(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)

    __hash__ = str.__hash__


ANY_TEXT = _AnyText()


def specs(*services: dict[str, Any]) -> list[ServiceSpec]:
    config = parse_config({"service": list(services)}, environ={})
    return [service.spec() for service in config.service]


EMULATOR = {"name": "emulator", "command": "emu"}
COLLECTOR = {
    "name": "collector",
    "command": "collect",
    "requires": ["emulator"],
    "heartbeat_timeout": "60s",
}
OTHER = {"name": "other", "command": "other", "heartbeat_timeout": "30s"}


def spawn_all(wd: Watchdog, now: float, pid: int = 100) -> list[str]:
    names = []
    for action in wd.actions_to_take():
        assert isinstance(action, Spawn), action
        names.append(action.service)
        wd.receive_spawned(action.service, pid, now)
    return names


def stops(wd: Watchdog) -> list[str]:
    actions = wd.actions_to_take()
    assert all(isinstance(a, Stop) for a in actions), actions
    return [a.service for a in actions]


def running(*services: dict[str, Any]) -> Watchdog:
    """Everything started at 0 and running by 10 s (each beating at 5 s)."""
    wd = Watchdog(specs(*services), random=lambda: 0.5)
    wd.receive_start([r.name for r in wd.records()], 0.0, "daemon started")
    for now in (0.0, 2.0, 4.0):
        spawn_all(wd, now)
        wd.tick(now + 1.5)
    spawn_all(wd, 6.0)
    for record in wd.records():
        wd.receive_message(record.name, "heartbeat", 8.0)
    wd.tick(10.0)
    assert [r.state for r in wd.records()] == [S.RUNNING] * len(wd.records())
    wd.events_to_take()
    return wd


def test_diff_sorts_services() -> None:
    """Added, removed, changed and unchanged, each in its configuration's order."""
    rules = LivenessRules(
        ready_on_message=False,
        ready_delay=0.0,
        startup_grace=60.0,
        heartbeat_timeout=None,
        data_timeout={},
    )
    a, b, c = (ServiceSpec(name, rules) for name in "abc")
    b2 = ServiceSpec("b", rules, revision="other")
    changes = diff_services({"a": a, "b": b, "c": c}, {"b": b2, "d": a, "a": a})
    assert changes == ServiceChanges(added=("d",), removed=("c",), changed=("b",), unchanged=("a",))
    assert changes.describe() == "added d; changed b; removed c"
    assert ServiceChanges(unchanged=("a",)).describe() == "nothing changed"


def test_settings_needing_restart() -> None:
    """Differing keys are listed, except those applied live; keys that came or went too."""
    old = {"server.tcp": ("127.0.0.1", 1), "server.default_service": "a", "logs.roots": []}
    new = {"server.tcp": ("127.0.0.1", 2), "server.default_service": "b", "alerts.urls": []}
    needed = settings_needing_restart(old, new, {"server.default_service"})
    assert needed == ["alerts.urls", "logs.roots", "server.tcp"]
    assert settings_needing_restart(old, dict(old), ()) == []


def test_unchanged_services_are_not_touched() -> None:
    """A change to one service leaves another's process, deadlines and counters as they were."""
    wd = running(EMULATOR, COLLECTOR, OTHER)
    other = wd.record("other")
    before = (other.pid, other.messages, other.spawns, other.state_since, wd.next_deadline())
    liveness = other.liveness
    changes = wd.reconfigure(specs(EMULATOR, COLLECTOR, {**OTHER, "stop_timeout": "3s"}), 20.0)
    assert changes.changed == ("other",)
    assert changes.unchanged == ("emulator", "collector")
    assert stops(wd) == ["other"]
    emulator, collector = wd.record("emulator"), wd.record("collector")
    assert emulator.state is S.RUNNING and collector.state is S.RUNNING
    assert collector.liveness is not None and collector.messages == 1
    assert wd.record("other") is other and other.liveness is None and liveness is not None
    assert before[0] == 100


def test_a_changed_service_restarts_with_its_dependents() -> None:
    """A changed requirement restarts as `restart` does: dependents stop first, start after."""
    wd = running(EMULATOR, COLLECTOR, OTHER)
    changes = wd.reconfigure(specs({**EMULATOR, "command": "emu -v"}, COLLECTOR, OTHER), 20.0)
    assert changes.changed == ("emulator",)
    assert (changes.restarted, changes.unchanged) == (("collector",), ("other",))
    assert changes.describe() == "changed emulator; restarted with them collector"
    assert stops(wd) == ["collector"]
    assert wd.record("emulator").reason == CONFIGURATION_CHANGED
    wd.receive_exit("collector", -15, 20.5)
    assert stops(wd) == ["emulator"]
    wd.receive_exit("emulator", -15, 21.0)
    assert spawn_all(wd, 21.0) == ["emulator"]
    assert wd.record("emulator").spec.revision != specs(EMULATOR)[0].revision
    assert wd.record("other").state is S.RUNNING


def test_a_removed_service_stops_after_what_relied_on_it() -> None:
    """Removed: dependents first; the record goes once its process is gone."""
    wd = running(EMULATOR, COLLECTOR, OTHER)
    changes = wd.reconfigure(specs(OTHER), 20.0)
    assert changes.removed == ("emulator", "collector")
    assert stops(wd) == ["collector"]
    assert wd.record("emulator").state is S.STOPPING
    with pytest.raises(UnknownService):
        wd.receive_start(["emulator"], 20.1, "start requested")
    wd.receive_exit("collector", -15, 20.5)
    assert "collector" not in wd
    assert stops(wd) == ["emulator"]
    wd.receive_exit("emulator", -15, 21.0)
    assert "emulator" not in wd and [r.name for r in wd.records()] == ["other"]
    with pytest.raises(UnknownService):
        wd.receive_message("emulator", "heartbeat", 21.1)
    last = [e for e in wd.events_to_take() if getattr(e, "service", None) == "emulator"][-1]
    assert last.new is S.STOPPED and last.reason.startswith(REMOVED)


def test_a_requirement_removed_stops_after_its_changed_dependent() -> None:
    """A dependent that no longer requires a removed service restarts; the removed one stops
    only once that dependent went down, and it does not wait for its new run."""
    wd = running(EMULATOR, COLLECTOR)
    changes = wd.reconfigure(specs({**COLLECTOR, "requires": []}), 20.0)
    assert (changes.removed, changes.changed) == (("emulator",), ("collector",))
    assert stops(wd) == ["collector"]
    wd.receive_exit("collector", -15, 20.5)
    actions = wd.actions_to_take()
    assert {type(a).__name__ for a in actions} == {"Stop", "Spawn"}
    assert [a.service for a in actions if isinstance(a, Stop)] == ["emulator"]
    wd.receive_exit("emulator", -15, 21.0)
    assert [r.name for r in wd.records()] == ["collector"]


def test_added_services_start_unless_autostart_is_false() -> None:
    """Added: started (requirements first) as `start` does; `autostart = false` stays down."""
    wd = running(EMULATOR)
    changes = wd.reconfigure(specs(EMULATOR, COLLECTOR, {**OTHER, "autostart": False}), 20.0)
    assert changes.added == ("collector", "other")
    assert spawn_all(wd, 20.0) == ["collector"]
    assert wd.record("collector").spawns == 1
    assert wd.record("other").state is S.STOPPED
    assert wd.record("emulator").spawns == 1


def test_changed_while_stopped_stays_stopped() -> None:
    """A service a person stopped takes its new settings and stays down."""
    wd = running(EMULATOR, OTHER)
    wd.receive_stop(["other"], 12.0, "stop requested")
    assert stops(wd) == ["other"]
    wd.receive_exit("other", -15, 12.5)
    changes = wd.reconfigure(specs(EMULATOR, {**OTHER, "command": "other -v"}), 20.0)
    assert changes.changed == ("other",)
    assert wd.actions_to_take() == []
    assert wd.record("other").state is S.STOPPED
    wd.receive_start(["other"], 21.0, "start requested")
    assert spawn_all(wd, 21.0) == ["other"]


def test_a_failed_service_is_started_with_its_new_settings() -> None:
    """The change may be the fix: a failed service that changed is started again."""
    wd = Watchdog(specs({**OTHER, "max_restarts": 0}), random=lambda: 0.5)
    wd.receive_start(["other"], 0.0, "daemon started")
    spawn_all(wd, 0.0)
    wd.receive_exit("other", 1, 0.5)
    assert wd.record("other").state is S.FAILED
    wd.reconfigure(specs({**OTHER, "max_restarts": 0, "command": "other --fixed"}), 5.0)
    assert spawn_all(wd, 5.0) == ["other"]


def test_a_changed_watch_only_service_is_watched_afresh() -> None:
    """New rules for a watch-only service: a new run from now (ready at its next message),
    no on_down, its dependents untouched."""
    watched = {"name": "db", "heartbeat_timeout": "30s", "on_down": "systemctl restart db"}
    user = {"name": "user", "command": "u", "requires": ["db"], "startsecs": 0}
    wd = Watchdog(specs(watched, user), random=lambda: 0.5)
    wd.receive_start(["db", "user"], 0.0, "daemon started")
    wd.receive_message("db", "heartbeat", 1.0)
    spawn_all(wd, 1.0)
    assert wd.record("db").state is S.RUNNING and wd.record("user").state is S.RUNNING
    wd.events_to_take()
    wd.reconfigure(specs({**watched, "heartbeat_timeout": "10s"}, user), 20.0)
    assert wd.actions_to_take() == []  # no on_down, no stop of its dependent
    assert [(e.old, e.new) for e in wd.events_to_take() if e.service == "db"] == [
        (S.RUNNING, S.RESTARTING),
        (S.RESTARTING, S.STARTING),
    ]
    assert wd.record("user").state is S.RUNNING and wd.record("user").pid == 100
    wd.receive_message("db", "heartbeat", 21.0)
    assert wd.record("db").state is S.RUNNING
    assert wd.next_deadline() == pytest.approx(31.0)  # the new heartbeat_timeout
    wd.tick(31.0)
    late = [e for e in wd.events_to_take() if getattr(e, "new", None) is S.UNRESPONSIVE]
    assert [(e.service, e.at) for e in late] == [("db", 31.0)]


def test_a_service_added_back_before_its_process_went() -> None:
    """Removed and then added back while stopping: it comes back once its old run is gone."""
    wd = running(EMULATOR, OTHER)
    wd.reconfigure(specs(EMULATOR), 20.0)
    assert stops(wd) == ["other"]
    changes = wd.reconfigure(specs(EMULATOR, {**OTHER, "command": "other -v"}), 20.2)
    assert changes.added == ("other",)
    wd.receive_exit("other", -15, 20.5)
    assert spawn_all(wd, 20.5) == ["other"]
    assert wd.record("other").spec == specs(EMULATOR, {**OTHER, "command": "other -v"})[1]


def test_a_command_taken_away_is_a_removal_and_an_addition() -> None:
    """From a command to watch-only: its process stops (its dependents first, restarted),
    then a new record is watched; a person's start meanwhile waits for it."""
    wd = running(EMULATOR, COLLECTOR)
    old = wd.record("emulator")
    changes = wd.reconfigure(specs({"name": "emulator"}, COLLECTOR), 20.0)
    assert changes.changed == ("emulator",) and changes.restarted == ("collector",)
    assert stops(wd) == ["collector"]
    wd.receive_start(["emulator"], 20.2, "start requested")  # waits for the new record
    wd.receive_exit("collector", -15, 20.5)
    assert stops(wd) == ["emulator"]
    wd.receive_exit("emulator", -15, 21.0)
    new = wd.record("emulator")
    assert new is not old and new.spec.watch_only and new.state is S.RUNNING
    assert spawn_all(wd, 21.0) == ["collector"]
    assert [r.name for r in wd.records()] == ["emulator", "collector"]


def test_a_service_added_back_and_removed_again_before_its_process_went() -> None:
    """Removed, added back, removed again, all while its old run stops (review 11, item 1):
    the last reload says it is removed, and no new run of it ever begins."""
    wd = running(EMULATOR, OTHER)
    wd.reconfigure(specs(EMULATOR), 20.0)
    assert stops(wd) == ["other"]
    assert wd.reconfigure(specs(EMULATOR, OTHER), 20.1).added == ("other",)
    changes = wd.reconfigure(specs(EMULATOR), 20.2)
    assert (changes.removed, changes.added, changes.unchanged) == (("other",), (), ("emulator",))
    wd.receive_exit("other", -15, 23.0)
    assert wd.actions_to_take() == []
    assert [r.name for r in wd.records()] == ["emulator"]
    wd.receive_stop(["emulator"], 24.0, "stop requested")  # nothing else is left behind
    assert stops(wd) == ["emulator"]


def test_a_service_added_back_twice_begins_once_with_the_newest_settings() -> None:
    """Added back, changed, removed and added back again while its old run stops: one new
    run, by the settings in force when the old one is gone."""
    wd = running(EMULATOR, OTHER)
    wd.reconfigure(specs(EMULATOR), 20.0)
    assert stops(wd) == ["other"]
    wd.reconfigure(specs(EMULATOR, OTHER), 20.1)
    newest = {**OTHER, "command": "other -v"}
    assert wd.reconfigure(specs(EMULATOR, newest), 20.2).changed == ("other",)
    wd.reconfigure(specs(EMULATOR), 20.3)
    assert wd.reconfigure(specs(EMULATOR, newest), 20.4).added == ("other",)
    assert wd.reconfigure(specs(EMULATOR, newest), 20.5).unchanged == ("emulator", "other")
    wd.receive_exit("other", -15, 21.0)
    assert spawn_all(wd, 21.0) == ["other"]
    assert wd.record("other").spec == specs(EMULATOR, newest)[1]
    assert wd.actions_to_take() == []


def test_a_command_taken_away_with_a_new_dependent_still_stops_the_old_run() -> None:
    """Watch-only now, and a new service requires it (review 11, item 2): starting the new
    dependent's requirement must not ask the old run back; it stops, and the new watch-only
    record is what the dependent waits for."""
    wd = running({"name": "x", "command": "sleep 1003"})
    watched = {"name": "x", "heartbeat_timeout": "30s"}
    dependent = {"name": "d", "command": "sleep 1002", "requires": ["x"], "startsecs": 0}
    changes = wd.reconfigure(specs(watched, dependent), 20.0)
    assert (changes.changed, changes.added) == (("x",), ("d",))
    assert stops(wd) == ["x"]
    assert wd.record("x").state is S.STOPPING and not wd.record("x").wanted
    assert [e.new for e in wd.events_to_take() if e.service == "x"] == [S.STOPPING]
    wd.receive_exit("x", -15, 20.5)
    assert wd.record("x").spec.watch_only and wd.record("x").state is S.STARTING
    assert wd.actions_to_take() == []  # d waits for x to be ready
    wd.receive_message("x", "heartbeat", 21.0)
    assert spawn_all(wd, 21.0) == ["d"]


def test_a_reload_decides_every_change_before_it_acts() -> None:
    """Two changed services: the first one's restart must not spawn the second (free to
    start by its new settings) only for its own restart to stop it in the same breath."""
    slow = {"name": "slow", "command": "slow", "heartbeat_timeout": "60s"}
    waiting = {"name": "waiting", "command": "wait", "requires": ["slow"], "startsecs": 0}
    wd = Watchdog(specs(EMULATOR, slow, waiting), random=lambda: 0.5)
    wd.receive_start(["emulator", "slow", "waiting"], 0.0, "daemon started")
    assert spawn_all(wd, 0.0) == ["emulator", "slow"]
    assert wd.record("waiting").reason == "waiting for slow"
    changed = [{**EMULATOR, "command": "emu -v"}, slow, {**waiting, "requires": []}]
    wd.reconfigure(specs(*changed), 5.0)
    actions = [(type(a).__name__, a.service) for a in wd.actions_to_take()]
    assert sorted(actions) == [("Spawn", "waiting"), ("Stop", "emulator")]


class _Controlled:
    """What the control endpoints use of a supervisor, on a watchdog: its records, the
    services configured now, and the verbs."""

    def __init__(self, wd: Watchdog, configured: list[str]) -> None:
        self.watchdog = wd
        self.services = dict.fromkeys(configured)

    def start(self, names: list[str]) -> None:
        self.watchdog.receive_start(names, 30.0, "start requested")

    def stop(self, names: list[str]) -> None:
        self.watchdog.receive_stop(names, 30.0, "stop requested")

    def restart(self, name: str) -> None:
        self.watchdog.receive_restart(name, 30.0, "restart requested")


@pytest.mark.parametrize(
    ("verb", "names"),
    [("start", ["all"]), ("restart", ["all"]), ("restart", ["*"]), ("restart", ["other"])],
)
def test_a_removed_service_still_stopping_is_not_started_or_restarted(
    verb: Any, names: list[str]
) -> None:
    """Review 11, item 3: while a removed service stops, `all` and globs to start or restart
    select only what is configured, and its own name is a 404 that says why, before anything
    is done (no half-done restart); a stop still reaches it."""
    wd = running(EMULATOR, OTHER)
    wd.reconfigure(specs(EMULATOR), 20.0)
    assert stops(wd) == ["other"]
    supervisor = _Controlled(wd, ["emulator"])
    spawns = wd.record("emulator").spawns
    if names == ["other"]:
        with pytest.raises(HTTPException) as refused:
            select_or_404(supervisor, ["emulator", *names], verb)  # type: ignore[arg-type]
        assert refused.value.status_code == 404
        assert "removed by a reload, still stopping" in refused.value.detail["message"]
        assert wd.record("emulator").spawns == spawns and wd.actions_to_take() == []
        return
    selected = select_or_404(supervisor, names, verb)  # type: ignore[arg-type]
    assert selected == ["emulator"]
    _carry_out(supervisor, verb, selected)  # type: ignore[arg-type]
    assert wd.record("other").state is S.STOPPING
    assert select_or_404(supervisor, ["all"], "stop") == ["emulator", "other"]  # type: ignore[arg-type]


def test_shutdown_goes_on_when_a_killed_process_never_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review 11, item 1: shut-down waits its budget, SIGKILLs, then waits a bounded time
    more and goes on, even for a process that never reports its end."""
    config = parse_config(
        {
            "daemon": {"state_dir": str(tmp_path / "state"), "log_dir": str(tmp_path / "logs")},
            "service": [{"name": "watched", "heartbeat_timeout": "1h"}],
        },
        environ={},
    )
    monkeypatch.setattr(supervisor_module, "KILLED_WAIT", 0.2)
    killed: list[object] = []

    async def main() -> None:
        supervisor = Supervisor(config, StateDir(tmp_path / "state"), tcp_address=("127.0.0.1", 0))
        never_goes = object()  # a child whose end is never seen (as the review's hung daemon)
        supervisor._runner.children["ghost"] = never_goes  # type: ignore[assignment]
        monkeypatch.setattr(supervisor._runner, "kill_now", killed.append)
        await asyncio.wait_for(supervisor.shutdown(timeout=0.1), 10.0)

    asyncio.run(main())
    assert len(killed) == 1


# -- the reload driver's rules, with a recording stand-in for the supervisor ----------------


def _reraise(error: Exception) -> None:
    raise error


class _Supervisor:
    """What ``Reloader`` uses of a supervisor: the configuration in force, and a record."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.journal = Journal(on_error=_reraise)
        self.entries: list[JournalEntry] = []
        self.journal.subscribe(self.entries.append)
        self.applied: list[Config] = []

    def reconfigure(self, config: Config) -> ServiceChanges:
        old = {s.name: s.spec() for s in self.config.service}
        self.config = config
        self.applied.append(config)
        return diff_services(old, {s.name: s.spec() for s in config.service})

    def wall_time(self, at: float | None = None) -> float:
        return 1.0e9


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


FARM_TOML = """
[server]
tcp = "127.0.0.1:0"
[[service]]
name = "emulator"
instances = {count}
command = "emu -port {{5554 + 2 * instance}}"
[[service]]
name = "solo"
command = "solo"
"""


def _reloader(tmp_path: Path, text: str) -> tuple[Reloader, _Supervisor, Path]:
    path = _write(tmp_path / "heartwatch.toml", text)
    supervisor = _Supervisor(load_config(path))
    return Reloader(supervisor, path), supervisor, path  # type: ignore[arg-type]


def test_reload_refuses_an_invalid_file_whole(tmp_path: Path) -> None:
    """Every problem, nothing applied, the refusal journaled with its problems."""
    reloader, supervisor, path = _reloader(tmp_path, FARM_TOML.format(count=2))
    _write(
        path,
        FARM_TOML.format(count=2).replace(
            'command = "solo"', 'command = "solo"\nstop_timeout = "x"'
        ),
    )
    with pytest.raises(ReloadRefused) as refused:
        asyncio.run(reloader.reload())
    assert [p.path for p in refused.value.problems] == ["service[1] (solo).stop_timeout"]
    assert refused.value.headline == f"cannot use {path.resolve()}"
    assert supervisor.applied == []
    (entry,) = supervisor.entries
    assert entry.kind == "reload" and entry.reason.startswith("reload refused: cannot use")
    assert entry.detail == {
        "problems": [{"path": "service[1] (solo).stop_timeout", "message": ANY_TEXT}]
    }


def test_reload_keeps_settings_that_need_a_daemon_restart(tmp_path: Path) -> None:
    """A new listen address is reported, not applied; default_service is applied."""
    reloader, supervisor, path = _reloader(tmp_path, FARM_TOML.format(count=2))
    text = FARM_TOML.format(count=2).replace(
        'tcp = "127.0.0.1:0"', 'tcp = "127.0.0.1:9"\ndefault_service = "solo"'
    )
    _write(path, text)
    result = asyncio.run(reloader.reload())
    assert result.needs_daemon_restart == ["server.tcp"]
    assert supervisor.config.server.tcp == ("127.0.0.1", 0)
    assert supervisor.config.server.default_service == "solo"
    assert result.describe() == ("reload: nothing changed; needs a daemon restart for server.tcp")
    assert supervisor.entries[-1].reason == result.describe()
    again = asyncio.run(reloader.reload())  # still said until the daemon restarts
    assert again.needs_daemon_restart == ["server.tcp"]


def test_scale_overrides_until_the_file_count_changes(tmp_path: Path) -> None:
    """scale adds instances without reading the file; a reload keeps the count while the
    file's instances is unchanged and drops it once the file says another number."""
    reloader, supervisor, path = _reloader(tmp_path, FARM_TOML.format(count=2))
    _write(path, FARM_TOML.format(count=2) + '\n[[service]]\nname = "unread"\ncommand = "x"\n')
    result = asyncio.run(reloader.scale("emulator", 4))
    assert result.changes.added == ("emulator@2", "emulator@3")
    assert result.overrides == {"emulator": 4}
    assert supervisor.config.services_by_name()["emulator@3"].command == "emu -port 5560"
    assert "unread" not in supervisor.config.services_by_name()  # the file was not read
    kept = asyncio.run(reloader.reload())
    assert kept.overrides == {"emulator": 4} and kept.changes.added == ("unread",)
    _write(path, FARM_TOML.format(count=3))
    dropped = asyncio.run(reloader.reload())
    assert dropped.overrides == {} and dropped.changes.removed == ("emulator@3", "unread")
    back = asyncio.run(reloader.scale("emulator", 5))
    assert back.overrides == {"emulator": 5}
    same = asyncio.run(reloader.scale("emulator", 3))  # the file's count: no override
    assert same.overrides == {} and len(supervisor.config.instance_groups()["emulator"]) == 3


def test_scale_warns_of_the_dependents_it_restarts(tmp_path: Path) -> None:
    """Review 11, item 19: what requires a table's every instance changes with the count and
    restarts; the scale answer says so (and its log and journal line), a reload does not."""
    text = FARM_TOML.format(count=2) + (
        '[[service]]\nname = "reader"\ncommand = "read"\nrequires = ["emulator"]\n'
    )
    reloader, supervisor, path = _reloader(tmp_path, text)
    result = asyncio.run(reloader.scale("emulator", 3))
    assert result.changes.added == ("emulator@2",) and result.changes.changed == ("reader",)
    assert result.warnings == [
        "scaling emulator restarts reader: it requires every instance of emulator"
    ]
    assert result.as_dict()["warnings"] == result.warnings
    assert supervisor.entries[-1].reason.endswith(
        "; scaling emulator restarts reader: it requires every instance of emulator"
    )
    alone = asyncio.run(reloader.scale("emulator", 2))  # back: reader restarts again
    assert alone.warnings == result.warnings
    _write(path, text.replace('command = "solo"', 'command = "solo -v"'))
    assert asyncio.run(reloader.reload()).warnings == []


def test_scale_needs_a_table_with_instances(tmp_path: Path) -> None:
    reloader, _, _ = _reloader(tmp_path, FARM_TOML.format(count=2))
    with pytest.raises(NotScalable, match="solo has no instances"):
        asyncio.run(reloader.scale("solo", 3))
    with pytest.raises(UnknownTable):
        asyncio.run(reloader.scale("emulator@0", 3))


# -- properties: any pipeline, any run, then any new configuration --------------------------


@st.composite
def reconfigurations(
    draw: st.DrawFn,
) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """A pipeline and one to three reloads of it: in each, every service kept as the previous
    configuration had it, as the first one had it (a removed one added back), replaced by
    another (changed) or dropped (removed), or new (added), with requirements on what is
    left. Reloads in a row, with no input between them, come while earlier stops are under
    way (the driver answers a stop only when an input says so)."""
    old = draw(pipelines())
    configurations = [old]
    for _ in range(draw(st.integers(1, 3))):
        previous, other = configurations[-1], draw(pipelines())
        sources = {"keep": previous, "first": old, "other": other, "drop": []}
        new: list[dict[str, Any]] = []
        for index in range(max(len(old), len(previous), len(other))):
            source = sources[draw(st.sampled_from(list(sources)))]
            present = {s["name"] for s in new}
            service = next((s for s in source if s["name"] == f"s{index}"), None)
            if service is not None:
                requires = [r for r in service["requires"] if r in present]
                new.append({**service, "requires": requires})
        configurations.append(new or [dict(old[0])])
    return old, configurations[1:]


# Inputs between two reloads: often none (a reload in a row), never many.
_between = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(VERBS), st.integers(0, 3), st.floats(min_value=0.0, max_value=30.0)
        ),
        max_size=6,
    ),
    min_size=3,
    max_size=3,
)


def _play(wd: Watchdog, driver: AnyDriver, inputs: Any, names: list[str], now: float) -> float:
    phases: dict[str, Any] = {}
    for verb, index, step in inputs:
        now += step
        apply(wd, driver, verb, names[index % len(names)], now, data_kind="d")
        driver.take(now)
        check_tables(wd, driver.events, phases)
        driver.events.clear()
        for record in wd.records():
            assert record.alive == (record.name in driver.alive)
    return now


def _given_up_chain(*names: str) -> list[dict[str, Any]]:
    """Services that give up at their first failure; the last requires the first two."""
    chain = [
        {
            "name": name,
            "requires": ["s0", "s1"] if name == "s2" else [],
            "restart": "service",
            "autorestart": "always",
            "max_restarts": 0,
            "backoff_initial": 0,
            "startup_grace": 30,
            "command": f"run-{name[1:]}",
            "heartbeat_timeout": 20,
        }
        for name in names
    ]
    return chain


def _service(name: str, **settings: Any) -> dict[str, Any]:
    """A service as ``pipelines`` makes them: quick to start, quick to restart."""
    return {"name": name, "requires": [], "startsecs": 0, "backoff_initial": 0, **settings}


_A, _GHOST = _service("s0", command="run-0"), _service("s1", command="run-1")
_NO_INPUTS: list[list[Any]] = [[], [], []]


# Found by hypothesis: s0 gave up (its stop waiting for s2), then a reload removed s1 and so
# changed s2; s2's restart starts s0 again, as `restart` starts a failed requirement.
@example(
    plan=(
        _given_up_chain("s0", "s1", "s2", "s3"),
        [
            [
                {**s, "requires": ["s0"] if s["name"] == "s2" else []}
                for s in _given_up_chain("s0", "s2", "s3")
            ]
        ],
    ),
    before=[("fail", 0, 0.0)],
    between=_NO_INPUTS,
)
# Found by hypothesis: s0 gave up, its stop waiting for its dependent s1; a reload removed s1:
# s0 still waits for s1's process to go (s1 required it when its run began).
@example(
    plan=(
        [
            {**s, "requires": ["s0"] if s["name"] == "s1" else []}
            for s in _given_up_chain("s0", "s1", "s3")
        ],
        [_given_up_chain("s0", "s3")],
    ),
    before=[("fail", 0, 0.0)],
    between=_NO_INPUTS,
)
# Review 11, item 1: removed, added back, removed again while its old run still stops; the last
# reload must say it is removed, and no run of it begin once the old one is gone.
@example(plan=([_A, _GHOST], [[_A], [_A, _GHOST], [_A]]), before=[], between=_NO_INPUTS)
# Review 11, item 2: a command taken away (watch-only now) and a new service requiring it:
# starting that requirement must not ask its old run back.
@example(
    plan=(
        [_A],
        [
            [
                _service("s0", heartbeat_timeout=20),
                _service("s1", command="run-1", requires=["s0"]),
            ]
        ],
    ),
    before=[],
    between=_NO_INPUTS,
)
@settings(max_examples=200, deadline=None)
@given(plan=reconfigurations(), before=_any_inputs, between=_between)
def test_reconfigure_properties_hold_for_any_change(
    plan: tuple[list[dict[str, Any]], list[list[dict[str, Any]]]],
    before: Any,
    between: list[Any],
) -> None:
    """Whatever ran before, and however many reloads follow (also while earlier stops are
    under way): running unchanged services are not touched (but for what an added or changed
    service requires, started as `start` does); every change follows the tables; removed
    services are gone once their processes are; and a final start brings every configured
    service, with its newest settings, to running."""
    old, reloads = plan
    wd = make(*old)
    driver = AnyDriver(wd)
    wd.receive_start([s["name"] for s in old], 0.0, "daemon started")
    driver.take(0.0)
    now = _play(wd, driver, before, [s["name"] for s in old], 0.0)
    for new, inputs in zip(reloads, between, strict=False):
        seen = {r.name: (r, r.spawns, r.phase, r.state, r.pid) for r in wd.records() if r.alive}
        changes = wd.reconfigure([r.spec for r in make(*new).records()], now)
        # What an added or a changed service requires is started as `start` and `restart` do
        # (a failed one too).
        needed = {
            r for name in (*changes.added, *changes.changed) for r in wd.graph.requirements(name)
        }
        for name in changes.unchanged:
            if name in seen and name not in needed:
                record, spawns, phase, state, pid = seen[name]
                assert wd.record(name) is record
                assert (record.spawns, record.phase, record.state, record.pid) == (
                    spawns,
                    phase,
                    state,
                    pid,
                )
        driver.take(now)
        check_tables(wd, driver.events, {})
        driver.events.clear()
        now = _play(wd, driver, inputs, [s["name"] for s in new], now)
    new = reloads[-1]
    names = [s["name"] for s in new]
    driver.unspawnable.clear()
    wd.receive_start(names, now, "start requested")
    driver.take(now)
    for _ in range(60):
        driver.settle(now)
        behave(wd, driver, now)
        if all(r.state is S.RUNNING for r in wd.records()) and len(wd.records()) == len(names):
            break
        due = wd.next_deadline()
        now = max(now, due) if due is not None else now + 1.0
        behave(wd, driver, now)
        wd.tick(now)
        driver.take(now)
    assert [r.spec for r in wd.records()] == [r.spec for r in make(*new).records()]
    assert all(r.state is S.RUNNING for r in wd.records()), (
        {r.name: (r.state, r.reason, r.phase) for r in wd.records()},
        repr(old),
        repr(reloads),
        repr(before),
        repr(between),
    )
