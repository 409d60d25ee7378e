"""Alerts, the driver: the rules' decisions (``alerting.py``) sent through apprise.

A journal listener. Transitions go through ``AlertRules``; each alert it returns is journaled
(kind ``alert``: sent, failed or suppressed) and, unless suppressed, sent: one chain of sends
per service, so a service's alerts go out in order and a retry never holds back another
service's. apprise is synchronous and talks to the network, so every send runs in a worker
thread: the event loop never waits for DingTalk. A failed send is tried again, only through the
URLs that failed, after ``retry_delay``, doubling, ``retries`` times, then logged as failed.
Notification URLs carry secrets: they are never logged; apprise's own log is kept to errors.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from typing import TYPE_CHECKING

from loguru import logger

from heartwatch.config import AlertsConfig
from heartwatch.core.alerting import Alert, AlertRules
from heartwatch.core.journal import Journal, JournalEntry
from heartwatch.daemon.loopclock import LoopClock
from heartwatch.daemon.tasks import TaskSet

if TYPE_CHECKING:
    import apprise

# alert kind -> apprise's notification type (its colour in chat apps)
_NOTIFY_TYPES = {"down": "warning", "recovered": "success", "gave_up": "failure"}


def create_apprise(urls: list[str]) -> apprise.Apprise:
    import apprise

    # apprise logs what it sends (URLs with tokens in them) at INFO; keep only its errors.
    logging.getLogger("apprise").setLevel(logging.ERROR)
    notifier = apprise.Apprise()
    for url in urls:
        notifier.add(url)
    return notifier


class Alerter:
    def __init__(
        self,
        config: AlertsConfig,
        journal: Journal,
        clock: LoopClock,
        *,
        host: str | None = None,
    ) -> None:
        self.config = config
        self.rules = AlertRules(
            rate_limit=config.rate_limit,
            rate_window=config.rate_window,
            recovered_after=config.recovered_after,
        )
        self.counts: Counter[tuple[str, str]] = Counter()  # (alert kind, outcome) -> count
        self._journal = journal
        self._clock = clock
        self._host = host or socket.gethostname()
        self._loop = asyncio.get_running_loop()
        # One chain of sends per service: its alerts go out in order, and a service whose
        # alert is being retried never holds back another's.
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._sending = TaskSet("alerts")
        self._notifiers: list[apprise.Apprise] = []  # one per URL: retried one by one
        self._timer: asyncio.TimerHandle | None = None  # the next recovery to confirm

    def start(self) -> None:
        if self.config.urls:
            self._notifiers = [create_apprise([url]) for url in self.config.urls]

    def receive(self, entry: JournalEntry) -> None:
        """A journal listener: transitions may call for alerts."""
        if entry.kind != "transition" or entry.service is None or entry.state is None:
            return
        detail = entry.detail or {}
        down_since = detail.get("down_since")
        alerts = self.rules.receive_transition(
            entry.service,
            entry.state,
            entry.reason,
            bool(detail.get("failure")),
            entry.at,
            down_since=down_since if isinstance(down_since, float | int) else None,
        )
        for alert in alerts:
            # Journal it in a later loop turn: every listener sees this transition first.
            self._loop.call_soon(self._dispatch, alert)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.rules.next_deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(self._clock.loop_time(deadline), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        for alert in self.rules.tick(self._clock.wall_time()):
            self._dispatch(alert)
        self._arm()

    async def close(self, timeout: float = 5.0) -> None:
        """Give queued alerts ``timeout`` seconds to go out, then stop sending."""
        if self._timer is not None:
            self._timer.cancel()
        await self._sending.close(grace=timeout)

    def _dispatch(self, alert: Alert) -> None:
        if not alert.send:
            self._record(alert, "suppressed", "rate limit")
        elif not self._notifiers:
            self._record(alert, "unsent", "no notification URLs configured")
        elif self._sending.closed:
            self._record(alert, "unsent", "the daemon stopped before it could be sent")
        else:
            previous = self._chains.get(alert.service)
            chain = self._sending.start(self._send_after(previous, alert))
            self._chains[alert.service] = chain
            chain.add_done_callback(lambda done: self._forget(alert.service, done))

    async def _send_after(self, previous: asyncio.Task[None] | None, alert: Alert) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await self._send(alert)

    def _forget(self, service: str, chain: asyncio.Task[None]) -> None:
        if self._chains.get(service) is chain:
            del self._chains[service]

    async def _send(self, alert: Alert) -> None:
        delivered, how = await deliver(
            self._notifiers,
            self.config,
            title=f"heartwatch: {alert.title}",
            body=f"{alert.body}\n(host {self._host})",
            notify_type=_NOTIFY_TYPES[alert.kind],
        )
        self._record(alert, "sent" if delivered else "failed", how)

    def _record(self, alert: Alert, outcome: str, how: str) -> None:
        self.counts[alert.kind, outcome] += 1
        log = logger.error if outcome == "failed" else logger.info
        log("alert {} {}: {} ({})", outcome, alert.kind, alert.title, how)
        detail: dict[str, object] = {"alert": alert.kind, "outcome": outcome, "title": alert.title}
        if alert.downtime is not None:
            detail["downtime"] = round(alert.downtime, 3)
        self._journal.append(
            "alert", alert.service, alert.body, self._clock.wall_time(), detail=detail
        )


async def deliver(
    notifiers: list[apprise.Apprise],
    config: AlertsConfig,
    *,
    title: str,
    body: str,
    notify_type: str,
) -> tuple[bool, str]:
    """One alert through every notifier (one per URL), each send in a worker thread; a retry
    goes only to the URLs that failed (the others have it), after ``retry_delay``, doubling,
    ``retries`` times. ``(delivered everywhere, how)`` (the daemon's and the hub's alerts)."""
    pending = list(range(len(notifiers)))
    delay = config.retry_delay
    for attempt in range(config.retries + 1):
        if attempt:
            await asyncio.sleep(delay)
            delay *= 2
        sends = (_send_one(notifiers[i], i, title, body, notify_type, config) for i in pending)
        results = await asyncio.gather(*sends)
        pending = [index for index, sent in zip(pending, results, strict=True) if not sent]
        if not pending:
            return True, f"attempt {attempt + 1}"
        logger.warning(
            "alert {!r} not delivered through notify.urls{} (attempt {} of {})",
            title,
            pending,
            attempt + 1,
            config.retries + 1,
        )
    return False, f"not delivered through notify.urls{pending} after {config.retries + 1} attempts"


async def _send_one(
    notifier: apprise.Apprise,
    index: int,
    title: str,
    body: str,
    notify_type: str,
    config: AlertsConfig,
) -> bool:
    try:
        result = await asyncio.to_thread(
            notifier.notify,
            body=body,
            title=title,
            notify_type=notify_type,
            timeout=config.timeout,
        )
    except Exception as error:  # a plugin's bug must not end the sender
        name = type(error).__name__  # not its text: it may quote the URL, and its secret
        logger.warning("alert {}: notify.urls[{}] raised {}", title, index, name)
        return False
    return bool(result)


async def send_test(urls: list[str], timeout: float = 30.0) -> list[tuple[int, str, bool]]:
    """``heartwatch notify-test``: one message through each URL; ``(index, scheme, delivered)``."""
    results = []
    for index, url in enumerate(urls):
        notifier = create_apprise([url])
        delivered = await asyncio.to_thread(
            notifier.notify,
            body=f"A test message from heartwatch on {socket.gethostname()}.",
            title="heartwatch: test",
            notify_type="info",
            timeout=timeout,
        )
        scheme = url.partition("://")[0] if "://" in url else "?"  # never the URL: secrets
        results.append((index, scheme, bool(delivered)))
    return results
