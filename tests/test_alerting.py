"""Alert rules: one incident per outage, recovered with its downtime, gave up never muted."""

from __future__ import annotations

from heartwatch.alerting import Alert, AlertRules, format_downtime


def kinds(alerts: list[Alert]) -> list[tuple[str, bool]]:
    return [(a.kind, a.send) for a in alerts]


def test_hang_then_recovery_is_one_down_and_one_recovered() -> None:
    """Unresponsive, restarting, starting are one incident; running again closes it."""
    rules = AlertRules(rate_limit=10, rate_window=3600)
    down = rules.receive_transition("c", "unresponsive", "no heartbeat for 3.0 s", True, 10.0)
    assert kinds(down) == [("down", True)]
    assert down[0].body == "c: no heartbeat for 3.0 s"
    assert rules.receive_transition("c", "restarting", "no heartbeat for 3.0 s", True, 10.0) == []
    assert rules.receive_transition("c", "starting", "spawned", False, 11.0) == []
    recovered = rules.receive_transition("c", "running", "first heartbeat", False, 14.5)
    assert kinds(recovered) == [("recovered", True)]
    assert recovered[0].downtime == 4.5
    assert recovered[0].body == "c is running again after 4.5 s down"
    assert not rules.is_down("c")


def test_requested_restarts_and_daemon_start_raise_nothing() -> None:
    """Transitions that are not failures neither open nor close an incident."""
    rules = AlertRules(rate_limit=10, rate_window=3600)
    for state in ("starting", "running", "restarting", "stopping", "stopped", "running"):
        assert rules.receive_transition("c", state, "daemon started", False, 1.0) == []


def test_crash_loop_down_then_gave_up_once() -> None:
    """A service that never comes back: one down, then one gave up, nothing in between."""
    rules = AlertRules(rate_limit=10, rate_window=3600)
    alerts = rules.receive_transition("w", "restarting", "exit code 1", True, 0.0)
    for now in range(1, 5):
        alerts += rules.receive_transition("w", "starting", "spawned", False, now)
        alerts += rules.receive_transition("w", "restarting", "exit code 1", True, now + 0.5)
    alerts += rules.receive_transition("w", "failed", "gave up after 5 restarts", True, 6.0)
    alerts += rules.receive_transition("w", "failed", "gave up after 5 restarts", True, 7.0)
    assert kinds(alerts) == [("down", True), ("gave_up", True)]


def test_rate_limit_suppresses_and_counts_but_never_gave_up() -> None:
    """Beyond the limit alerts are suppressed; the next one sent says how many were."""
    rules = AlertRules(rate_limit=2, rate_window=100)
    sent = []
    for now in (0.0, 10.0, 20.0):  # three flaps: down and recovered each
        sent += rules.receive_transition("f", "unresponsive", "late", True, now)
        sent += rules.receive_transition("f", "running", "resumed", False, now + 1)
    assert kinds(sent) == [
        ("down", True),
        ("recovered", True),
        ("down", False),
        ("recovered", False),  # its down was suppressed: so is its end
        ("down", False),
        ("recovered", False),
    ]
    gave_up = rules.receive_transition("f", "unresponsive", "late", True, 30.0)
    gave_up += rules.receive_transition("f", "failed", "gave up", True, 31.0)
    assert kinds(gave_up) == [("down", False), ("gave_up", True)]
    assert gave_up[1].suppressed_before == 5
    assert "5 earlier alerts were suppressed" in gave_up[1].body
    later = rules.receive_transition("f", "running", "start requested", False, 200.0)
    assert kinds(later) == [("recovered", False)]  # its down was never sent


def test_services_are_independent() -> None:
    """One service's incident and rate limit do not touch another's."""
    rules = AlertRules(rate_limit=1, rate_window=100)
    assert kinds(rules.receive_transition("a", "unresponsive", "late", True, 0.0)) == [
        ("down", True)
    ]
    assert kinds(rules.receive_transition("b", "unresponsive", "late", True, 0.0)) == [
        ("down", True)
    ]


def test_downtime_reads_as_people_say_it() -> None:
    """Seconds with a decimal, then minutes and seconds, then hours and minutes."""
    assert format_downtime(4.24) == "4.2 s"
    assert format_downtime(185) == "3m05s"
    assert format_downtime(7620) == "2h07m"
