"""What the watchdog reports is true: runs counted by cause (the daemon's recoveries apart from
people's starts and restarts), and a new reason in the same state is no transition."""

from __future__ import annotations

from typing import Any

from heartwatch.config import parse_config
from heartwatch.core.events import ReasonChanged, ServiceState, Spawn, Transition
from heartwatch.core.watchdog import Watchdog

S = ServiceState


def make(*services: dict[str, Any]) -> Watchdog:
    config = parse_config({"service": list(services)})
    return Watchdog([s.spec() for s in config.service], random=lambda: 0.5)


def spawn_all(wd: Watchdog, now: float, pid: int = 100) -> list[str]:
    """Confirm every Spawn, and those each confirmation leads to; return the names spawned."""
    names: list[str] = []
    for _ in range(10):  # a pipeline of two: a few rounds at most
        spawns = [a for a in wd.actions_to_take() if isinstance(a, Spawn)]
        if not spawns:
            return names
        for action in spawns:
            names.append(action.service)
            wd.receive_spawned(action.service, pid, now)
    raise AssertionError(f"still spawning after 10 rounds: {names}")


def counts(wd: Watchdog, name: str) -> tuple[int, int, str]:
    record = wd.record(name)
    return record.restarts, record.restarts_requested, record.run_cause


def pair() -> Watchdog:
    """``b`` requires ``a``; both ready at spawn (``startsecs = 0``), quick to recover."""
    quick = {"backoff_initial": 0, "max_restarts": 50, "startsecs": 0}
    return make(
        {"name": "a", "command": "a", **quick},
        {"name": "b", "command": "b", "requires": ["a"], **quick},
    )


def test_a_crash_is_a_restart_and_a_persons_restart_is_not() -> None:
    """A crash's recovery counts in ``restarts``; a restart or a stop and start asked for by a
    person count in ``restarts_requested`` only."""
    wd = pair()
    wd.receive_start(["a", "b"], 0.0, "daemon started")
    assert spawn_all(wd, 0.0) == ["a", "b"]
    assert counts(wd, "a") == (0, 0, "first")

    wd.receive_exit("a", 1, 10.0)  # a crash: a, and b that requires it, are recovered
    wd.receive_exit("b", -15, 10.1)
    assert spawn_all(wd, 10.2) == ["a", "b"]
    assert counts(wd, "a") == (1, 0, "recovery")
    assert counts(wd, "b") == (1, 0, "recovery")  # recovered with a: the daemon's doing too

    wd.receive_restart("a", 20.0, "restart requested")
    wd.receive_exit("b", -15, 20.1)
    wd.receive_exit("a", -15, 20.2)
    assert spawn_all(wd, 20.3) == ["a", "b"]
    assert counts(wd, "a") == (1, 1, "requested")
    assert counts(wd, "b") == (1, 1, "requested")

    wd.receive_stop(["b"], 30.0, "stop requested")
    wd.receive_exit("b", -15, 30.1)
    wd.receive_start(["b"], 31.0, "start requested")
    assert spawn_all(wd, 31.0) == ["b"]
    assert counts(wd, "b") == (1, 2, "requested")
    assert counts(wd, "a") == (1, 1, "requested")  # untouched


def test_a_person_stopping_a_recovery_makes_the_next_run_theirs() -> None:
    """A recovery under way, then stopped and started by a person: that run is theirs."""
    wd = make({"name": "c", "command": "c", "backoff_initial": 5, "max_restarts": 50})
    wd.receive_start(["c"], 0.0, "daemon started")
    spawn_all(wd, 0.0)
    wd.receive_exit("c", 1, 100.0)  # restarts at once (first failure after a healthy run)
    spawn_all(wd, 100.0)
    wd.receive_exit("c", 1, 101.0)  # the second failure waits out a backoff
    assert wd.record("c").state is S.BACKOFF
    wd.receive_stop(["c"], 102.0, "stop requested")
    wd.receive_start(["c"], 103.0, "start requested")
    assert spawn_all(wd, 103.0) == ["c"]
    assert counts(wd, "c") == (1, 1, "requested")


def test_a_watch_only_services_recovery_is_a_restart() -> None:
    """A watch-only service watched afresh after its silence counts as a recovery."""
    wd = make({"name": "w", "heartbeat_timeout": 10, "backoff_initial": 0})
    wd.receive_start(["w"], 0.0, "daemon started")
    wd.receive_message("w", "heartbeat", 1.0)
    wd.tick(11.0)
    wd.tick(11.0)
    assert counts(wd, "w") == (1, 0, "recovery")


def test_a_new_reason_in_the_same_state_is_no_transition() -> None:
    """Waiting for a requirement changes the reason, not the state: a ``ReasonChanged``, and
    every ``Transition`` changes the state."""
    wd = make(
        {"name": "emulator", "command": "emu", "ready": "60s"},
        {"name": "collector", "command": "c", "requires": ["emulator"], "heartbeat_timeout": 9},
    )
    wd.receive_start(["collector"], 0.0, "start")
    events = wd.events_to_take()
    assert ReasonChanged("collector", S.STOPPED, "waiting for emulator", 0.0) in events
    assert all(e.old is not e.new for e in events if isinstance(e, Transition))
    assert wd.record("collector").reason == "waiting for emulator"
    assert wd.record("collector").state_since == 0.0
