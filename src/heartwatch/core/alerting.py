"""When to tell people: down, recovered, gave up. Pure: transitions in, ``tick(now)`` for the
confirmations that fall due, ``next_deadline()`` for when that is.

Rules / theory of operation
---------------------------

Alerts follow a service's *incident*, not each transition (as healthchecks' flips drive its
alerts):

1. A transition marked ``failure`` (it hung, crashed, could not start, was given up on) while
   no incident is open opens one: **down**, with the transition's reason.
2. While an incident is open, further failures say nothing (one restart after another is the
   same incident).
3. The first ``failed`` of an incident (opening it if none is open) is **gave up**, since a
   person must act now.
4. ``running`` again closes the incident once it has stayed so for ``recovered_after``
   seconds: **recovered**, with the downtime: from the last sign of life before it was
   declared down (the transition's ``down_since``: a hang began at the last heartbeat, not
   when the deadline noticed it) until it was running again. Waiting matters: a
   service that counts as ready at its spawn and crashes a second later has not recovered,
   and a crash loop must end in *gave up*, not in a flapping *down, recovered, down*. Any
   other transition meanwhile cancels the wait. Stops, starts and restarts asked for by
   people, and the daemon's own start and stop, are not failures and neither open nor close
   anything, so a daemon restart raises no alert.
5. Rate limit: at most ``rate_limit`` down/recovered alerts per service per ``rate_window``.
   Beyond it an alert is *suppressed* (still reported, so it is journaled and counted), and
   the recovery of a suppressed down is suppressed too: nobody is told of the end of an
   incident they were not told of. The next alert sent says how many were suppressed.
   **Gave up** is never suppressed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from heartwatch.core.units import format_duration

AlertKind = Literal["down", "recovered", "gave_up"]


@dataclass(frozen=True, slots=True)
class Alert:
    service: str
    kind: AlertKind
    reason: str
    at: float
    downtime: float | None = None  # recovered: seconds from the last sign of life to running
    suppressed_before: int = 0  # alerts of this service suppressed since the last one sent
    send: bool = True  # False: suppressed by the rate limit

    @property
    def title(self) -> str:
        return {
            "down": f"{self.service} is down",
            "recovered": f"{self.service} recovered",
            "gave_up": f"{self.service} failed: heartwatch gave up restarting it",
        }[self.kind]

    @property
    def body(self) -> str:
        text = f"{self.service}: {self.reason}"
        if self.downtime is not None:
            text = f"{self.service} is running again after {format_duration(self.downtime)} down"
        if self.suppressed_before:
            text += f" ({self.suppressed_before} earlier alerts were suppressed by the rate limit)"
        return text


@dataclass(slots=True)
class _Incident:
    since: float
    announced: bool  # the down (or gave up) alert was sent, not suppressed
    gave_up: bool = False
    running_since: float | None = None  # running again, not confirmed yet
    running_reason: str = ""


@dataclass(slots=True)
class _ServiceAlerts:
    incident: _Incident | None = None
    sent_at: deque[float] = field(default_factory=deque)
    suppressed: int = 0


class AlertRules:
    """Per-service incidents and rate limits; ``receive_transition`` returns what to say."""

    def __init__(
        self, *, rate_limit: int, rate_window: float, recovered_after: float = 0.0
    ) -> None:
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.recovered_after = recovered_after
        self._services: dict[str, _ServiceAlerts] = {}

    def receive_transition(
        self,
        service: str,
        state: str,
        reason: str,
        failure: bool,
        now: float,
        down_since: float | None = None,
    ) -> list[Alert]:
        """The alerts (sent or suppressed) that a transition of ``service`` to ``state``
        calls for, of that service only (other services' recoveries fall due on ``tick``:
        a transition of one says nothing of the time of another, e.g. on a hub whose hosts'
        clocks differ); ``down_since``: the last sign of life before it, if earlier than
        ``now``."""
        alerts = self._services.setdefault(service, _ServiceAlerts())
        incident = alerts.incident
        since = now if down_since is None else min(now, down_since)
        if failure and state == "failed":
            if incident is None:
                incident = alerts.incident = _Incident(since=since, announced=True)
            incident.running_since = None
            if incident.gave_up:
                return []
            incident.gave_up = incident.announced = True
            alerts.sent_at.append(now)
            return [self._alert(alerts, Alert(service, "gave_up", reason, now))]
        if failure and incident is None:
            send = self._allow(alerts, now)
            alerts.incident = _Incident(since=since, announced=send)
            return [self._alert(alerts, Alert(service, "down", reason, now, send=send))]
        if incident is None:
            return []
        if state != "running":
            incident.running_since = None  # failed again, or asked to stop: not recovered
            return []
        if incident.running_since is None:
            incident.running_since, incident.running_reason = now, reason
        recovered = self._confirm(service, alerts, now)
        return [] if recovered is None else [recovered]

    def tick(self, now: float) -> list[Alert]:
        """The recoveries confirmed by ``now``."""
        due = []
        for service, alerts in self._services.items():
            recovered = self._confirm(service, alerts, now)
            if recovered is not None:
                due.append(recovered)
        return due

    def _confirm(self, service: str, alerts: _ServiceAlerts, now: float) -> Alert | None:
        """The recovery of ``service`` if it is confirmed by ``now``."""
        incident = alerts.incident
        if incident is None or incident.running_since is None:
            return None
        if now < incident.running_since + self.recovered_after:
            return None
        alerts.incident = None
        send = incident.announced and self._allow(alerts, now)
        back = incident.running_since
        alert = Alert(
            service, "recovered", incident.running_reason, now, back - incident.since, send=send
        )
        return self._alert(alerts, alert)

    def next_deadline(self) -> float | None:
        """When ``tick`` may confirm a recovery, if one is pending."""
        pending = [
            alerts.incident.running_since + self.recovered_after
            for alerts in self._services.values()
            if alerts.incident is not None and alerts.incident.running_since is not None
        ]
        return min(pending, default=None)

    def _allow(self, alerts: _ServiceAlerts, now: float) -> bool:
        sent = alerts.sent_at
        while sent and sent[0] <= now - self.rate_window:
            sent.popleft()
        if len(sent) >= self.rate_limit:
            return False
        sent.append(now)
        return True

    def _alert(self, alerts: _ServiceAlerts, alert: Alert) -> Alert:
        """Count a suppressed alert, or attach the count of those before a sent one."""
        if not alert.send:
            alerts.suppressed += 1
            return alert
        suppressed, alerts.suppressed = alerts.suppressed, 0
        if not suppressed:
            return alert
        return Alert(
            alert.service,
            alert.kind,
            alert.reason,
            alert.at,
            alert.downtime,
            suppressed_before=suppressed,
        )
