"""Is a consumer keeping up with its queue? The queue-stall rule, pure and clock-free.

A consumer can beat happily while its queue fills up: it is stuck on one item, or consuming
from the wrong queue. The rule: while the queue holds ready messages, its depth must go down
at least once every ``stalled_after`` seconds. An empty queue is never stalled. A failed
depth reading (broker down) says nothing about the consumer: it is neither progress nor stall,
and is reported separately.
"""

from __future__ import annotations

from heartwatch.core.units import format_duration


class QueueStall:
    def __init__(self, stalled_after: float) -> None:
        self.stalled_after = stalled_after
        self.depth: int | None = None
        self.progress_at: float | None = None  # last time it was empty or went down
        self.broker_problem: str | None = None

    def reset(self, now: float) -> None:
        """A new run of the consumer: it gets a full ``stalled_after`` to make progress."""
        self.progress_at = now

    def receive_depth(self, depth: int, now: float) -> None:
        self.broker_problem = None
        if self.progress_at is None or self.depth is None or depth == 0 or depth < self.depth:
            self.progress_at = now
        self.depth = depth

    def receive_broker_problem(self, problem: str) -> None:
        self.broker_problem = problem

    def deadline(self) -> float | None:
        """When the queue counts as stalled if its depth does not go down before then."""
        if not self.depth or self.progress_at is None or self.broker_problem is not None:
            return None
        return self.progress_at + self.stalled_after

    def stalled(self, now: float) -> str | None:
        """Why the consumer is stalled at ``now``, or ``None``."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        assert self.progress_at is not None
        waited = format_duration(now - self.progress_at)
        return f"queue not going down for {waited} ({self.depth} ready)"
