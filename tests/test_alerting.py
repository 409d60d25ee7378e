"""Alert rules: one incident per outage, recovered with its downtime, gave up never muted."""

from __future__ import annotations

from heartwatch.core.alerting import Alert, AlertRules


def kinds(alerts: list[Alert]) -> list[tuple[str, bool]]:
    return [(a.kind, a.send) for a in alerts]


def incident_open(rules: AlertRules, service: str, now: float) -> bool:
    """Whether ``service``'s incident is still open, asked the way the daemon would learn it:
    another failure is then part of it and says nothing; otherwise it opens one (*down*).
    It is a failure fed in, so ask it last."""
    return rules.receive_transition(service, "unresponsive", "late again", True, now) == []


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
    assert not incident_open(rules, "c", 15.0)


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
    assert kinds(later) == [("recovered", True)]  # people were told it gave up: tell the end


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
    """Tenths of a second, then whole units, two at most: the durations of every reason."""
    for down_for, said in [(4.24, "4.2 s"), (185, "3 min 5 s"), (7620, "2 h 7 min")]:
        rules = AlertRules(rate_limit=10, rate_window=3600)
        rules.receive_transition("c", "unresponsive", "late", True, 1000.0)
        (recovered,) = rules.receive_transition("c", "running", "back", False, 1000.0 + down_for)
        assert recovered.body == f"c is running again after {said} down"


def test_recovery_is_confirmed_after_running_for_a_while() -> None:
    """Running again is recovered only once it lasts; the downtime ends when it came back."""
    rules = AlertRules(rate_limit=10, rate_window=3600, recovered_after=10)
    rules.receive_transition("c", "unresponsive", "no heartbeat", True, 100.0)
    assert rules.receive_transition("c", "running", "first heartbeat", False, 104.0) == []
    assert rules.next_deadline() == 114.0
    assert rules.tick(113.9) == []
    (recovered,) = rules.tick(114.0)
    assert (recovered.kind, recovered.downtime, recovered.reason) == (
        "recovered",
        4.0,
        "first heartbeat",
    )
    assert rules.next_deadline() is None and not incident_open(rules, "c", 115.0)


def test_crash_loop_of_a_service_ready_at_spawn_ends_in_gave_up() -> None:
    """Running at each spawn, crashing a second later: one down, one gave up, no flapping."""
    rules = AlertRules(rate_limit=10, rate_window=3600, recovered_after=10)
    alerts = []
    now = 0.0
    for _ in range(5):
        alerts += rules.receive_transition("w", "starting", "spawned", False, now)
        alerts += rules.receive_transition("w", "running", "ready at start", False, now)
        alerts += rules.tick(now + 1)
        alerts += rules.receive_transition("w", "restarting", "exit code 1", True, now + 1)
        now += 2
    alerts += rules.receive_transition("w", "running", "ready at start", False, now)
    alerts += rules.receive_transition("w", "failed", "gave up after 5 restarts", True, now + 1)
    alerts += rules.tick(now + 100)
    assert kinds(alerts) == [("down", True), ("gave_up", True)]


def test_gave_up_is_sent_even_without_an_open_incident() -> None:
    """A failure that goes straight to failed (no restarts allowed) still says gave up."""
    rules = AlertRules(rate_limit=1, rate_window=3600)
    rules.receive_transition("x", "unresponsive", "late", True, 0.0)  # uses the only slot
    rules.receive_transition("x", "running", "resumed", False, 1.0)
    alerts = rules.receive_transition("x", "failed", "gave up after 0 restarts", True, 2.0)
    assert kinds(alerts) == [("gave_up", True)]
    assert incident_open(rules, "x", 3.0)


def test_a_stop_while_recovering_cancels_the_confirmation() -> None:
    """Stopped by a person before it proved itself: no recovered alert."""
    rules = AlertRules(rate_limit=10, rate_window=3600, recovered_after=10)
    rules.receive_transition("c", "unresponsive", "late", True, 0.0)
    rules.receive_transition("c", "running", "first heartbeat", False, 1.0)
    rules.receive_transition("c", "stopping", "stop requested", False, 2.0)
    assert rules.next_deadline() is None
    assert rules.tick(100.0) == []
    assert incident_open(rules, "c", 101.0)


def test_downtime_counts_from_the_last_sign_of_life() -> None:
    """Declared down at 10 s for a heartbeat last heard at 6 s, running again at 10.1 s: down
    4.1 s, not the 0.1 s since it was declared down."""
    rules = AlertRules(rate_limit=10, rate_window=3600)
    rules.receive_transition(
        "collector", "unresponsive", "no heartbeat for 4.0 s", True, 10.0, down_since=6.0
    )
    rules.receive_transition("collector", "restarting", "no heartbeat", True, 10.0, down_since=None)
    (recovered,) = rules.receive_transition("collector", "running", "first heartbeat", False, 10.1)
    assert recovered.downtime is not None and round(recovered.downtime, 3) == 4.1
    assert recovered.body == "collector is running again after 4.1 s down"


def test_a_down_since_later_than_the_transition_is_not_believed() -> None:
    """Downtime is never shorter than from the moment the service was declared down."""
    rules = AlertRules(rate_limit=10, rate_window=3600)
    rules.receive_transition("c", "restarting", "exit code 1", True, 10.0, down_since=12.0)
    (recovered,) = rules.receive_transition("c", "running", "ready at start", False, 11.0)
    assert recovered.downtime == 1.0
