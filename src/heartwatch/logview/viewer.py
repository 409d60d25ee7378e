"""One viewer of a followed file: a cursor into the shared ring, a filter, a format. Pure.

The viewer takes frames: everything that piled up since its previous frame, rendered (plain
text, or HTML with colours as spans), filtered by its ``grep``, joined by newlines, up to
``max_frame_bytes`` as sent (UTF-8, after escaping). What does not fit waits as the *carry*,
first in the next frame. The file's last lines when it connected (the *preface*) come before
anything from the ring; while they are being read (``attach(..., None)``), nothing is taken.

A viewer the ring's history moved past is told ``[heartwatch] skipped N lines`` and goes on
from the oldest entry kept. Two positions say how far it is: ``cursor``, the next entry to
take, and ``sent``, the cursor after the last frame that went out (``receive_sent``). Reading
is paced by what viewers have *sent* (``pacing.py``): a frame taken but stuck in a stalled
socket does not count. Waiting for lines and sending frames belong to the driver
(``daemon/logfollow.py``).
"""

from __future__ import annotations

import html

from heartwatch.logview.ansi import AnsiToHtml
from heartwatch.logview.linefilter import LineFilter
from heartwatch.logview.linering import Entry, LineRing, Marker, utf8_size

MAX_FRAME_BYTES = 512 * 1024  # a frame stays far below a default client's 1 MiB limit
SKIPPED_TEXT = "skipped {} lines (this viewer could not keep up)"


class LogView:
    """A cursor into a ``LineRing`` with a filter and a format; frames out."""

    def __init__(
        self,
        *,
        grep: LineFilter | None,
        html: bool,
        inline_styles: bool = False,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self.grep = grep
        self.max_frame_bytes = max_frame_bytes
        self.skipped_total = 0
        self._converter = AnsiToHtml(inline=inline_styles) if html else None
        self._preface: list[Entry] = []  # the initial lines, sent before the ring's
        self._carry: str | None = None  # rendered, but did not fit in the previous frame
        self._ring: LineRing | None = None
        self.cursor = 0  # the next ring entry to take
        self.sent = 0  # the entries before it are out: the last frame taken was sent
        self._taken = 0  # the cursor after the last frame taken
        self.in_flight = False  # a frame was taken and is being sent
        self._awaiting_preface = False  # initial lines are being read: nothing goes before

    def attach(self, ring: LineRing, initial: list[str] | None) -> None:
        """Start at the ring's end, after ``initial`` lines of what came before it;
        ``None``: they are being read, and come (``receive_preface``) before anything else."""
        self._ring = ring
        self.cursor = self.sent = self._taken = ring.end
        self._awaiting_preface = initial is None
        if initial is not None:
            self.receive_preface(initial)

    def receive_preface(self, lines: list[str]) -> None:
        self._preface.extend(lines)
        self._awaiting_preface = False

    @property
    def has_pending(self) -> bool:
        """Lines not yet taken: the initial ones, or the ring's beyond the cursor."""
        if self._awaiting_preface:
            return False
        ring = self._ring
        return bool(self._preface or self._carry) or (ring is not None and self.cursor < ring.end)

    def take_frame(self) -> str | None:
        """The next frame's text, or ``None`` if nothing (that passes the filter) is waiting.
        A frame taken is in flight until ``receive_sent``."""
        if self._awaiting_preface:
            return None
        parts: list[str] = []
        size = 0
        if self._carry is not None:
            parts.append(self._carry)
            size = utf8_size(self._carry) + 1
            self._carry = None
        if self._preface:
            taken = 0
            for entry in self._preface:
                size = self._add(parts, entry, size)
                taken += 1
                if self._carry is not None:
                    break
            del self._preface[:taken]
        elif self._ring is not None:
            self._take_from_ring(parts, size, self._ring)
        if not parts:
            return None
        self.in_flight = True
        return "\n".join(parts)

    def receive_sent(self) -> bool:
        """The frame last taken is out (or nothing was to send); whether ``sent`` moved, which
        reading that waits for this viewer needs to hear."""
        self.in_flight = False
        if self.sent == self._taken:
            return False
        self.sent = self._taken
        return True

    def render(self, entry: Entry) -> str | None:
        """An entry as the viewer sees it, or ``None`` if its filter drops it."""
        if isinstance(entry, Marker):
            marker = f"[heartwatch] {entry.text}"
            if self._converter is None:
                return marker
            return f'<span class="hw-marker">{html.escape(marker)}</span>'
        if self.grep is not None and not self.grep.matches(entry):
            return None
        return entry if self._converter is None else self._converter.convert(entry)

    def _take_from_ring(self, parts: list[str], size: int, ring: LineRing) -> None:
        if self.cursor < ring.start:
            lost = ring.start - self.cursor
            self.skipped_total += lost
            self.cursor = ring.start
            size = self._add(parts, Marker(SKIPPED_TEXT.format(lost)), size)
        end = ring.end
        while self.cursor < end and self._carry is None:
            size = self._add(parts, ring[self.cursor], size)
            self.cursor += 1
        self._taken = self.cursor

    def _add(self, parts: list[str], entry: Entry, size: int) -> int:
        """Render ``entry`` into ``parts``, or into the carry if the frame is full."""
        rendered = self.render(entry)
        if rendered is None:
            return size
        cost = utf8_size(rendered) + 1
        if parts and size + cost > self.max_frame_bytes:
            self._carry = rendered
            return size
        parts.append(rendered)
        return size + cost
