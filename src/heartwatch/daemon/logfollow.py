"""Live logs, the driver: one follower per file, many viewers, batched frames, bounded memory.

``FileFollower`` keeps the file open and runs the pure ``Follow`` and ``LineAssembler``
(``follow.py``). It wakes on inotify events for the file's *directory* (so a rotated-away file
is still read to its end and a re-created one is seen at once), or polls when inotify is not
there. Each wake-up reads at most ``READ_BUDGET`` bytes before yielding to the loop, so a huge
write cannot monopolise the daemon.

``Viewer`` is one websocket's view: its filter, its format, and a queue bounded in lines. A
viewer that cannot keep up loses its oldest lines and is told how many ("skipped N lines"); the
follower and the other viewers never wait for it. Frames are batched: whatever piled up while
the previous frame was being sent goes out in the next one, up to ``MAX_FRAME_BYTES`` (well
under the 1 MiB a default websocket client accepts), so a quiet file sends each line at once
and a burst coalesces.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import re
from collections import deque
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from heartwatch.ansi import AnsiToHtml, strip_ansi
from heartwatch.follow import FileStat, Follow, LineAssembler, Read, Reopen, Truncated, Wait
from heartwatch.logpaths import LogPathError, open_log
from heartwatch.tailread import read_last_lines

READ_BUDGET = 1024 * 1024  # bytes per wake-up before letting the loop run other work
MAX_FRAME_BYTES = 512 * 1024  # a frame stays far below a default client's 1 MiB limit
POLL_INTERVAL = 0.25  # only without inotify


class Viewer:
    """One websocket's share of a followed file."""

    def __init__(self, *, grep: re.Pattern[str] | None, html: bool, max_lines: int) -> None:
        self.grep = grep
        self.max_lines = max_lines
        self.skipped = 0
        self._queue: deque[str] = deque()
        self._converter = AnsiToHtml() if html else None
        self._ready = asyncio.Event()

    @property
    def has_pending(self) -> bool:
        return bool(self._queue) or self.skipped > 0

    def receive_lines(self, lines: list[str]) -> None:
        grep, queue = self.grep, self._queue
        for line in lines:
            if grep is not None and not grep.search(strip_ansi(line)):
                continue
            if len(queue) >= self.max_lines:
                queue.popleft()
                self.skipped += 1
            queue.append(line)
        if queue:
            self._ready.set()

    def receive_marker(self, text: str) -> None:
        """Something the viewer must know about the file itself (truncated, rotated...)."""
        self._queue.append("\0" + text)  # NUL never survives line decoding: marks our markers
        self._ready.set()

    def render(self, lines: list[str]) -> str:
        """Lines as one frame's text, in the viewer's format."""
        out = []
        for line in lines:
            if line.startswith("\0"):
                marker = f"[heartwatch] {line[1:]}"
                if self._converter:
                    marker = f'<span class="hw-marker">{html.escape(marker)}</span>'
                out.append(marker)
            else:
                out.append(self._converter.convert(line) if self._converter else line)
        return "\n".join(out)

    async def next_frame(self) -> str:
        """Wait for lines, then take what piled up, up to the frame size."""
        await self._ready.wait()
        taken: list[str] = []
        if self.skipped:
            taken.append(f"\0skipped {self.skipped} lines (this viewer could not keep up)")
            self.skipped = 0
        size = 0
        queue = self._queue
        while queue and size < MAX_FRAME_BYTES:
            line = queue.popleft()
            size += len(line) + 1
            taken.append(line)
        if not queue:
            self._ready.clear()
        return self.render(taken)


class FileFollower:
    """Follows one file for every viewer of it."""

    def __init__(self, path: Path, flush_after: float, on_idle: Callable[[FileFollower], None]):
        self.path = path
        self.viewers: set[Viewer] = set()
        self._on_idle = on_idle
        self._loop = asyncio.get_running_loop()
        self._fd = -1
        self._follow = Follow(None, 0)
        self._assembler = LineAssembler(flush_after=flush_after)
        self._watch: asyncio.Task[None] | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._pump_scheduled = False

    def start(self) -> None:
        """Open the file (if it exists) positioned after its last complete line, and watch."""
        with contextlib.suppress(LogPathError):
            self._open(at_end=True)
        self._watch = asyncio.ensure_future(self._watch_changes())

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def initial_lines(self, count: int) -> list[str]:
        """The last ``count`` complete lines up to where following continues.

        Reading stops at the last newline before the follower's offset, so a partial line the
        follower still holds is not in them: it will come, once, when it is complete.
        """
        if self._fd < 0 or count <= 0:
            return []
        fd = self._fd
        tail = read_last_lines(
            lambda offset, size: os.pread(fd, size, offset), self._follow.offset, count
        )
        return [line.decode("utf-8", "replace").removesuffix("\r") for line in tail.lines]

    # -- reading ---------------------------------------------------------------------------

    def _open(self, at_end: bool) -> None:
        opened = open_log(self.path)
        self._fd = opened.fd
        info = os.fstat(opened.fd)
        stat = FileStat(info.st_dev, info.st_ino, info.st_size)
        start = 0
        if at_end and info.st_size:
            fd = opened.fd
            start = read_last_lines(
                lambda offset, size: os.pread(fd, size, offset), info.st_size, 1
            ).end
            if info.st_size - start > READ_BUDGET:
                start = info.st_size  # a huge unterminated tail: do not replay it
        self._follow.receive_opened(stat, start)

    def _stats(self) -> tuple[FileStat | None, FileStat | None]:
        open_file = None
        if self._fd >= 0:
            info = os.fstat(self._fd)
            open_file = FileStat(info.st_dev, info.st_ino, info.st_size)
        try:
            info = os.stat(self.path)
            at_path = FileStat(info.st_dev, info.st_ino, info.st_size)
        except OSError:
            at_path = None
        return open_file, at_path

    def pump(self) -> None:
        """Act on whatever changed, within the read budget; reschedule if more is left."""
        self._pump_scheduled = False
        budget = READ_BUDGET
        now = self._loop.time()
        while budget > 0:
            step = self._follow.next_step(*self._stats())
            if isinstance(step, Wait):
                break
            if isinstance(step, Read):
                size = min(step.end - step.start, budget)
                data = os.pread(self._fd, size, step.start)
                if not data:
                    break
                self._follow.receive_read(len(data))
                budget -= len(data)
                self._publish(self._assembler.receive(data, now))
            elif isinstance(step, Truncated):
                self._assembler.reset()
                self._mark(f"file truncated (lines after byte {step.lost_after} may be lost)")
            elif isinstance(step, Reopen):
                self._publish(self._assembler.flush())
                self._assembler.reset()
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
                    self._mark(step.reason)
                self._follow.receive_closed()
                try:
                    self._open(at_end=False)
                except LogPathError:
                    break  # gone again, or replaced by something not servable: wait
        else:
            self._schedule_pump()  # budget spent: let the loop breathe, then go on
        self._arm_flush()

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self.pump)

    def _arm_flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        deadline = self._assembler.flush_deadline()
        if deadline is not None:
            self._flush_timer = self._loop.call_at(deadline, self._flush_partial)

    def _flush_partial(self) -> None:
        self._flush_timer = None
        self._publish(self._assembler.flush())

    def _publish(self, lines: list[str]) -> None:
        if lines:
            for viewer in self.viewers:
                viewer.receive_lines(lines)

    def _mark(self, text: str) -> None:
        for viewer in self.viewers:
            viewer.receive_marker(text)

    # -- waking up -------------------------------------------------------------------------

    async def _watch_changes(self) -> None:
        try:
            from asyncinotify import Inotify, Mask

            inotify = Inotify()
            mask = (
                Mask.MODIFY
                | Mask.CREATE
                | Mask.MOVED_FROM
                | Mask.MOVED_TO
                | Mask.DELETE
                | Mask.CLOSE_WRITE
                | Mask.ATTRIB
            )
            inotify.add_watch(self.path.parent, mask)
        except (ImportError, OSError) as error:
            logger.info("live logs: polling {} ({})", self.path, error)
            while True:
                self.pump()
                await asyncio.sleep(POLL_INTERVAL)
        with inotify:
            self.pump()
            async for _event in inotify:
                self._schedule_pump()  # many events in one loop turn: one pump


class LogHub:
    """The followers, one per real path, shared by their viewers."""

    def __init__(self, flush_after: float) -> None:
        self.flush_after = flush_after
        self._followers: dict[Path, FileFollower] = {}

    def subscribe(self, path: Path, viewer: Viewer) -> FileFollower:
        follower = self._followers.get(path)
        if follower is None:
            follower = FileFollower(path, self.flush_after, self._forget)
            self._followers[path] = follower
            follower.start()
        follower.viewers.add(viewer)
        return follower

    def unsubscribe(self, follower: FileFollower, viewer: Viewer) -> None:
        follower.viewers.discard(viewer)
        if not follower.viewers:
            self._forget(follower)

    def close(self) -> None:
        for follower in list(self._followers.values()):
            follower.close()
        self._followers.clear()

    @property
    def followed(self) -> int:
        return len(self._followers)

    def _forget(self, follower: FileFollower) -> None:
        if self._followers.get(follower.path) is follower:
            del self._followers[follower.path]
        follower.close()
