"""When to restart a failing service again: exponential backoff and the crash-loop limit.

Pure and clock-free: every call takes ``now``. The first failure after a healthy stretch is
restarted at once; each further consecutive failure waits ``initial * factor ** (n - 1)``
seconds, capped at ``maximum``, spread by ``jitter`` so that a fleet does not restart in step.
A run of ``healthy_after`` seconds forgets the streak. More than ``max_restarts`` restarts inside
``window`` seconds means the service is crash-looping: the policy gives up.
"""

from __future__ import annotations

import random as _random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RestartRules:
    """A service's backoff and crash-loop limit, as configured."""

    initial: float = 1.0
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.1
    healthy_after: float = 60.0
    max_restarts: int = 5
    window: float = 300.0


@dataclass(frozen=True, slots=True)
class RestartDecision:
    """``delay`` seconds to wait before the restart, or ``None``: give up."""

    delay: float | None
    restarts_in_window: int


class RestartPolicy:
    def __init__(
        self, rules: RestartRules, *, random: Callable[[], float] = _random.random
    ) -> None:
        self.rules = rules
        self._random = random
        self._restarts: deque[float] = deque()
        self._streak = 0

    def receive_failure(self, now: float, healthy_since: float | None) -> RestartDecision:
        """Decide on a failure at ``now``; ``healthy_since`` is when the service last became ready.

        1. A service that stayed healthy for ``healthy_after`` starts a fresh streak.
        2. Restarts older than the window are forgotten.
        3. With ``max_restarts`` already inside the window, give up.
        4. Otherwise count this restart and return its backoff delay.
        """
        rules = self.rules
        if healthy_since is not None and now - healthy_since >= rules.healthy_after:
            self._streak = 0
        while self._restarts and now - self._restarts[0] > rules.window:
            self._restarts.popleft()
        if len(self._restarts) >= rules.max_restarts:
            return RestartDecision(None, len(self._restarts))
        self._restarts.append(now)
        delay = self._delay(self._streak)
        self._streak += 1
        return RestartDecision(delay, len(self._restarts))

    def reset(self) -> None:
        """Forget all history: a person asked for a start or restart."""
        self._restarts.clear()
        self._streak = 0

    def _delay(self, streak: int) -> float:
        if streak == 0:
            return 0.0
        # The exponent is bounded so that a long streak cannot overflow a float.
        rules = self.rules
        base = rules.initial * rules.factor ** min(streak - 1, 64)
        spread = 1.0 + rules.jitter * (2.0 * self._random() - 1.0)
        return min(rules.maximum, base * spread)
