"""Live logs, the driver: one follower per file, many viewers, over the pure logview code.

``FileFollower`` keeps the file open and runs the pure ``Follow`` and ``LineAssembler``
(``follow.py``). It wakes on inotify events for the file's *directory* (so a rotated-away file
is still read to its end and a re-created one is seen at once), or polls when inotify is not
there. What it reads goes to its ``ReadPacer`` (``pacing.py``), which decides what enters the
``LineRing`` shared by every viewer (``linering.py``) and when reading waits for the fastest
viewer (the file is then the buffer); this driver only reads, wakes viewers and schedules.

``Viewer`` is one websocket's ``LogView`` (``viewer.py``: the cursor, frames up to
``MAX_FRAME_BYTES`` as sent, the skipped-lines marker), with the wake-up its sender waits on.
Each wake-up reads at most ``READ_BUDGET`` bytes before yielding to the loop, so a huge write
cannot monopolise the daemon; what reads more at once (finding where to start, a viewer's
initial lines: up to 8 MiB) runs in a worker thread, and the ordering holds across it (see
``LogHub.subscribe``).

A followed file is a ``LogTarget``: components below a root folder, opened (and re-opened after
a rotation) only with ``daemon/beneath.py``, so no symlink swapped in on the way is followed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from loguru import logger

from heartwatch.daemon.beneath import open_folder_of, open_log, stat_beneath
from heartwatch.daemon.oserrors import describe_os_error
from heartwatch.logview.follow import (
    MAX_LINE,
    Advance,
    FileStat,
    Follow,
    LineAssembler,
    Read,
    Reopen,
    Track,
    Truncated,
    Wait,
    clip_line,
)
from heartwatch.logview.linefilter import LineFilter
from heartwatch.logview.linering import Entry, LineRing, Marker
from heartwatch.logview.logpaths import LogPathError
from heartwatch.logview.pacing import ReadPacer
from heartwatch.logview.tailread import follow_from, read_last_lines
from heartwatch.logview.viewer import LogView

T = TypeVar("T")

READ_CHUNK = 64 * 1024  # one read; the ring's fullness is checked between reads
READ_BUDGET = 1024 * 1024  # bytes per wake-up before letting the loop run other work
HISTORY_BYTES = 16 * 1024 * 1024  # per followed file, beside [logs] viewer_buffer_lines
POLL_INTERVAL = 0.25  # only without inotify
INITIAL_BYTES = 8 * 1024 * 1024  # read backwards at most, for one viewer's initial lines
GOING_AWAY = 1001  # the close code for a viewer whose daemon is stopping


@dataclass(frozen=True, slots=True)
class LogTarget:
    """A file to follow: ``parts`` below the folder ``root`` (a real path, resolved once)."""

    root: Path
    parts: tuple[str, ...]

    @property
    def path(self) -> Path:
        return self.root.joinpath(*self.parts)


async def off_loop(work: Callable[[], T], discard: Callable[[T], None] | None = None) -> T:
    """``work()`` in a worker thread. If the caller is cancelled meanwhile, what ``work``
    returns later is given to ``discard`` (to close a descriptor it opened), not leaked."""
    future = asyncio.get_running_loop().run_in_executor(None, work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if discard is not None:
            keep = discard

            def dispose(done: asyncio.Future[T]) -> None:
                if not done.cancelled() and done.exception() is None:
                    keep(done.result())

            future.add_done_callback(dispose)
        raise


class Followed(Protocol):
    """What a viewer needs of its follower."""

    ring: LineRing

    @property
    def waiting(self) -> bool: ...

    def receive_progress(self) -> None: ...


class Viewer(LogView):
    """One websocket's view of a followed file (``LogView``), woken when lines come."""

    def __init__(self, *, grep: LineFilter | None, html: bool, inline_styles: bool = False) -> None:
        super().__init__(grep=grep, html=html, inline_styles=inline_styles)
        self._follower: Followed | None = None
        self._ready = asyncio.Event()

    def attach_to(self, follower: Followed, initial: list[str] | None) -> None:
        """``attach`` to the follower's ring, and tell it when frames go out."""
        self._follower = follower
        self.attach(follower.ring, initial)

    def receive_preface(self, lines: list[str]) -> None:
        super().receive_preface(lines)
        self.wake()

    def wake(self) -> None:
        self._ready.set()

    async def next_frame(self) -> str:
        """Wait for lines, then take what piled up, up to the frame size."""
        while True:
            await self._ready.wait()
            frame = self.take_frame()
            if not self.has_pending:
                self._ready.clear()
            if frame is not None:
                return frame
            self.receive_sent()  # all filtered out: nothing to send is as good as sent

    def receive_sent(self) -> bool:
        """The frame last taken is out: reading may go on for this viewer."""
        moved = super().receive_sent()
        # Only reading that waits needs to hear of it: each call looks at every viewer.
        if moved and self._follower is not None and self._follower.waiting:
            self._follower.receive_progress()
        return moved


class FileFollower:
    """Follows one file for every viewer of it."""

    def __init__(self, target: LogTarget, ring: LineRing, flush_after: float) -> None:
        self.target = target
        self.path = target.path  # for inotify and messages; never opened by this name
        self.ring = ring
        self.pacer: ReadPacer[Viewer] = ReadPacer(ring)  # what enters the ring, and when
        self.joining = 0  # subscribers waiting for it to start
        self._loop = asyncio.get_running_loop()
        self._fd = -1
        self._tracked_fds: list[int] = []  # files that took the name after the open one
        self._follow = Follow(None, 0)
        self._assembler = LineAssembler(flush_after=flush_after)
        self._starting: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._pump_scheduled = False
        self.closed = False
        self._inotify = False  # woken by inotify (else polled): a change always wakes it

    @property
    def viewers(self) -> set[Viewer]:
        return self.pacer.views

    @property
    def paused(self) -> bool:
        """Reading waits: the fastest viewer is a whole history behind."""
        return self.pacer.paused

    async def start(self, opened: int | None = None) -> None:
        """Open the file (if it exists) positioned after its last complete line, and watch.

        ``opened``: a descriptor of it, just opened safely by the caller (taken over: so the
        file checked is the file followed). Finding the position reads up to 1 MiB backwards:
        in a thread. Every caller waits for the same start; later ones' ``opened`` is closed.
        """
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start(opened))
        elif opened is not None:
            os.close(opened)
        await asyncio.shield(self._starting)

    async def _start(self, opened: int | None) -> None:
        target = self.target

        def open_positioned() -> tuple[int, FileStat, int] | None:
            fd = opened
            if fd is None:
                try:
                    fd = open_log(target.root, target.parts)
                except LogPathError:
                    return None  # not there (yet): following starts when it appears
            try:
                return (fd, *_position_at_end(fd))
            except BaseException:
                os.close(fd)
                raise

        got = await off_loop(open_positioned, lambda got: os.close(got[0]) if got else None)
        if self.closed:
            if got is not None:
                os.close(got[0])
            return
        if got is not None:
            self._fd = got[0]
            self._follow.receive_opened(got[1], got[2])
        self._watch = asyncio.ensure_future(self._watch_changes())

    def close(self) -> None:
        """Stop for good: a pump or timer already scheduled finds it closed and does nothing."""
        self.closed = True
        if self._starting is not None:
            self._starting.cancel()
        if self._watch is not None:
            self._watch.cancel()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for fd in self._tracked_fds:
            os.close(fd)
        self._tracked_fds.clear()

    def initial_lines(self, count: int) -> Callable[[], list[str]] | None:
        """How to read the last ``count`` complete lines up to where following continues, as
        of now (``None``: there are none). The reading may run in any thread, later: it
        reads a descriptor of its own up to the offset taken now.

        Reading stops at the last newline before the follower's offset, so a partial line the
        follower still holds is not in them: it will come, once, when it is complete. Lines
        are cut at 64 KiB as live ones are.
        """
        if self._fd < 0 or count <= 0:
            return None
        # Lines read but still held (waiting for room in the ring) reach a new viewer through
        # the ring: leave them out here, or it would get them twice.
        held = self.pacer.held_of_open_file()
        if held is None:
            return None  # held lines of an older file: no initial lines fit before them
        fd, end = os.dup(self._fd), self._follow.offset  # a rotation may close ours meanwhile

        def read() -> list[str]:
            try:
                lines = _last_lines(fd, end, count + held)
            finally:
                os.close(fd)
            return lines[: len(lines) - held] if held else lines

        return read

    @property
    def waiting(self) -> bool:
        """Lines read wait for room in the ring (and reading may wait for them)."""
        return self.pacer.waiting

    def receive_progress(self) -> None:
        """A viewer sent lines (or joined, or left): let held lines in, and read on if reading
        waited for it."""
        if self.closed:
            return
        released, resumed = self.pacer.receive_progress()
        self._wake_if(released)
        if resumed:
            self._schedule_pump()

    # -- reading ---------------------------------------------------------------------------

    def _open_from_start(self) -> None:
        """The file re-created at the name: from its first byte (no read needed)."""
        self._fd = self._open_log()
        info = os.fstat(self._fd)
        self._follow.receive_opened(FileStat(info.st_dev, info.st_ino, info.st_size), 0)

    def _stats(self) -> tuple[FileStat | None, FileStat | None]:
        open_file = None
        if self._fd >= 0:
            info = os.fstat(self._fd)
            open_file = FileStat(info.st_dev, info.st_ino, info.st_size)
        # What holds the name, reached as a safe open would (a symlink is itself, not what
        # it points to; a folder on the way swapped for one: nothing there).
        info_at_path = stat_beneath(self.target.root, self.target.parts)
        at_path = None
        if info_at_path is not None:
            at_path = FileStat(info_at_path.st_dev, info_at_path.st_ino, info_at_path.st_size)
        return open_file, at_path

    def pump(self) -> None:
        """Act on whatever changed, within the read budget; reschedule if more is left."""
        self._pump_scheduled = False
        if self.closed:
            return
        budget = READ_BUDGET
        now = self._loop.time()
        while budget > 0:
            # While reading waits (the fastest viewer's next frame resumes it), a new file is
            # still kept and a truncation still said: neither can wait.
            step = self._follow.next_step(*self._stats(), reading=self.pacer.may_read())
            if isinstance(step, Track):
                self._track()  # it may be renamed away soon
                continue
            if isinstance(step, Wait):
                break
            if isinstance(step, Read):
                size = min(step.end - step.start, budget, READ_CHUNK)
                data = os.pread(self._fd, size, step.start)
                if not data:
                    break
                self._follow.receive_read(len(data))
                budget -= len(data)
                self._publish(self._assembler.receive(data, now))
                if self._inotify and len(data) == step.end - step.start and not self._tracked_fds:
                    # Read to the size just seen: any later change brings another event, so
                    # the two system calls of another look would find nothing new now.
                    break
            elif isinstance(step, Truncated):
                self._assembler.reset()
                self._publish([Marker(step.reason)])
            elif isinstance(step, Advance):
                self._publish(self._assembler.finish())
                if self._fd >= 0:
                    os.close(self._fd)
                self._fd = self._tracked_fds.pop(0)
                self._follow.receive_advanced()
                self._publish([Marker(step.reason, new_file=True)])
            elif isinstance(step, Reopen):
                self._publish(self._assembler.finish())
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
                    self._publish([Marker(step.reason, new_file=True)])
                self._follow.receive_closed()
                try:
                    self._open_from_start()
                except LogPathError:
                    break  # gone again, or replaced by something not servable: wait
        else:
            self._schedule_pump()  # budget spent: let the loop breathe, then go on
        self._arm_flush()

    def _track(self) -> None:
        """Open the file now at the path and keep it for later.

        One that cannot be served (no permission, a symlink or FIFO took the name, a folder on
        the way was swapped) is said once and not tried again while it holds the name; the old
        file is still read to its end.
        """
        try:
            fd = self._open_log()
        except LogPathError as error:
            _, at_path = self._stats()
            if at_path is not None:
                self._follow.receive_track_failed(at_path)
                self._publish([Marker(f"the new file cannot be followed: {error.reason}")])
            return
        info = os.fstat(fd)
        kept = len(self._follow.tracked)
        self._follow.receive_tracked(FileStat(info.st_dev, info.st_ino, info.st_size))
        if len(self._follow.tracked) > kept:
            self._tracked_fds.append(fd)
        else:
            os.close(fd)

    def _open_log(self) -> int:
        """The file at the name, opened below the root in one step (``beneath.open_log``):
        a folder on the way swapped for a symlink since the viewer connected is refused."""
        return open_log(self.target.root, self.target.parts)

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled and not self.closed:
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
        """Show a line still missing its newline: its writer paused mid-line.

        Not when the rest may simply be unread yet (reading waits for the viewers, or its
        budget ran out): the pump that reads on arms this timer again.
        """
        self._flush_timer = None
        if self.closed or self.pacer.paused or self._pump_scheduled or self._unread():
            return
        self._publish(self._assembler.flush())

    def _unread(self) -> bool:
        return self._fd >= 0 and os.fstat(self._fd).st_size > self._follow.offset

    def _publish(self, entries: Sequence[Entry]) -> None:
        self._wake_if(self.pacer.receive_entries(entries))

    def _wake_if(self, released: int) -> None:
        if released:
            for viewer in self.viewers:
                viewer.wake()

    # -- waking up -------------------------------------------------------------------------

    def _watch_folder(self, inotify: Any, mask: Any) -> None:
        """Watch the file's folder as reached safely: through its descriptor's
        ``/proc/self/fd`` link (a folder on the way swapped for a symlink must not leave us
        watching the one it points to), else by name. Wake-ups only: nothing is read by it."""
        try:
            fd = open_folder_of(self.target.root, self.target.parts)
        except (OSError, LogPathError):
            inotify.add_watch(self.path.parent, mask)
            return
        try:
            by_fd = Path(f"/proc/self/fd/{fd}")
            inotify.add_watch(by_fd if by_fd.is_dir() else self.path.parent, mask)
        finally:
            os.close(fd)

    async def _watch_changes(self) -> None:
        inotify: Any = None
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
            self._watch_folder(inotify, mask)
            self._inotify = True
        except (ImportError, OSError) as error:
            if inotify is not None:
                inotify.close()  # the watch could not be added: do not keep its descriptors
            why = describe_os_error(error) if isinstance(error, OSError) else str(error)
            logger.info("live logs: polling {} (no inotify watch: {})", self.path, why)
            while not self.closed:
                self.pump()
                await asyncio.sleep(POLL_INTERVAL)
            return
        with inotify:
            self.pump()
            async for _event in inotify:
                self._schedule_pump()  # many events in one loop turn: one pump


class LogHub:
    """The followers, one per file (root and components below it), shared by their viewers."""

    def __init__(
        self, flush_after: float, history_lines: int, history_bytes: int = HISTORY_BYTES
    ) -> None:
        self.flush_after = flush_after
        self.history_lines = history_lines
        self.history_bytes = history_bytes
        self._followers: dict[LogTarget, FileFollower] = {}

    async def subscribe(
        self, target: LogTarget, viewer: Viewer, initial_lines: int, opened: int | None = None
    ) -> FileFollower:
        """Follow ``target`` for ``viewer``, which gets the last ``initial_lines`` lines first.

        ``opened``: a descriptor of the file the caller just opened safely (taken over, used
        if this starts the follower). Ordering: the viewer is positioned at the follower's
        offset before this returns (so before its handshake completes); the initial lines up
        to that offset are read in a thread meanwhile and go out before any later line.
        """
        follower = self._followers.get(target)
        if follower is None:
            ring = LineRing(self.history_lines, self.history_bytes)
            follower = FileFollower(target, ring, self.flush_after)
            self._followers[target] = follower
        follower.joining += 1  # not forgotten while it starts for this one
        try:
            await follower.start(opened)
        except BaseException:
            follower.joining -= 1
            if not follower.viewers and not follower.joining:
                self._forget(follower)
            raise
        follower.joining -= 1
        if follower.closed:
            raise LogPathError(GOING_AWAY, "the daemon is stopping")
        try:
            read = follower.initial_lines(initial_lines)
        except BaseException:
            if not follower.viewers and not follower.joining:
                self._forget(follower)
            raise
        viewer.attach_to(follower, None if read is not None else [])
        follower.viewers.add(viewer)
        # It sent nothing yet, so it is as far ahead as can be: reading that waited for a
        # stalled viewer goes on for it at once.
        follower.receive_progress()
        if read is not None:
            try:
                viewer.receive_preface(await off_loop(read))
            except BaseException:
                self.unsubscribe(follower, viewer)
                raise
        return follower

    def unsubscribe(self, follower: FileFollower, viewer: Viewer) -> None:
        follower.viewers.discard(viewer)
        if not follower.viewers and not follower.joining:
            self._forget(follower)
        else:
            follower.receive_progress()  # the one that left may have held reading back

    def close(self) -> None:
        for follower in list(self._followers.values()):
            follower.close()
        self._followers.clear()

    async def aclose(self) -> None:
        """``close``, then wait until every follower's tasks have ended."""
        followers = list(self._followers.values())
        self.close()
        tasks = [
            task
            for follower in followers
            for task in (follower._starting, follower._watch)
            if task is not None
        ]
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, follower: FileFollower) -> None:
        if self._followers.get(follower.target) is follower:
            del self._followers[follower.target]
        follower.close()


def _position_at_end(fd: int) -> tuple[FileStat, int]:
    """The file's identity and where following starts: after its last complete line."""
    info = os.fstat(fd)
    start = follow_from(
        lambda offset, size: os.pread(fd, size, offset), info.st_size, max_partial=READ_BUDGET
    )
    return FileStat(info.st_dev, info.st_ino, info.st_size), start


def read_initial_lines(fd: int, count: int) -> list[str]:
    """The last ``count`` complete lines of the open file ``fd``, which it closes. Blocking
    (up to ``INITIAL_BYTES`` read): for a worker thread."""
    try:
        return _last_lines(fd, os.fstat(fd).st_size, count)
    finally:
        os.close(fd)


def _last_lines(fd: int, end: int, count: int) -> list[str]:
    """The last ``count`` complete lines before offset ``end`` of ``fd``, decoded and cut."""
    if count <= 0:
        return []
    tail = read_last_lines(
        lambda offset, size: os.pread(fd, size, offset), end, count, max_bytes=INITIAL_BYTES
    )
    return [
        clip_line(line.decode("utf-8", "replace").removesuffix("\r"), MAX_LINE)
        for line in tail.lines
    ]
