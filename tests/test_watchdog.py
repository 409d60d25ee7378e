"""The watchdog core, walked through every rule with explicit ``now`` values (no real time)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartwatch.config import parse_config
from heartwatch.core.events import (
    RecoveryPlanned,
    RunOnDown,
    ServiceState,
    Spawn,
    Stop,
    Transition,
)
from heartwatch.core.watchdog import Watchdog

S = ServiceState


def make(*services: dict[str, Any]) -> Watchdog:
    config = parse_config({"service": list(services)})
    return Watchdog(config.service, random=lambda: 0.5)


def pipeline(**collector: Any) -> Watchdog:
    """The original pipeline: an emulator that never beats, a collector that requires it."""
    return make(
        {"name": "emulator", "command": "emu", "ready": "60s"},
        {
            "name": "collector",
            "command": "collect",
            "requires": ["emulator"],
            "startup_grace": "150s",
            "heartbeat_timeout": "60s",
            "data_timeout": {"poiid": "10m"},
            **collector,
        },
    )


def started(wd: Watchdog, now: float = 0.0) -> Watchdog:
    """Start everything and confirm the spawns, as a driver would."""
    wd.receive_start(["emulator", "collector"], now, "daemon started")
    for action in wd.actions_to_take():
        assert isinstance(action, Spawn)
        wd.receive_spawned(action.service, 100, now)
    return wd


def running(wd: Watchdog) -> Watchdog:
    """Started at 0; the emulator is ready at 60 s; the collector spawns then and beats at 61 s."""
    started(wd, 0.0)
    wd.tick(60.0)
    spawn_all(wd, 60.0)
    wd.receive_message("collector", "heartbeat", 61.0)
    return wd


def spawn_all(wd: Watchdog, now: float) -> list[str]:
    """Confirm every pending Spawn; return the names spawned."""
    names = []
    for action in wd.actions_to_take():
        assert isinstance(action, Spawn), action
        names.append(action.service)
        wd.receive_spawned(action.service, 200, now)
    return names


def states(wd: Watchdog) -> dict[str, S]:
    return {r.name: r.state for r in wd.records()}


def test_start_waits_for_requirement_readiness() -> None:
    """The collector is spawned only once the emulator is ready (60 s after its spawn)."""
    wd = make(
        {"name": "emulator", "command": "emu", "ready": "60s"},
        {"name": "collector", "command": "c", "requires": ["emulator"], "heartbeat_timeout": 60},
    )
    wd.receive_start(["collector"], 0.0, "start")
    assert wd.actions_to_take() == [Spawn("emulator")]
    assert wd.record("collector").reason == "waiting for emulator"
    assert wd.next_deadline() == 60.0
    wd.tick(59.9)
    assert wd.actions_to_take() == []
    wd.tick(60.0)
    assert wd.actions_to_take() == [Spawn("collector")]
    assert states(wd) == {"emulator": S.RUNNING, "collector": S.STARTING}


def test_first_heartbeat_makes_ready_and_arms_heartbeat_deadline() -> None:
    """A beating service is ready at its first message; then 60 s of silence is late."""
    wd = started(pipeline(), 0.0)
    wd.tick(60.0)
    spawn_all(wd, 60.0)
    assert wd.next_deadline() == 60.0 + 150.0  # startup grace
    wd.receive_message("collector", "heartbeat", 70.0)
    assert wd.record("collector").state is S.RUNNING
    assert wd.next_deadline() == 130.0
    wd.receive_message("collector", "heartbeat", 100.0)
    # Messages move deadlines later without an event: the timer fires early and re-arms.
    assert wd.next_deadline() == 160.0


def test_missed_heartbeat_restarts_group_in_order() -> None:
    """No heartbeat for 60 s: the collector stops first, the emulator after, then both start."""
    wd = running(pipeline(restart="group"))
    wd.events_to_take()
    wd.tick(121.0)
    events = wd.events_to_take()
    assert (
        Transition(
            "collector",
            S.RUNNING,
            S.UNRESPONSIVE,
            "no heartbeat for 60.0 s",
            121.0,
            failure=True,
            down_since=61.0,  # its last heartbeat
        )
        in events
    )
    assert (
        RecoveryPlanned("collector", ("emulator", "collector"), "no heartbeat for 60.0 s", 121.0)
        in events
    )
    assert wd.actions_to_take() == [Stop("collector", "no heartbeat for 60.0 s")]
    wd.receive_exit("collector", -15, 121.1)
    assert wd.actions_to_take() == [Stop("emulator", "with collector: no heartbeat for 60.0 s")]
    wd.receive_exit("emulator", -15, 121.2)
    assert wd.actions_to_take() == [Spawn("emulator")]
    wd.receive_spawned("emulator", 300, 121.2)
    wd.tick(181.2)
    assert wd.actions_to_take() == [Spawn("collector")]
    assert wd.record("collector").restarts == 1
    assert wd.record("emulator").restarts == 1


def test_service_restart_leaves_requirement_alone() -> None:
    """restart = "service" recovers only the collector; the emulator keeps running."""
    wd = running(pipeline())
    wd.tick(121.0)
    assert wd.actions_to_take() == [Stop("collector", "no heartbeat for 60.0 s")]
    wd.receive_exit("collector", -15, 121.5)
    assert wd.actions_to_take() == [Spawn("collector")]
    assert wd.record("emulator").state is S.RUNNING


def test_requirement_crash_restarts_dependents_first_down_last_up() -> None:
    """The emulator crashing stops the collector before the emulator starts again."""
    wd = running(pipeline())
    wd.receive_exit("emulator", 1, 70.0)
    assert wd.actions_to_take() == [Stop("collector", "with emulator: exit code 1")]
    assert states(wd) == {"emulator": S.RESTARTING, "collector": S.RESTARTING}
    wd.receive_exit("collector", -15, 70.5)
    assert wd.actions_to_take() == [Spawn("emulator")]


def test_data_deadline_fires_even_while_heartbeats_come() -> None:
    """No poiid for 10 minutes makes the collector unresponsive although it still beats."""
    wd = running(pipeline())
    wd.receive_message("collector", "poiid", 100.0)
    now = 100.0
    while now < 700.0:
        now += 30.0
        wd.receive_message("collector", "heartbeat", now)
        wd.tick(now)
    assert wd.record("collector").state is S.RESTARTING
    assert wd.record("collector").reason == "no poiid for 10 min"


def test_data_deadline_not_before_grace_end() -> None:
    """Silence is expected inside the startup grace, also for data."""
    wd = make({"name": "c", "command": "c", "startup_grace": 100, "data_timeout": {"x": 10}})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    wd.receive_message("c", "heartbeat", 1.0)
    assert wd.next_deadline() == 100.0
    wd.tick(50.0)
    assert wd.record("c").state is S.RUNNING


def test_startup_grace_expiry_without_heartbeat() -> None:
    """A service that never beats inside its grace is unresponsive and restarted."""
    wd = make({"name": "c", "command": "c", "startup_grace": 5, "heartbeat_timeout": 1})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    wd.tick(5.0)
    assert wd.record("c").reason == "no heartbeat within 5.0 s startup grace"
    assert wd.actions_to_take() == [Stop("c", "no heartbeat within 5.0 s startup grace")]


def test_crash_restarts_at_once_then_backs_off() -> None:
    """First crash: restart at once. Second: wait backoff_initial. Third: twice that."""
    wd = make({"name": "c", "command": "c", "backoff_initial": 2, "backoff_jitter": 0})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    wd.receive_exit("c", 1, 1.0)
    assert wd.actions_to_take() == [Spawn("c")]
    wd.receive_spawned("c", 2, 1.0)
    wd.receive_exit("c", 1, 2.0)
    assert wd.actions_to_take() == []
    assert wd.record("c").state is S.BACKOFF
    assert wd.next_deadline() == 4.0
    wd.tick(4.0)
    assert wd.actions_to_take() == [Spawn("c")]
    wd.receive_spawned("c", 3, 4.0)
    wd.receive_exit("c", 1, 5.0)
    assert wd.next_deadline() == 9.0


def test_healthy_run_resets_backoff() -> None:
    """A run that lasted healthy_after forgets the crash streak: restart at once again."""
    wd = make({"name": "c", "command": "c", "healthy_after": 30, "max_restarts": 100})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    wd.receive_exit("c", 1, 1.0)
    spawn_all(wd, 1.0)
    wd.receive_exit("c", 1, 2.0)
    assert wd.record("c").state is S.BACKOFF
    wd.tick(3.0)
    spawn_all(wd, 3.0)
    wd.receive_exit("c", 1, 40.0)
    assert wd.actions_to_take() == [Spawn("c")]


def test_crash_loop_ends_failed_and_stays_down() -> None:
    """More than max_restarts inside the window: failed, and no more spawns until asked."""
    wd = make(
        {"name": "c", "command": "c", "max_restarts": 3, "restart_window": 60, "backoff_initial": 0}
    )
    wd.receive_start(["c"], 0.0, "start")
    now = 0.0
    for _ in range(3):
        spawn_all(wd, now)
        now += 1.0
        wd.receive_exit("c", 2, now)
        wd.tick(now)
    spawn_all(wd, now)
    wd.receive_exit("c", 2, now + 1)
    record = wd.record("c")
    assert record.state is S.FAILED
    assert record.reason == "gave up after 3 restarts in 60 s: exit code 2"
    wd.tick(now + 1000)
    assert wd.actions_to_take() == []
    wd.receive_start(["c"], now + 1000, "start requested")
    assert wd.actions_to_take() == [Spawn("c")]


def test_failed_while_hung_stops_process_and_dependents() -> None:
    """Giving up on a hung requirement kills it, after stopping what requires it."""
    wd = make(
        {"name": "a", "command": "a", "heartbeat_timeout": 1, "max_restarts": 0},
        {"name": "b", "command": "b", "requires": ["a"]},
    )
    wd.receive_start(["b"], 0.0, "start")
    spawn_all(wd, 0.0)
    wd.receive_message("a", "heartbeat", 0.5)
    assert spawn_all(wd, 0.5) == ["b"]
    wd.tick(1.5)
    assert wd.record("a").state is S.FAILED
    assert wd.actions_to_take() == [Stop("b", "with a: a failed")]
    wd.receive_exit("b", -15, 1.6)
    assert wd.actions_to_take() == [Stop("a", wd.record("a").reason)]
    wd.receive_exit("a", -9, 1.7)
    assert wd.record("a").state is S.FAILED
    assert wd.record("b").reason == "waiting for a (failed)"


@pytest.mark.parametrize(
    ("autorestart", "returncode", "restarted"),
    [
        ("always", 0, True),
        ("always", 1, True),
        ("on-failure", 0, False),
        ("on-failure", 3, True),
        ("on-failure", -9, True),
        ("never", 1, False),
    ],
)
def test_autorestart_policy(autorestart: str, returncode: int, restarted: bool) -> None:
    """autorestart decides whether an exit is restarted or leaves the service exited."""
    wd = make({"name": "c", "command": "c", "autorestart": autorestart})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    wd.receive_exit("c", returncode, 1.0)
    assert (wd.actions_to_take() == [Spawn("c")]) is restarted
    if not restarted:
        assert wd.record("c").state is S.EXITED


def test_autorestart_never_hang_is_reported_not_killed() -> None:
    """With autorestart = never a hang is unresponsive, and a new message brings it back."""
    wd = make({"name": "c", "command": "c", "heartbeat_timeout": 10, "autorestart": "never"})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    wd.receive_message("c", "heartbeat", 1.0)
    wd.tick(11.0)
    assert wd.record("c").state is S.UNRESPONSIVE
    assert wd.actions_to_take() == []
    wd.receive_message("c", "heartbeat", 12.0)
    assert wd.record("c").state is S.RUNNING


def test_restart_under_way_is_not_started_twice() -> None:
    """A restart request while a recovery is stopping adds no second Stop and no second Spawn."""
    wd = running(pipeline(restart="group"))
    wd.tick(121.0)
    assert wd.actions_to_take() == [Stop("collector", "no heartbeat for 60.0 s")]
    wd.receive_restart("collector", 121.05, "restart requested")
    wd.tick(121.1)
    assert wd.actions_to_take() == []
    wd.receive_exit("collector", -15, 121.2)
    assert wd.actions_to_take() == [Stop("emulator", "with collector: no heartbeat for 60.0 s")]
    wd.receive_exit("emulator", -15, 121.3)
    assert wd.actions_to_take() == [Spawn("emulator")]
    wd.receive_spawned("emulator", 5, 121.3)
    wd.tick(181.3)
    assert wd.actions_to_take() == [Spawn("collector")]
    wd.receive_spawned("collector", 6, 181.3)
    wd.tick(181.4)
    assert wd.actions_to_take() == []


def test_watch_only_service_runs_on_down_then_gets_grace() -> None:
    """A service without command is watched; when it falls silent its on_down runs."""
    wd = make(
        {
            "name": "phone",
            "on_down": "adb reboot",
            "heartbeat_timeout": 30,
            "startup_grace": 120,
        },
        {"name": "app", "command": "app", "requires": ["phone"]},
    )
    wd.receive_start(["app"], 0.0, "start")
    assert wd.actions_to_take() == []
    wd.receive_message("phone", "heartbeat", 5.0)
    assert wd.actions_to_take() == [Spawn("app")]
    wd.receive_spawned("app", 7, 5.0)
    wd.tick(35.0)
    assert wd.actions_to_take() == [Stop("app", "with phone: no heartbeat for 30.0 s")]
    wd.receive_exit("app", -15, 35.5)
    assert wd.actions_to_take() == [RunOnDown("phone", "no heartbeat for 30.0 s")]
    wd.receive_on_down_done("phone", "exit code 0", 40.0)
    assert wd.record("phone").state is S.STARTING
    assert wd.next_deadline() == 160.0
    wd.receive_message("phone", "heartbeat", 90.0)
    assert wd.actions_to_take() == [Spawn("app")]


def test_stop_request_stops_dependents_first_and_holds() -> None:
    """Stopping a requirement stops its dependents first; nothing restarts afterwards."""
    wd = started(pipeline(), 0.0)
    wd.tick(60.0)
    spawn_all(wd, 60.0)
    wd.receive_stop(["emulator"], 70.0, "stop requested")
    assert wd.actions_to_take() == [Stop("collector", "stop requested")]
    assert states(wd) == {"emulator": S.STOPPING, "collector": S.STOPPING}
    wd.receive_exit("collector", 0, 70.1)
    assert wd.actions_to_take() == [Stop("emulator", "stop requested")]
    wd.receive_exit("emulator", 0, 70.2)
    assert states(wd) == {"emulator": S.STOPPED, "collector": S.STOPPED}
    assert wd.record("emulator").reason == "stop requested; exit code 0"
    wd.tick(1000.0)
    assert wd.actions_to_take() == []
    assert wd.next_deadline() is None


def test_start_while_waiting_to_stop_keeps_it_running() -> None:
    """A start that arrives before the stop signal went out cancels the stop."""
    wd = running(pipeline())
    wd.receive_stop(["emulator"], 70.0, "stop requested")
    assert wd.actions_to_take() == [Stop("collector", "stop requested")]
    wd.receive_start(["emulator"], 70.05, "start requested")
    assert wd.record("emulator").state is S.RUNNING
    wd.receive_exit("collector", -15, 70.1)
    assert wd.actions_to_take() == []
    assert wd.record("collector").state is S.STOPPED


def test_spawn_failure_counts_as_crash() -> None:
    """A command that cannot start is a failure with a reason, and is retried with backoff."""
    wd = make({"name": "c", "command": "nope", "max_restarts": 1})
    wd.receive_start(["c"], 0.0, "start")
    wd.actions_to_take()
    wd.receive_spawn_failed("c", "No such file or directory: 'nope'", 0.0)
    assert wd.actions_to_take() == [Spawn("c")]
    wd.receive_spawn_failed("c", "No such file or directory: 'nope'", 0.1)
    assert wd.record("c").state is S.FAILED
    assert "cannot start: No such file" in wd.record("c").reason


def test_unknown_service_message_is_refused() -> None:
    """A message for a name the pipeline does not know is reported as unknown."""
    wd = pipeline()
    assert wd.receive_message("nobody", "heartbeat", 1.0) is False
    assert wd.receive_message("collector", "poiid", 1.0) is True
    assert wd.record("collector").data_counts == {"poiid": 1}


def test_every_transition_has_a_reason() -> None:
    """Every recorded transition carries a non-empty human reason."""
    wd = running(pipeline(restart="group"))
    wd.tick(121.0)
    for event in wd.events_to_take():
        if isinstance(event, Transition):
            assert event.reason


_inputs = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "beat",
                "data",
                "crash",
                "exit",
                "tick",
                "restart",
                "stop",
                "start",
                "settle",
                "unspawnable",
            ]
        ),
        st.sampled_from(["emulator", "collector"]),
        st.floats(min_value=0.0, max_value=200.0),
    ),
    max_size=60,
)


class Driver:
    """Plays the processes for a watchdog: Spawns start them; Stops are answered later."""

    def __init__(self, wd: Watchdog) -> None:
        self.wd = wd
        self.alive: set[str] = set()
        self.stopping: set[str] = set()
        self.unspawnable: set[str] = set()  # its next spawn fails (no such executable)
        self.events: list[object] = []

    def take(self, now: float) -> None:
        """Carry out every action, and those that answering them asks for, as a driver does."""
        self.events += self.wd.events_to_take()
        while actions := self.wd.actions_to_take():
            for action in actions:
                self.carry_out(action, now)
        self.events += self.wd.events_to_take()

    def carry_out(self, action: object, now: float) -> None:
        if isinstance(action, Spawn):
            assert action.service not in self.alive, f"{action.service} spawned twice"
            for dependent in self.wd.graph.dependents(action.service):
                assert dependent not in self.stopping, "started before its dependent stopped"
            for requirement in self.wd.graph.requires(action.service):
                assert requirement in self.alive, "started before what it requires"
            if action.service in self.unspawnable:
                self.unspawnable.discard(action.service)
                self.wd.receive_spawn_failed(action.service, "no such executable", now)
                return
            self.alive.add(action.service)
            self.wd.receive_spawned(action.service, 1, now)
        elif isinstance(action, Stop):
            assert action.service in self.alive
            for dependent in self.wd.graph.dependents(action.service):
                assert dependent not in self.alive, "stopped before its dependents"
            self.stopping.add(action.service)

    def exit(self, name: str, returncode: int, now: float) -> None:
        if name in self.alive:
            self.alive.discard(name)
            self.stopping.discard(name)
            self.wd.receive_exit(name, returncode, now)
            self.take(now)

    def settle(self, now: float) -> None:
        """Every stop under way completes."""
        for name in list(self.stopping):
            self.exit(name, -15, now)


@pytest.mark.parametrize("emulator_ready", ["60s", "0s"])
@settings(max_examples=300, deadline=None)
@given(inputs=_inputs)
def test_watchdog_properties_hold_for_any_input_sequence(
    emulator_ready: str, inputs: list[tuple[str, str, float]]
) -> None:
    """For any inputs (spawns that fail included): no double spawn, dependents stop first and
    start last (never before what they require was spawned), a deadline only moves earlier
    with an event, one tick resolves what is due, and a final start always brings everything
    back to running (nothing gets stuck). The emulator is ready after 60 s, or at start."""
    wd = pipeline(restart="group")
    if emulator_ready == "0s":
        wd = make(
            {"name": "emulator", "command": "emu"},
            {
                "name": "collector",
                "command": "collect",
                "requires": ["emulator"],
                "startup_grace": "150s",
                "heartbeat_timeout": "60s",
                "data_timeout": {"poiid": "10m"},
                "restart": "group",
            },
        )
    driver = Driver(wd)
    wd.receive_start(["emulator", "collector"], 0.0, "daemon started")
    driver.take(0.0)
    now = 0.0
    for verb, name, step in inputs:
        now += step
        before = wd.next_deadline()
        driver.events.clear()
        wd.events_to_take()
        if verb == "beat":
            wd.receive_message(name, "heartbeat", now)
        elif verb == "data":
            wd.receive_message(name, "poiid", now)
        elif verb == "crash":
            driver.exit(name, -9, now)  # also unasked, or while its stop waits for others
        elif verb == "exit":
            driver.exit(name, 0, now)
        elif verb == "tick":
            wd.tick(now)
        elif verb == "restart":
            wd.receive_restart(name, now, "asked")
        elif verb == "stop":
            wd.receive_stop([name], now, "asked")
        elif verb == "start":
            wd.receive_start([name], now, "asked")
        elif verb == "settle":
            driver.settle(now)
        elif verb == "unspawnable":
            driver.unspawnable.add(name)
        if verb in ("beat", "data"):
            events = wd.events_to_take()
            after = wd.next_deadline()
            if not events and before is not None and after is not None:
                assert after >= before
            driver.events += events
        driver.take(now)
        for record in wd.records():
            assert record.alive == (record.name in driver.alive)
            assert record.state is not S.STOPPING or not record.wanted or record.stopping
        due = wd.next_deadline()
        if due is not None and due <= now:
            wd.tick(now)
            driver.take(now)
            later = wd.next_deadline()
            assert later is None or later > now
    # Liveness: a person starts everything; processes behave; both end up running.
    wd.receive_start(["emulator", "collector"], now, "start requested")
    driver.take(now)
    for _ in range(40):
        driver.settle(now)
        if "collector" in driver.alive:
            wd.receive_message("collector", "heartbeat", now)
            driver.take(now)
        if all(r.state is S.RUNNING for r in wd.records()):
            break
        due = wd.next_deadline()
        now = max(now, due) if due is not None else now + 1.0
        if "collector" in driver.alive:
            wd.receive_message("collector", "heartbeat", now)
        wd.tick(now)
        driver.take(now)
    assert {r.name: r.state for r in wd.records()} == {
        "emulator": S.RUNNING,
        "collector": S.RUNNING,
    }, {r.name: (r.state, r.reason) for r in wd.records()}


def failures(events: list[Any]) -> list[tuple[str, S]]:
    return [(e.service, e.new) for e in events if isinstance(e, Transition) and e.failure]


def test_only_the_failing_service_transitions_are_marked_failures() -> None:
    """A hang marks the hung service's transitions as failures; its group's restart does not."""
    wd = running(pipeline(restart="group"))
    wd.events_to_take()
    wd.tick(121.0)
    assert failures(wd.events_to_take()) == [
        ("collector", S.UNRESPONSIVE),
        ("collector", S.RESTARTING),
    ]


def test_crash_is_a_failure_and_a_requested_restart_is_not() -> None:
    """An exit code marks a failure; a person's restart, stop and start never do."""
    wd = running(pipeline())
    wd.events_to_take()
    wd.receive_restart("collector", 70.0, "restart requested")
    wd.receive_stop(["emulator"], 71.0, "stop requested")
    wd.receive_start(["emulator"], 72.0, "start requested")
    assert failures(wd.events_to_take()) == []
    wd = running(pipeline())
    wd.events_to_take()
    wd.receive_exit("collector", 1, 70.0)
    assert failures(wd.events_to_take()) == [("collector", S.RESTARTING)]


def test_giving_up_is_a_failure() -> None:
    """The crash-loop limit ends in a failed transition marked as a failure."""
    wd = make({"name": "w", "command": "w", "max_restarts": 1, "backoff_initial": 0})
    wd.receive_start(["w"], 0.0, "daemon started")
    spawn_all(wd, 0.0)
    for now in (1.0, 2.0):
        wd.receive_exit("w", 1, now)
        spawn_all(wd, now)
    wd.receive_exit("w", 1, 3.0)
    assert failures(wd.events_to_take())[-1] == ("w", S.FAILED)
    assert wd.record("w").state is S.FAILED


def transitions(events: list[Any]) -> list[tuple[str, S, S, str]]:
    return [(e.service, e.old, e.new, e.reason) for e in events if isinstance(e, Transition)]


def test_ready_at_start_only_once_the_spawn_succeeded() -> None:
    """A service ready at once is running when its process exists, not when it was asked for."""
    wd = make({"name": "c", "command": "c"})
    wd.receive_start(["c"], 0.0, "start")
    assert wd.actions_to_take() == [Spawn("c")]
    assert transitions(wd.events_to_take()) == [("c", S.STOPPED, S.STARTING, "spawned")]
    assert not wd.record("c").ready
    wd.receive_spawned("c", 42, 0.1)
    assert transitions(wd.events_to_take()) == [("c", S.STARTING, S.RUNNING, "ready at start")]
    assert wd.record("c").ready


def test_dependents_wait_for_the_spawn_of_a_requirement_ready_at_start() -> None:
    """Nothing that requires a service is spawned before that service's own spawn succeeded."""
    wd = make({"name": "a", "command": "a"}, {"name": "b", "command": "b", "requires": ["a"]})
    wd.receive_start(["b"], 0.0, "start")
    assert wd.actions_to_take() == [Spawn("a")]
    wd.receive_spawn_failed("a", "no such executable 'a' (command \"a\")", 0.0)
    assert Spawn("b") not in wd.actions_to_take()
    assert wd.record("b").state is S.STOPPED


def test_a_spawn_failure_is_a_failed_start_with_backoff_and_the_crash_loop_limit() -> None:
    """Never running: one failed start after another, backing off, then failed; each said as
    the driver said it."""
    wd = make(
        {
            "name": "collector",
            "command": "nonexist --x",
            "max_restarts": 2,
            "backoff_initial": 1,
            "backoff_jitter": 0,
        }
    )
    reason = "no such executable 'nonexist' (command \"nonexist --x\")"
    wd.receive_start(["collector"], 0.0, "start")
    wd.actions_to_take()
    wd.receive_spawn_failed("collector", reason, 0.0)
    assert wd.actions_to_take() == [Spawn("collector")]  # the first failure: again at once
    wd.receive_spawn_failed("collector", reason, 0.0)
    assert wd.actions_to_take() == []
    assert wd.record("collector").state is S.BACKOFF
    assert wd.next_deadline() == 1.0
    wd.tick(1.0)
    assert wd.actions_to_take() == [Spawn("collector")]
    wd.receive_spawn_failed("collector", reason, 1.0)
    record = wd.record("collector")
    assert record.state is S.FAILED
    assert record.reason == f"gave up after 2 restarts in 300 s: cannot start: {reason}"
    assert record.last_exit == f"cannot start: {reason}"
    events = wd.events_to_take()
    assert all(e.new is not S.RUNNING for e in events if isinstance(e, Transition))
    assert ("collector", S.STARTING, S.RESTARTING, f"cannot start: {reason}") in transitions(events)
    assert failures(events)[-1] == ("collector", S.FAILED)


def down_since(events: list[Any], service: str) -> list[float | None]:
    return [
        e.down_since
        for e in events
        if isinstance(e, Transition) and e.service == service and e.new is S.UNRESPONSIVE
    ]


def test_a_missed_deadline_says_since_when_the_service_was_silent() -> None:
    """The transition to unresponsive carries the last sign of life the missed deadline
    counts from: the last message, the last event of the late kind, or the spawn."""
    wd = running(pipeline())  # collector spawned at 60, last message at 61
    wd.events_to_take()
    wd.tick(121.0)
    assert down_since(wd.events_to_take(), "collector") == [61.0]

    wd = running(pipeline())
    for at in range(70, 800, 30):
        wd.receive_message("collector", "poiid" if at == 100 else "heartbeat", float(at))
    wd.events_to_take()
    wd.tick(700.0)  # no poiid for 10m after the one at 100
    events = wd.events_to_take()
    assert down_since(events, "collector") == [100.0]

    wd = started(pipeline(), 0.0)
    wd.tick(60.0)
    spawn_all(wd, 60.0)
    wd.events_to_take()
    wd.tick(210.0)  # never a heartbeat: silent since its spawn
    assert down_since(wd.events_to_take(), "collector") == [60.0]


def test_a_stalled_queue_is_down_since_its_last_progress() -> None:
    """The queue rule: down since the depth last went down."""
    wd = make({"name": "c", "command": "c", "queue": {"name": "q", "stalled_after": "2m"}})
    wd.receive_start(["c"], 0.0, "start")
    spawn_all(wd, 0.0)
    wd.receive_queue_depth("c", 10, 5.0)
    wd.receive_queue_depth("c", 4, 30.0)
    wd.receive_queue_depth("c", 4, 100.0)
    wd.events_to_take()
    wd.tick(150.0)
    assert down_since(wd.events_to_take(), "c") == [30.0]
