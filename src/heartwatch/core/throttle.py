"""Rate limiting for log lines about bad input: say it once, then say how often it recurred.

Pure: the caller passes ``now``. A peer that sends a million broken lines costs a million
counter increments and one log line per interval, not a million log lines.
"""

from __future__ import annotations


class LogThrottle:
    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def admit(self, key: str, now: float) -> int | None:
        """``None``: stay quiet. Otherwise log now; the number says how many were suppressed."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)
