"""The fleet's alerts: hosts unreachable and back, services down, recovered, given up on.

Service alerts are the agent's own rules (``core/alerting.py``: incidents, rate limits, the
recovery confirmed after ``recovered_after``) applied to the transition entries the hub stored
*for the first time* (so a redelivered or already stored entry decides nothing again), one
incident per ``host/service``; every text names the host (``farm-07/collector@2 down:
heartbeat timeout 30 s``). Host alerts come from the host sweep (unreachable) and the ingest
(back), see ``core/hoststates.py``.

Two clocks, never compared: an entry's ``at`` is its agent's wall clock, which may be minutes
or hours off the hub's. So:

- The rules run on the hub's clock: an entry counts as having happened ``age`` seconds before
  the hub's receipt (never after it), and its ``down_since`` that much earlier again as the
  agent measured it. Deadlines (a recovery confirmed after ``recovered_after``) are the hub's
  timer's, whatever the hosts' clocks say, and a transition of one service releases nothing
  of another's (``AlertRules.receive_transition`` answers for that service only).
- ``age`` is measured on the agent's own timeline (``HostTimeline``): how far the entry's
  ``at`` is behind the host's "now", which is the ``at`` of its last report (heartbeat,
  snapshot: never buffered, so made about when the hub got it; ``BatchResult.reported``) or
  of a later-stamped entry, advanced by the time the hub has measured since it received that
  (an interval, the same on both clocks). An entry older than ``REPLAY_HORIZON`` so measured
  (an outbox replayed after an outage: made long ago, arriving now) is history, not news:
  stored, shown, not alerted. A host whose clock is 700 s behind is alerted as any other; so
  is one whose clock was set back (its next heartbeat says so; a newer entry, by its seq,
  stamped earlier than the newest one known, too). Before any report of a host, its newest
  entry of the batch is its "now".

Exactly once across hubs: before an alert is sent, its row is inserted into ``alerts`` with
``ON CONFLICT (key) DO NOTHING RETURNING``; only the hub whose insert made the row sends it.
The key is what makes it one alert: ``host/service/kind/boot/seq`` of the entry that opened
it (for a recovery: of the entry that found it running again), ``host/unreachable/<since>``
and ``host/back/<since>`` with the outage's start (a back alert only follows an unreachable
alert that was made). The row then records the outcome: sent, or why not (``error``: held
back while the host is unreachable, suppressed by the rate limit, no URLs, not delivered).
Sending is ``daemon/alerts.deliver`` (apprise in worker threads, retried); one chain of sends
per host or service keeps their alerts in order.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from loguru import logger

from heartwatch.core.alerting import Alert, AlertRules
from heartwatch.core.hoststates import HostAlertKind, host_alert_text
from heartwatch.daemon.alerts import create_apprise, deliver
from heartwatch.daemon.tasks import TaskSet
from heartwatch.hub.config import HubConfig
from heartwatch.hub.store import BatchResult, StoredEntry

if TYPE_CHECKING:
    import apprise
    from psycopg_pool import AsyncConnectionPool

REPLAY_HORIZON: Final = 600.0  # seconds: an entry this much older than its host's "now" is not
# alerted (measured on the agent's timeline, see the module docstring)
_NOTIFY_TYPES: Final = {
    "down": "warning",
    "recovered": "success",
    "gave_up": "failure",
    "unreachable": "failure",
    "back": "success",
}
HELD_BACK: Final = "held back: the host is unreachable"


def service_alert_text(alert: Alert) -> str:
    """The words of a service alert; ``alert.service`` is ``host/service``."""
    if alert.kind == "down":
        text = f"{alert.service} down: {alert.reason}"
    elif alert.kind == "gave_up":
        text = f"{alert.service} failed, restarts given up: {alert.reason}"
    else:
        return alert.body  # "farm-07/collector is running again after 3 s down"
    if alert.suppressed_before:
        text += f" ({alert.suppressed_before} earlier alerts were suppressed by the rate limit)"
    return text


@dataclass(slots=True)
class HostTimeline:
    """One boot of a host, as its own clock runs: an anchor (an entry's ``at`` and when the
    hub received it) and the newest entry known by seq. Pure: times in, ages out."""

    boot: str
    seq: int  # the newest entry's (made last)
    latest: float  # its ``at``
    at: float  # the anchor, on the agent's clock
    received: float  # when the hub received the anchor, on the hub's clock

    @classmethod
    def starting(cls, boot: str, seq: int, at: float, hub_now: float) -> HostTimeline:
        return cls(boot, seq, at, at, hub_now)

    @classmethod
    def reported(cls, boot: str, at: float, hub_now: float) -> HostTimeline:
        """From a report (no entry known yet: any entry's seq is later)."""
        return cls(boot, 0, -math.inf, at, hub_now)

    def report(self, at: float, hub_now: float) -> None:
        """A heartbeat or snapshot, made about now on the agent's clock: the new anchor,
        whatever its clock did meanwhile (set back or forward)."""
        self.at, self.received = at, hub_now

    def agent_now(self, hub_now: float) -> float:
        """The host's clock now, as far as the hub can tell: the anchor plus the time since."""
        return self.at + max(0.0, hub_now - self.received)

    def receive(self, seq: int, at: float, hub_now: float) -> None:
        """An entry of this boot. A later one (by seq) stamped at or after the host's "now"
        is the new anchor; so is one stamped before the newest known, since it was made after
        that on a clock set back. Others (replayed: made a while ago, arriving now) leave the
        anchor as it is."""
        if seq <= self.seq:
            return
        if at >= self.agent_now(hub_now) or at < self.latest:
            self.at, self.received = at, hub_now
        self.seq, self.latest = seq, at


class FleetAlerter:
    """Decides and sends the fleet's alerts (module docstring); ``receive_*`` are its inputs."""

    def __init__(
        self,
        config: HubConfig,
        pool: AsyncConnectionPool[Any],
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.pool = pool
        self.sent_by = config.name
        self._clock = wall_clock
        alerts = config.alerts
        self.rules = AlertRules(
            rate_limit=alerts.rate_limit,
            rate_window=alerts.rate_window,
            recovered_after=alerts.recovered_after,
        )
        self._running: dict[str, tuple[str, str, int]] = {}  # subject -> host, boot, seq
        self._timelines: dict[str, HostTimeline] = {}  # host -> its current boot's clock
        self._notifiers: list[apprise.Apprise] = []
        self._sending = TaskSet("fleet alerts")
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.config.alerts.urls:
            self._notifiers = [create_apprise([url]) for url in self.config.alerts.urls]

    async def close(self, timeout: float = 5.0) -> None:
        """Give alerts on their way ``timeout`` seconds, then stop."""
        if self._timer is not None:
            self._timer.cancel()
        await self._sending.close(grace=timeout)

    # --- inputs ------------------------------------------------------------------------------

    def receive_batch(self, result: BatchResult) -> None:
        """What an ingest batch stored for the first time: its transitions and returning hosts."""
        now = self._clock()  # the hub's receipt
        clocks = self._host_clocks(result, now)
        old = 0
        due = self.rules.next_deadline()  # of the recoveries pending (each pass is O(services))
        for entry in result.entries:
            if entry.kind != "transition" or entry.service is None or entry.state is None:
                continue
            age = clocks[(entry.host, entry.boot)] - entry.at
            if age > REPLAY_HORIZON:
                old += 1
                continue
            happened = now - max(0.0, age)
            if due is not None and due <= happened:
                # Recoveries due by then first (a replayed "running" whose confirmation fell
                # due before the next entry of the replay), in the order they happened.
                self._release(self.rules.tick(happened))
                due = self.rules.next_deadline()
            self._receive_transition(entry, happened)
            if entry.state == "running":  # it may have begun a wait for its recovery
                candidate = happened + self.rules.recovered_after
                due = candidate if due is None else min(due, candidate)
        if old:
            logger.info(
                "fleet alerts: {} replayed transitions older than {:.0f} s not alerted",
                old,
                REPLAY_HORIZON,
            )
        for host, since in result.back:
            self.receive_host_change(host, "back", since, None)
        self._arm()

    def receive_host_change(
        self, host: str, kind: HostAlertKind, since: float, silent_for: float | None
    ) -> None:
        """A host became unreachable (``since``: then), or is back from the outage that began
        at ``since``."""
        key = f"{host}/{kind}/{since:.6f}"
        needs = None if kind == "unreachable" else f"{host}/unreachable/{since:.6f}"
        message = host_alert_text(host, kind, silent_for)
        title = f"heartwatch: host {host} {'unreachable' if kind == 'unreachable' else 'is back'}"
        self._queue(host, key, host, None, kind, title, message, needs=needs)

    def _host_clocks(self, result: BatchResult, now: float) -> dict[tuple[str, str], float]:
        """Each (host, boot) of the batch's entries: that host's clock now (``HostTimeline``).
        The batch's reports and entries move the timelines first, so that an old entry is
        judged against the newest one that came with it too."""
        clocks: dict[tuple[str, str], float] = {}
        others: dict[tuple[str, str], float] = {}  # entries of a boot that is not current
        for host, (boot, at) in result.reported.items():
            timeline = self._timelines.get(host)
            if timeline is not None and timeline.boot == boot:
                timeline.report(at, now)
            else:
                self._timelines[host] = HostTimeline.reported(boot, at, now)
        for entry in sorted(result.entries, key=lambda e: e.seq):
            key = (entry.host, entry.boot)
            timeline = self._timelines.get(entry.host)
            if timeline is not None and timeline.boot == entry.boot:
                timeline.receive(entry.seq, entry.at, now)
            elif entry.current_boot or timeline is None:
                self._timelines[entry.host] = HostTimeline.starting(
                    entry.boot, entry.seq, entry.at, now
                )
            else:  # a late entry of an older boot: judged by its own batch only
                others[key] = max(others.get(key, entry.at), entry.at)
        for entry in result.entries:
            key = (entry.host, entry.boot)
            if key in clocks:
                continue
            timeline = self._timelines.get(entry.host)
            if timeline is not None and timeline.boot == entry.boot:
                clocks[key] = timeline.agent_now(now)
            else:
                clocks[key] = others.get(key, entry.at)
        return clocks

    def _receive_transition(self, entry: StoredEntry, happened: float) -> None:
        """One new transition, ``happened`` then on the hub's clock (module docstring)."""
        subject = f"{entry.host}/{entry.service}"
        opening = (entry.host, entry.boot, entry.seq)
        if entry.state == "running":
            self._running[subject] = opening
        down_since = entry.detail.get("down_since")
        if isinstance(down_since, float | int) and not isinstance(down_since, bool):
            # How long before the transition the agent saw its last sign of life, moved over.
            down_since = happened - max(0.0, entry.at - float(down_since))
        else:
            down_since = None
        alerts = self.rules.receive_transition(
            subject,
            str(entry.state),
            entry.reason,
            bool(entry.detail.get("failure")),
            happened,
            down_since=down_since,
        )
        for alert in alerts:
            # A recovery is the running entry's (this one, for the transitions' alerts are of
            # this service only); the others are opened by this entry.
            if alert.kind == "recovered":
                self._dispatch(alert, self._running.get(alert.service, opening))
            else:
                self._dispatch(alert, opening)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.rules.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._release(self.rules.tick(self._clock()))
        self._arm()

    def _release(self, recoveries: list[Alert]) -> None:
        """Confirmed recoveries, each under the entry that found its service running."""
        for alert in recoveries:
            running = self._running.get(alert.service)
            if running is not None:
                self._dispatch(alert, running)

    def _dispatch(self, alert: Alert, opening: tuple[str, str, int]) -> None:
        host, boot, seq = opening
        service = alert.service.partition("/")[2]
        key = f"{host}/{service}/{alert.kind}/{boot}/{seq}"
        title = f"heartwatch: {alert.title}"
        why_not = None if alert.send else "suppressed by the rate limit"
        self._queue(
            alert.service,
            key,
            host,
            service,
            alert.kind,
            title,
            service_alert_text(alert),
            why_not=why_not,
        )

    # --- claiming and sending ------------------------------------------------------------------

    def _queue(
        self,
        chain: str,
        key: str,
        host: str,
        service: str | None,
        kind: str,
        title: str,
        message: str,
        *,
        needs: str | None = None,
        why_not: str | None = None,
    ) -> None:
        if self._sending.closed:
            logger.warning("fleet alert {} not sent: the hub is stopping", key)
            return
        previous = self._chains.get(chain)
        task = self._sending.start(
            self._claim_and_send(previous, key, host, service, kind, title, message, needs, why_not)
        )
        self._chains[chain] = task
        task.add_done_callback(lambda done: self._forget(chain, done))

    def _forget(self, chain: str, task: asyncio.Task[None]) -> None:
        if self._chains.get(chain) is task:
            del self._chains[chain]

    async def _claim_and_send(
        self,
        previous: asyncio.Task[None] | None,
        key: str,
        host: str,
        service: str | None,
        kind: str,
        title: str,
        message: str,
        needs: str | None,
        why_not: str | None,
    ) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            claimed, host_state = await self._claim(key, host, service, kind, message, needs)
        except Exception as error:  # the database's failure, in any of its forms
            logger.error(
                "fleet alert {} not sent: it could not be recorded ({})", key, type(error).__name__
            )
            return
        if not claimed:
            return  # another hub has it, or (back) there was no unreachable alert to follow
        if why_not is None and service is not None and host_state == "unreachable":
            why_not = HELD_BACK
        if why_not is None and not self._notifiers:
            why_not = "no notification URLs configured"
        if why_not is not None:
            logger.info("fleet alert {}: {} ({})", kind, message, why_not)
            await self._record(key, False, why_not)
            return
        delivered, how = await deliver(
            self._notifiers,
            self.config.alerts,
            title=title,
            body=message,
            notify_type=_NOTIFY_TYPES.get(kind, "info"),
        )
        (logger.info if delivered else logger.error)(
            "fleet alert {} {}: {} ({})", "sent" if delivered else "failed", kind, message, how
        )
        await self._record(key, delivered, None if delivered else how)

    async def _claim(
        self, key: str, host: str, service: str | None, kind: str, message: str, needs: str | None
    ) -> tuple[bool, str | None]:
        """Insert the alert's row; ``(this hub made it, the host's state)``."""
        async with self.pool.connection() as connection:
            cursor = await connection.execute(
                "INSERT INTO alerts (key, host, service, kind, message, sent_by)"
                " SELECT %s, %s, %s, %s, %s, %s"
                " WHERE %s::text IS NULL OR EXISTS (SELECT 1 FROM alerts WHERE key = %s)"
                " ON CONFLICT (key) DO NOTHING"
                " RETURNING (SELECT state FROM hosts WHERE host = %s)",
                [key, host, service, kind, message, self.sent_by, needs, needs, host],
            )
            row = await cursor.fetchone()
        return (row is not None, row[0] if row else None)

    async def _record(self, key: str, sent: bool, error: str | None) -> None:
        try:
            async with self.pool.connection() as connection:
                await connection.execute(
                    "UPDATE alerts SET sent = %s, error = %s WHERE key = %s", [sent, error, key]
                )
        except Exception as failure:  # the outcome is logged already
            logger.warning(
                "fleet alert {}: its outcome not recorded ({})", key, type(failure).__name__
            )
