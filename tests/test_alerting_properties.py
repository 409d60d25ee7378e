"""Alert rules, whatever happens: one *down* per incident, *gave up* never muted.

Any sequence of transitions (any state, failure or not, any service of two), at
non-decreasing times, with ticks between, under a tight rate limit. The alerts each service
receives are checked against what an incident means (``core/alerting.py``'s rules)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from heartwatch.core.alerting import Alert, AlertRules

STATES = [
    "starting",
    "running",
    "unresponsive",
    "restarting",
    "backoff",
    "failed",
    "exited",
    "stopping",
    "stopped",
]

transition = st.tuples(
    st.sampled_from(["a", "b"]),
    st.sampled_from(STATES),
    st.booleans(),  # failure
    st.floats(min_value=0.0, max_value=30.0),  # time since the previous input
    st.booleans(),  # a tick after it
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=60.0)),  # down_since, seconds back
)


@dataclass
class Incident:
    gave_up: bool = False


@given(
    st.lists(transition, max_size=60),
    st.integers(min_value=1, max_value=3),
    st.floats(min_value=0.0, max_value=20.0),
)
@settings(max_examples=300, deadline=None)
def test_one_down_per_incident_and_gave_up_never_muted(
    inputs: list[tuple[str, str, bool, float, bool, float | None]],
    rate_limit: int,
    recovered_after: float,
) -> None:
    rules = AlertRules(rate_limit=rate_limit, rate_window=100.0, recovered_after=recovered_after)
    incidents: dict[str, Incident | None] = {"a": None, "b": None}
    now = 0.0

    def check(alerts: list[Alert], failed_service: str | None) -> None:
        gave_up_now = False
        for alert in alerts:
            incident = incidents[alert.service]
            if alert.kind == "down":
                assert incident is None, "a second down in one incident"
                incidents[alert.service] = Incident()
            elif alert.kind == "gave_up":
                assert alert.send, "gave up was muted"
                assert incident is None or not incident.gave_up, "gave up twice in one incident"
                incidents[alert.service] = Incident(gave_up=True)
                gave_up_now = True
            else:
                assert incident is not None, "recovered without an incident"
                assert alert.downtime is not None and alert.downtime >= 0
                incidents[alert.service] = None
        if failed_service is not None:
            # A failure to `failed` always says gave up, unless this incident already did.
            assert gave_up_now or incidents[failed_service] is not None
            incident = incidents[failed_service]
            assert incident is not None and incident.gave_up

    for service, state, failure, step, tick, back in inputs:
        now += step
        before = incidents[service]
        down_since = None if back is None else now - back
        alerts = rules.receive_transition(service, state, "why", failure, now, down_since)
        failed = service if failure and state == "failed" else None
        if failed is not None and before is not None and before.gave_up:
            assert alerts == [], "a second gave up"
        check(alerts, failed)
        if tick:
            check(rules.tick(now + recovered_after), None)
            now += recovered_after
    deadline = rules.next_deadline()
    if deadline is not None:
        check(rules.tick(deadline), None)
