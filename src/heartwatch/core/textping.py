"""The original log viewer's keepalive: a text ``ping`` after quiet, a ``pong`` within a bound.

That viewer predates websocket control frames in its design: the server sends the text message
``ping`` once the viewer has said nothing for ``interval`` seconds, and drops it if no message
comes back within ``answer_within`` seconds (the viewer answers ``pong``; anything it sends
counts as an answer, as anything proves it is there). Pure: the caller passes the time.
"""

from __future__ import annotations

from enum import Enum


class KeepaliveStep(Enum):
    PING = "ping"  # send the text "ping" now
    DROP = "drop"  # no answer in time: close the connection


class TextKeepalive:
    def __init__(self, interval: float, answer_within: float, now: float) -> None:
        if interval <= 0 or answer_within <= 0:
            raise ValueError("interval and answer_within must be positive")
        self.interval = interval
        self.answer_within = answer_within
        self.last_heard = now
        self.ping_sent_at: float | None = None

    def receive_message(self, now: float) -> None:
        """The viewer said something: it is there, and the quiet starts again."""
        self.last_heard = now
        self.ping_sent_at = None

    def next_deadline(self) -> float:
        """When ``step`` has something to do."""
        if self.ping_sent_at is not None:
            return self.ping_sent_at + self.answer_within
        return self.last_heard + self.interval

    def step(self, now: float) -> KeepaliveStep | None:
        """What is due at ``now``: a ping, a drop, or nothing (woken early)."""
        if now < self.next_deadline():
            return None
        if self.ping_sent_at is not None:
            return KeepaliveStep.DROP
        self.ping_sent_at = now
        return KeepaliveStep.PING
