"""Probes in the core: one probe's schedule and verdicts, and what the watchdog does with them,
walked with explicit ``now`` values (no processes, no real time)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from heartwatch.config import ConfigError, config_warnings, parse_config
from heartwatch.core.events import (
    STATE_PHASES,
    STATE_TRANSITIONS,
    RunOnDown,
    ServiceState,
    Spawn,
    Stop,
    Transition,
)
from heartwatch.core.probes import (
    ExecCheck,
    HttpCheck,
    Probe,
    ProbeChanged,
    ProbeSpec,
    RunProbe,
    RunProbes,
)
from heartwatch.core.watchdog import Watchdog

S = ServiceState


def spec(role: Any = "liveness", **fields: Any) -> ProbeSpec:
    return ProbeSpec(
        role=role, check=ExecCheck(("adb", "get-state")), label="adb get-state", **fields
    )


# -- one probe -----------------------------------------------------------------------------


def run(probe: Probe, passed: bool, at: float, result: str = "") -> bool:
    probe.receive_started(at)
    return probe.receive_result(passed, result or ("exited 0" if passed else "exited 1"), at)


def test_probe_verdict_needs_the_thresholds_in_a_row() -> None:
    """A verdict takes failure_threshold failures or success_threshold passes in a row; a
    run that breaks a streak changes nothing."""
    probe = Probe(spec(failure_threshold=3, success_threshold=2), next_run_at=0.0)
    assert [run(probe, False, t) for t in (0, 10)] == [False, False]
    assert probe.passing is None
    assert not run(probe, True, 20)  # the streak is broken: still no verdict
    assert [run(probe, False, t) for t in (30, 40, 50)] == [False, False, True]
    assert probe.passing is False and probe.failing_since == 30
    assert not run(probe, True, 60)  # one pass of two: still failing
    assert run(probe, True, 70) and probe.passing is True
    assert probe.failing_since is None and probe.consecutive_successes == 2


def test_probe_schedule_counts_periods_from_each_run_start_and_never_overlaps() -> None:
    """The next run is a period after the previous one started, or at once when the run took
    longer than a period; while one runs, none is due."""
    probe = Probe(spec(period=10.0), next_run_at=5.0)
    assert not probe.due(4.9) and probe.due(5.0)
    probe.receive_started(5.0)
    assert not probe.due(100.0)  # under way: never a second run at once
    probe.receive_result(True, "exited 0", 6.0)
    assert probe.next_run_at == 15.0
    probe.receive_started(15.0)
    probe.receive_result(False, "timed out after 5 s", 40.0)
    assert probe.next_run_at == 40.0


def test_probe_reasons_say_which_probe_and_what_it_said() -> None:
    """Liveness failures read as the issue says; startup's exhaustion counts its failures."""
    liveness = Probe(spec("liveness", failure_threshold=1), next_run_at=0.0)
    run(liveness, False, 0, "exited 1: error: device offline")
    assert liveness.describe_failure() == "probe `adb get-state` exited 1: error: device offline"
    startup = Probe(spec("startup", failure_threshold=30), next_run_at=0.0)
    for t in range(30):
        run(startup, False, t, "exited 1: error: device offline")
    assert startup.describe_failure() == (
        "startup probe `adb get-state` failed 30 times: exited 1: error: device offline"
    )
    assert startup.describe_verdict() == startup.describe_failure()


def test_startup_holds_the_other_probes_until_it_passes_once() -> None:
    """Readiness and liveness are not scheduled before startup passes; then from their own
    initial delay (or at once), and startup never runs again in that run."""
    probes = RunProbes(
        [spec("startup"), spec("readiness", initial_delay=5.0), spec("liveness")], 1, 100.0
    )
    assert probes.holding and not probes.ready
    assert probes.start_due(100.0) == ["startup"]
    assert probes.next_run_at() is None  # startup under way, the rest held
    probes.receive_result("startup", True, "exited 0", 102.0)
    assert not probes.holding
    assert probes.probes["startup"].next_run_at is None
    assert probes.probes["readiness"].next_run_at == 105.0
    assert probes.probes["liveness"].next_run_at == 102.0
    # A result nobody asked for (no run of it under way) is not counted.
    assert probes.receive_result("readiness", True, "exited 0", 103.0) is None
    assert probes.probes["readiness"].consecutive_successes == 0


# -- the watchdog --------------------------------------------------------------------------


def make(*services: dict[str, Any]) -> Watchdog:
    config = parse_config({"service": list(services)})
    return Watchdog([s.spec() for s in config.service], random=lambda: 0.5)


EMULATOR = {
    "name": "emulator",
    "command": "emulator -avd a",
    "readiness": {"exec": "adb wait-for-device", "period": "2s", "failure_threshold": 2},
}
FRIDA = {"name": "frida", "command": "frida-server", "requires": ["emulator"]}


class Probed:
    """A watchdog and a driver that spawns at once and answers probes as told."""

    def __init__(self, wd: Watchdog) -> None:
        self.wd = wd
        self.running: dict[tuple[str, str], RunProbe] = {}
        self.spawned: list[str] = []
        self.stopped: list[str] = []
        self.on_down: list[str] = []
        self.events: list[object] = []

    def take(self, now: float) -> None:
        while self.wd.has_output:
            self.events += self.wd.events_to_take()
            for action in self.wd.actions_to_take():
                if isinstance(action, Spawn):
                    self.spawned.append(action.service)
                    self.wd.receive_spawned(action.service, 100, now)
                elif isinstance(action, Stop):
                    self.stopped.append(action.service)
                elif isinstance(action, RunOnDown):
                    self.on_down.append(action.service)
                elif isinstance(action, RunProbe):
                    key = (action.service, action.role)
                    assert key not in self.running, "a probe run twice at once"
                    self.running[key] = action

    def tick(self, now: float) -> None:
        self.wd.tick(now)
        self.take(now)

    def answer(self, service: str, role: str, passed: bool, now: float, result: str = "") -> None:
        action = self.running.pop((service, role))
        words = result or ("exited 0" if passed else "exited 1: error: device offline")
        self.wd.receive_probe_result(service, action.role, action.run, passed, words, now)
        self.take(now)

    def probe_changes(self) -> list[tuple[str, str, bool]]:
        return [(e.service, e.role, e.passing) for e in self.events if isinstance(e, ProbeChanged)]


def started(*services: dict[str, Any]) -> Probed:
    driver = Probed(make(*services))
    driver.wd.receive_start([s["name"] for s in services], 0.0, "daemon started")
    driver.take(0.0)
    return driver


def test_a_dependent_starts_only_once_the_requirement_readiness_passes() -> None:
    """An emulator ready at start is not ready while its readiness probe has not passed:
    frida waits, and starts at the pass."""
    driver = started(EMULATOR, FRIDA)
    wd = driver.wd
    assert driver.spawned == ["emulator"]
    assert wd.record("emulator").state is S.STARTING and not wd.record("emulator").ready
    assert wd.next_deadline() == 0.0  # the first probe run, at once
    driver.tick(0.0)
    driver.answer("emulator", "readiness", False, 1.0)
    driver.tick(2.0)
    driver.answer("emulator", "readiness", False, 2.5)
    assert wd.record("emulator").reason.startswith("not ready: readiness probe")
    assert driver.spawned == ["emulator"]
    driver.tick(4.0)
    driver.answer("emulator", "readiness", True, 4.2)
    assert wd.record("emulator").state is S.RUNNING and wd.record("emulator").ready
    assert driver.spawned == ["emulator", "frida"]
    assert driver.probe_changes() == [
        ("emulator", "readiness", False),
        ("emulator", "readiness", True),
    ]


def test_readiness_failing_later_is_not_ready_without_a_restart() -> None:
    """Once running, failing readiness makes the service not ready (what dependents see) and
    is journaled, but nothing is stopped; passing again makes it ready again."""
    driver = started(EMULATOR, FRIDA)
    wd = driver.wd
    driver.tick(0.0)
    driver.answer("emulator", "readiness", True, 0.5)
    for at in (2.0, 4.0):
        driver.tick(at)
        driver.answer("emulator", "readiness", False, at + 0.1)
    emulator = wd.record("emulator")
    assert emulator.state is S.RUNNING and not emulator.ready
    assert driver.stopped == [] and wd.record("frida").state is S.RUNNING
    assert emulator.restarts == 0
    driver.tick(6.0)
    driver.answer("emulator", "readiness", True, 6.1)
    assert emulator.ready
    assert driver.probe_changes()[-2:] == [
        ("emulator", "readiness", False),
        ("emulator", "readiness", True),
    ]
    assert emulator.probe_runs == {("readiness", True): 2, ("readiness", False): 2}


def test_liveness_failing_is_a_failure_with_the_probe_reason() -> None:
    """failure_threshold liveness failures in a row restart the service, the probe's words as
    the reason, its outage counted from the first failing run."""
    frida = {
        "name": "frida",
        "command": "frida-server",
        "liveness": {"exec": "frida-ps -D emulator-5554", "period": "1s", "failure_threshold": 2},
    }
    driver = started(frida)
    wd = driver.wd
    driver.tick(0.0)
    driver.answer("frida", "liveness", True, 0.1)
    driver.tick(1.0)
    assert wd.record("frida").state is S.RUNNING  # liveness does not gate readiness
    driver.answer("frida", "liveness", False, 6.0, "timed out after 5 s")
    driver.tick(6.0)
    driver.answer("frida", "liveness", False, 11.0, "timed out after 5 s")
    late = [e for e in driver.events if isinstance(e, Transition) and e.new is S.UNRESPONSIVE]
    assert late[0].reason == "probe `frida-ps -D emulator-5554` timed out after 5 s"
    assert late[0].failure and late[0].down_since == 1.0
    assert driver.stopped == ["frida"]
    assert wd.record("frida").state is S.RESTARTING
    # The old run's probe answers late: ignored; nothing of it runs any more.
    assert not wd.probe_wanted("frida", 1)
    assert wd.next_deadline() is None


def test_startup_holds_deadlines_and_its_exhaustion_is_a_failed_start() -> None:
    """A beating service with a startup probe: no startup grace, no heartbeat deadline and no
    other probe before it passes; failure_threshold failures are a failed start (backoff)."""
    collector = {
        "name": "collector",
        "command": "collect",
        "heartbeat_timeout": "5s",
        "startup_grace": "10s",
        "backoff_initial": "3s",
        "startup": {"exec": "adb get-state", "period": "20s", "failure_threshold": 3},
        "liveness": {"tcp": "127.0.0.1:27042"},
    }
    driver = started(collector)
    wd = driver.wd
    for at in (0.0, 20.0):
        driver.tick(at)
        driver.answer("collector", "startup", False, at + 1)
        assert wd.next_deadline() == at + 20  # not the 10 s grace, not a heartbeat deadline
    assert wd.record("collector").state is S.STARTING
    assert list(driver.running) == []  # liveness held
    driver.tick(40.0)
    driver.answer("collector", "startup", False, 41.0)
    record = wd.record("collector")
    assert record.state is S.RESTARTING
    assert record.reason == (
        "startup probe `adb get-state` failed 3 times: exited 1: error: device offline"
    )
    assert driver.stopped == ["collector"]
    wd.receive_exit("collector", -15, 41.5)
    driver.take(41.5)
    wd.receive_start(["collector"], 41.5, "x")  # nothing changes: it is wanted already
    driver.take(41.5)
    assert driver.spawned == ["collector", "collector"]  # first failure: at once
    for at in (41.5, 61.5, 81.5):
        driver.tick(at)
        driver.answer("collector", "startup", False, at)
    wd.receive_exit("collector", -15, 82.0)
    driver.take(82.0)
    assert wd.record("collector").state is S.BACKOFF  # the second failed start waits


def test_startup_pass_starts_the_grace_and_the_other_probes_then() -> None:
    """After startup passes, the startup grace counts from the pass, and liveness begins."""
    collector = {
        "name": "collector",
        "command": "collect",
        "heartbeat_timeout": "5s",
        "startup_grace": "10s",
        "startup": {"exec": "adb get-state", "period": "20s"},
        "liveness": {"tcp": "127.0.0.1:27042", "period": "30s"},
    }
    driver = started(collector)
    wd = driver.wd
    wd.receive_message("collector", "heartbeat", 5.0)  # beats during the hold: not running yet
    driver.take(5.0)
    assert wd.record("collector").state is S.STARTING
    driver.tick(0.0)
    driver.answer("collector", "startup", True, 50.0)
    record = wd.record("collector")
    assert record.state is S.RUNNING and record.reason == "startup probe `adb get-state` passed"
    assert wd.next_deadline() == 50.0  # liveness, at once
    driver.tick(50.0)
    assert list(driver.running) == [("collector", "liveness")]
    assert wd.next_deadline() == 55.0  # the heartbeat deadline, from the pass


def test_a_watch_only_service_failing_its_liveness_probe_runs_on_down() -> None:
    """The adb server, watched only: its failing probe is its failure, on_down its recovery;
    afterwards it is watched afresh, with new probes for the new run."""
    adb = {
        "name": "adb-server",
        "on_down": "adb kill-server; adb start-server",
        "liveness": {"exec": "adb devices", "period": "30s", "failure_threshold": 1},
    }
    driver = started(adb)
    wd = driver.wd
    assert wd.record("adb-server").state is S.RUNNING  # watch-only: ready at once
    driver.tick(0.0)
    driver.answer("adb-server", "liveness", False, 10.0, "timed out after 10 s")
    recovering = [e for e in driver.events if isinstance(e, Transition)][-1]
    assert recovering.new is S.RESTARTING
    assert recovering.reason == "probe `adb devices` timed out after 10 s"
    assert driver.on_down == ["adb-server"]
    assert wd.next_deadline() is None  # no check while on_down runs
    wd.receive_on_down_done("adb-server", "exit code 0", 12.0)
    driver.take(12.0)
    record = wd.record("adb-server")
    assert record.state is S.RUNNING and record.liveness is not None
    assert record.liveness.probes is not None and record.liveness.probes.run == 2
    assert wd.next_deadline() == 12.0  # the new run's first check, at once


def test_liveness_with_autorestart_never_is_reported_and_well_again_by_its_probe() -> None:
    """autorestart = "never": a failing liveness probe leaves the service unresponsive
    (reported, not killed); the probe passing again makes it running again."""
    frida = {
        "name": "frida",
        "command": "frida-server",
        "startsecs": 0,
        "autorestart": "never",
        "liveness": {"exec": "frida-ps", "period": "1s", "failure_threshold": 1},
    }
    driver = started(frida)
    wd = driver.wd
    driver.tick(0.0)
    driver.answer("frida", "liveness", False, 0.5)
    assert wd.record("frida").state is S.UNRESPONSIVE and driver.stopped == []
    driver.tick(1.0)
    driver.answer("frida", "liveness", True, 1.5)
    assert wd.record("frida").state is S.RUNNING
    assert wd.record("frida").reason == "liveness probe `frida-ps` passed"


def test_a_service_without_probes_never_asks_for_one() -> None:
    """No probes configured: no RunProbe, no probe deadline, no probe state at all."""
    driver = started({"name": "plain", "command": "sleep 100"})
    driver.tick(1000.0)
    assert driver.running == {}
    record = driver.wd.record("plain")
    assert record.liveness is not None and record.liveness.probes is None
    assert driver.wd.next_deadline() is None


# -- properties ----------------------------------------------------------------------------

_steps = st.lists(
    st.tuples(
        st.sampled_from(  # probe answers and time, mostly: the paths that need several
            ["answer"] * 4 + ["tick"] * 3 + ["crash", "restart", "stop", "start", "settle", "beat"]
        ),
        st.sampled_from(["adb", "emulator", "frida", "collector"]),
        st.sampled_from([True, True, False]),  # passes, mostly: failing ones end the chain
    ),
    min_size=40,
    max_size=100,
)


@settings(max_examples=200, deadline=None)
@given(steps=_steps)
def test_probed_pipelines_keep_the_tables_and_never_probe_a_run_that_is_over(
    steps: list[tuple[str, str, bool]],
) -> None:
    """Any sequence of probe results, crashes and requests: every change is in the tables,
    no probe runs twice at once, none runs for a run that is over, and a dependent is only
    spawned while its requirement is ready."""
    services = [
        {
            "name": "adb",
            "on_down": "adb kill-server",
            "liveness": {"exec": "adb devices", "period": "1s", "failure_threshold": 2},
        },
        {
            **EMULATOR,
            "readiness": {"exec": "adb wait-for-device", "period": "1s", "failure_threshold": 1},
            "requires": ["adb"],
            "startup": {"exec": "adb get-state", "period": "1s", "failure_threshold": 2},
        },
        {**FRIDA, "liveness": {"exec": "frida-ps", "period": "1s", "failure_threshold": 1}},
        {"name": "collector", "command": "c", "requires": ["frida"], "heartbeat_timeout": "3s"},
    ]
    wd = make(*services)
    alive: set[str] = set()
    running: dict[tuple[str, str], RunProbe] = {}
    on_down: set[str] = set()
    events: list[object] = []

    def take(now: float) -> None:
        while wd.has_output:
            events.extend(wd.events_to_take())
            for action in wd.actions_to_take():
                if isinstance(action, Spawn):
                    for need in wd.graph.requires(action.service):
                        assert wd.record(need).ready, f"{action.service} before {need} was ready"
                    alive.add(action.service)
                    wd.receive_spawned(action.service, 1, now)
                elif isinstance(action, RunProbe):
                    key = (action.service, action.role)
                    assert key not in running or not wd.probe_wanted(*key[:1], running[key].run)
                    assert wd.probe_wanted(action.service, action.run)
                    running[key] = action
                elif isinstance(action, RunOnDown):
                    assert action.service not in on_down, "on_down run twice at once"
                    on_down.add(action.service)

    now = 0.0
    wd.receive_start(["collector"], now, "daemon started")
    take(now)
    for verb, name, flag in steps:
        now += 1.5
        if verb == "answer":  # every check under way ends: the named service's as ``flag``
            for key in list(running):
                action = running.pop(key)
                passed = flag if key[0] == name else True
                wd.receive_probe_result(key[0], action.role, action.run, passed, "x", now)
        elif verb == "tick":
            wd.tick(now)
        elif verb in ("crash", "settle") and name in alive:
            alive.discard(name)
            wd.receive_exit(name, -9 if verb == "crash" else -15, now)
        elif verb == "settle" and name in on_down:
            on_down.discard(name)
            wd.receive_on_down_done(name, "exit code 0", now)
        elif verb == "beat":
            wd.receive_message(name, "heartbeat", now)
        elif verb == "restart":
            wd.receive_restart(name, now, "asked")
        elif verb == "stop":
            wd.receive_stop([name], now, "asked")
        elif verb == "start":
            wd.receive_start([name], now, "asked")
        take(now)
        for record in wd.records():
            assert record.phase in STATE_PHASES[record.state], (record.name, record.state)
    for fact in events:
        if isinstance(fact, Transition):
            assert fact.new in STATE_TRANSITIONS[fact.old], fact
    # What the examples reached (``--hypothesis-show-statistics``): the interesting paths.
    changes = {(f.service, f.role, f.passing) for f in events if isinstance(f, ProbeChanged)}
    for service, role, passing in sorted(changes):
        event(f"{service} {role} {'passed' if passing else 'failed'}")
    if "collector" in alive:
        event("collector spawned")


@pytest.mark.parametrize("role", ["startup", "liveness"])
def test_a_probe_result_of_an_old_run_is_ignored(role: str) -> None:
    """A result carrying the number of a run that is over changes nothing."""
    frida = {"name": "frida", "command": "f", role: {"exec": "frida-ps", "failure_threshold": 1}}
    driver = started(frida)
    driver.tick(0.0)
    action = driver.running.pop(("frida", role))
    driver.wd.receive_exit("frida", 1, 0.5)
    driver.take(0.5)
    before = driver.wd.record("frida").state
    driver.wd.receive_probe_result("frida", action.role, action.run, False, "late", 0.6)
    assert driver.wd.record("frida").state is before
    assert not driver.wd.has_output


# -- the recipes ---------------------------------------------------------------------------

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"


def recipe_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", RECIPES.read_text(), re.DOTALL)


def test_the_recipes_are_valid_configuration() -> None:
    """Every toml block of docs/recipes.md is a valid file, its probes as the text says."""
    blocks = recipe_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        config = parse_config(tomllib.loads(block))
        for service in config.service:
            for probe in service.spec().probes:
                assert "instance}" not in probe.label, probe.label  # substituted
    farm = parse_config(tomllib.loads(blocks[-1]))
    emulator = farm.services_by_name()["emulator@1"].spec()
    liveness = next(p for p in emulator.probes if p.role == "liveness")
    assert "adb -s emulator-5556 get-state | grep -qx device || { adb reconnect offline" in (
        liveness.label
    )


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probe", "problem"),
    [
        (
            {"readiness": {}},
            ".readiness: a probe needs exactly one of exec, http, tcp (it has none)",
        ),
        (
            {"liveness": {"exec": "adb get-state", "tcp": "127.0.0.1:5037"}},
            ".liveness: a probe needs exactly one of exec, http, tcp (it has exec and tcp)",
        ),
        ({"readiness": {"exec": "x", "period": "0s"}}, ".readiness.period: Input should be"),
        (
            {"readiness": {"exec": "x", "perod": "1s"}},
            "unknown key `perod`; did you mean `period`?",
        ),
        ({"startup": {"tcp": "emulator:x"}}, ".startup.tcp: 'emulator:x' is not host:port"),
        ({"readiness": {"http": "ftp://x/ready"}}, ".readiness.http: expected an http://"),
        (
            {"readiness": {"exec": "x", "expect": "("}},
            ".readiness.expect: not a regular expression",
        ),
        ({"readiness": {"tcp": "127.0.0.1:1", "status": 200}}, "status is for http probes"),
        ({"liveness": {"tcp": "127.0.0.1:1", "expect": "x"}}, "expect is for exec and http"),
        (
            {"liveness": {"exec": "x", "success_threshold": 2}},
            ".liveness.success_threshold: must be 1 for a liveness probe",
        ),
        (
            {"ready": "30s", "readiness": {"exec": "x"}},
            ".ready: a readiness probe decides when the service is ready",
        ),
    ],
)
def test_a_bad_probe_is_refused_naming_its_key(probe: dict[str, Any], problem: str) -> None:
    """Each mistake in a probe is one problem at its key path, in words a person can act on."""
    with pytest.raises(ConfigError) as raised:
        parse_config({"service": [{"name": "emulator", "command": "emu", **probe}]})
    assert problem in str(raised.value), str(raised.value)
    assert str(raised.value).startswith("service[0] (emulator)")


def test_probe_defaults_and_check_warnings() -> None:
    """Defaults are Kubernetes' but the timeout; an exec probe's program missing from the
    service's PATH is a warning, as a missing command is."""
    config = parse_config(
        {
            "service": [
                {"name": "emulator", "command": "true", "readiness": {"exec": "no-such-adb x"}},
                {"name": "phone", "liveness": {"http": "http://127.0.0.1:8080/", "status": 204}},
            ]
        }
    )
    (readiness,) = config.service[0].spec().probes
    assert (readiness.period, readiness.timeout, readiness.initial_delay) == (10.0, 5.0, 0.0)
    assert (readiness.failure_threshold, readiness.success_threshold) == (3, 1)
    assert readiness.check == ExecCheck(("no-such-adb", "x"))
    (liveness,) = config.service[1].spec().probes
    assert liveness.check == HttpCheck("http://127.0.0.1:8080/", 204)
    assert liveness.label == "GET http://127.0.0.1:8080/"
    assert [str(w) for w in config_warnings(config)] == [
        "service[0] (emulator).readiness.exec: executable `no-such-adb` not found on PATH"
    ]
