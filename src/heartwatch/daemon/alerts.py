"""Alerts, the driver: the rules' decisions (``alerting.py``) sent through apprise.

A journal listener. Transitions go through ``AlertRules``; each alert it returns is journaled
(kind ``alert``: sent, failed or suppressed) and, unless suppressed, queued for one sender
task. apprise is synchronous and talks to the network, so every send runs in a worker thread:
the event loop never waits for DingTalk. A failed send is tried again after ``retry_delay``,
doubling, ``retries`` times, then logged as failed. Notification URLs carry secrets: they are
never logged; apprise's own log is kept to errors, which name the service, not the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from loguru import logger

from heartwatch.alerting import Alert, AlertRules
from heartwatch.config import NotifyConfig
from heartwatch.journal import Journal, JournalEntry

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
        config: NotifyConfig,
        journal: Journal,
        wall_clock: Callable[[], float],
        *,
        host: str | None = None,
    ) -> None:
        self.config = config
        self.rules = AlertRules(rate_limit=config.rate_limit, rate_window=config.rate_window)
        self.counts: Counter[tuple[str, str]] = Counter()  # (alert kind, outcome) -> count
        self._journal = journal
        self._wall_clock = wall_clock
        self._host = host or socket.gethostname()
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Alert] = asyncio.Queue()
        self._notifier: apprise.Apprise | None = None
        self._sender: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.config.urls:
            self._notifier = create_apprise(self.config.urls)
            self._sender = asyncio.ensure_future(self._send_forever())

    def receive(self, entry: JournalEntry) -> None:
        """A journal listener: transitions may call for alerts."""
        if entry.kind != "transition" or entry.service is None or entry.state is None:
            return
        failure = bool(entry.detail and entry.detail.get("failure"))
        for alert in self.rules.receive_transition(
            entry.service, entry.state, entry.reason, failure, entry.at
        ):
            # Journal it in a later loop turn: every listener sees this transition first.
            self._loop.call_soon(self._dispatch, alert)

    async def close(self, timeout: float = 5.0) -> None:
        """Give queued alerts ``timeout`` seconds to go out, then stop sending."""
        if self._sender is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender

    def _dispatch(self, alert: Alert) -> None:
        if not alert.send:
            self._record(alert, "suppressed", "rate limit")
        elif self._notifier is None:
            self._record(alert, "unsent", "no notification URLs configured")
        else:
            self._queue.put_nowait(alert)

    async def _send_forever(self) -> None:
        while True:
            alert = await self._queue.get()
            try:
                await self._send(alert)
            finally:
                self._queue.task_done()

    async def _send(self, alert: Alert) -> None:
        assert self._notifier is not None
        delay = self.config.retry_delay
        body = f"{alert.body}\n(host {self._host})"
        for attempt in range(self.config.retries + 1):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
            try:
                result = await asyncio.to_thread(
                    self._notifier.notify,
                    body=body,
                    title=f"heartwatch: {alert.title}",
                    notify_type=_NOTIFY_TYPES[alert.kind],
                    timeout=self.config.timeout,
                )
                sent = bool(result)
            except Exception as error:  # a plugin's bug must not end the sender
                logger.warning("alert {}: sending raised {}", alert.title, type(error).__name__)
                sent = False
            if sent:
                self._record(alert, "sent", f"attempt {attempt + 1}")
                return
            logger.warning(
                "alert {!r} not delivered to every URL (attempt {} of {})",
                alert.title,
                attempt + 1,
                self.config.retries + 1,
            )
        self._record(alert, "failed", f"{self.config.retries + 1} attempts")

    def _record(self, alert: Alert, outcome: str, how: str) -> None:
        self.counts[alert.kind, outcome] += 1
        log = logger.error if outcome == "failed" else logger.info
        log("alert {} {}: {} ({})", outcome, alert.kind, alert.title, how)
        detail: dict[str, object] = {"alert": alert.kind, "outcome": outcome, "title": alert.title}
        if alert.downtime is not None:
            detail["downtime"] = round(alert.downtime, 3)
        self._journal.append("alert", alert.service, alert.body, self._wall_clock(), detail=detail)


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
        results.append((index, url.partition("://")[0], bool(delivered)))
    return results
