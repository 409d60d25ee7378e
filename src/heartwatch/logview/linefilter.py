"""A live-log viewer's ``grep``: a regular expression, with a time limit per line. Pure.

Anyone allowed to read logs may send a pattern, and matching runs on the daemon's event loop,
against lines of up to 64 KiB: a pattern such as ``(a|aa)+$`` would take seconds on one line
and stall every deadline meanwhile. The ``regex`` module (the standard library's syntax, plus a
``timeout``) bounds each match; a pattern that needs longer is refused (``FilterTooSlow``) and
the viewer closed with the reason, instead of the daemon stalling for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from heartwatch.logview.ansi import strip_ansi

if TYPE_CHECKING:
    import regex

MAX_PATTERN = 200
MATCH_TIMEOUT = 0.02  # seconds per line


class FilterTooSlow(Exception):
    """The pattern took longer than the time limit on one line."""


class LineFilter:
    def __init__(self, pattern: str, timeout: float = MATCH_TIMEOUT) -> None:
        """Raise ``ValueError`` saying what is wrong with ``pattern``."""
        if len(pattern) > MAX_PATTERN:
            raise ValueError(f"grep is limited to {MAX_PATTERN} characters")
        import regex  # on first use: a daemon nobody greps does not carry it (3 MB)

        try:
            self._compiled: regex.Pattern[str] = regex.compile(pattern, regex.VERSION0)
        except regex.error as error:
            raise ValueError(f"bad regular expression: {error}") from None
        self.pattern = pattern
        self.timeout = timeout

    def matches(self, line: str) -> bool:
        """Whether ``line``, its colour codes stripped, matches (as ``re.search`` would)."""
        try:
            return self._compiled.search(strip_ansi(line), timeout=self.timeout) is not None
        except TimeoutError:
            raise FilterTooSlow(
                f"grep {self.pattern!r} took over {self.timeout * 1000:g} ms on one line"
            ) from None
