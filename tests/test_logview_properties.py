"""Properties of live logs that docs/logs.md states, checked on generated runs (hypothesis).

The ring and its pacing: a viewer that keeps up gets every line, the fastest viewer never
skips, every viewer gets each entry once and in order (or is told exactly how many it
skipped), and memory stays bounded (the history's entries and bytes, plus one read).

Following: whatever the writes, renames and truncations, the follower's steps deliver every
line written, once and in order, except what a truncation cut before it was read (and then
it says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from heartwatch.logview.follow import (
    Advance,
    FileStat,
    Follow,
    LineAssembler,
    Read,
    Reopen,
    Track,
    Truncated,
    Wait,
)
from heartwatch.logview.linering import Entry, LineRing, Marker, entry_size
from heartwatch.logview.pacing import ReadPacer
from heartwatch.logview.viewer import SKIPPED_TEXT, LogView

SKIPPED = re.compile(re.escape("[heartwatch] " + SKIPPED_TEXT).replace(r"\{\}", r"(\d+)"))

# -- the ring and its pacing -----------------------------------------------------------------


@dataclass(eq=False)
class Watcher:
    """A viewer in the run: its view, whether it sends each frame at once, what it got."""

    view: LogView
    prompt: bool  # its socket takes every frame at once: it keeps up
    joined: int  # the ring's end when it came: its first entry
    got: list[str | int] = field(default_factory=list)  # rendered entries; an int: N skipped
    ever_behind: bool = False  # it was, at some point, not the fastest


Op = tuple[str, int]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.integers(1, 30)),
        st.tuples(st.just("send"), st.integers(0, 5)),
        st.tuples(st.just("join"), st.integers(0, 1)),
        st.tuples(st.just("leave"), st.integers(0, 5)),
    ),
    max_size=60,
)


class PacedRun:
    """The driver's glue over the pure pacing, as ``daemon/logfollow.py`` does it, with every
    viewer waiting for lines taking them as soon as it runs (the event loop is fair)."""

    def __init__(self, capacity: int, max_bytes: int, frame_bytes: int) -> None:
        self.pacer: ReadPacer[LogView] = ReadPacer(LineRing(capacity, max_bytes))
        self.frame_bytes = frame_bytes
        self.watchers: list[Watcher] = []
        self.written: list[Entry] = []  # every entry read, in order: entry n is numbered n
        self.largest_read = 0  # entries
        self.largest_read_bytes = 0
        self.largest_entry = 0

    def read(self, count: int, data: st.DataObject) -> None:
        if not self.pacer.may_read():
            return  # reading waits: the file is the buffer
        entries: list[Entry] = []
        for _ in range(count):
            number = len(self.written) + len(entries)
            if data.draw(st.integers(0, 9)) == 0:
                entries.append(Marker(f"notice {number}"))
            else:
                entries.append(f"{number:05d} " + "x" * data.draw(st.integers(0, 40)))
        self.written += entries
        sizes = [entry_size(entry) for entry in entries]
        self.largest_read = max(self.largest_read, len(entries))
        self.largest_read_bytes = max(self.largest_read_bytes, sum(sizes))
        self.largest_entry = max([self.largest_entry, *sizes])
        if self.pacer.receive_entries(entries):
            # Let in only up to a history beyond the fastest viewer (the last may overshoot
            # the bytes); the rest waits.
            ring, fastest = self.pacer.ring, self.pacer.fastest()
            assert ring.end - fastest <= ring.capacity
            assert ring.bytes_from(fastest) < ring.max_bytes + self.largest_entry

    def join(self, prompt: bool) -> None:
        view = LogView(grep=None, html=False, max_frame_bytes=self.frame_bytes)
        view.attach(self.pacer.ring, [])
        self.watchers.append(Watcher(view, prompt, self.pacer.ring.end))
        self.pacer.views.add(view)
        self.pacer.receive_progress()

    def leave(self, index: int) -> None:
        if self.watchers:
            watcher = self.watchers.pop(index % len(self.watchers))
            self.pacer.views.discard(watcher.view)
            self.pacer.receive_progress()

    def send(self, watcher: Watcher) -> None:
        if watcher.view.receive_sent() and self.pacer.waiting:
            self.pacer.receive_progress()

    def run_viewers(self) -> None:
        """Each viewer not mid-send takes what is pending; prompt ones send at once."""
        moved = True
        while moved:
            moved = False
            for watcher in self.watchers:
                view = watcher.view
                if view.in_flight or not view.has_pending:
                    continue
                frame = view.take_frame()
                moved = True
                if frame is not None:
                    for text in frame.split("\n"):
                        skipped = SKIPPED.fullmatch(text)
                        watcher.got.append(int(skipped[1]) if skipped else text)
                if frame is None or watcher.prompt:
                    self.send(watcher)

    def note_who_is_behind(self) -> None:
        fastest = self.pacer.fastest()
        for watcher in self.watchers:
            if watcher.view.sent < fastest:
                watcher.ever_behind = True

    def check_bounds(self) -> None:
        """A history, plus one read: held, or in the ring for a viewer that has just sent a
        frame and not yet taken the next (it runs next: its lines are kept for it)."""
        ring = self.pacer.ring
        assert len(ring) <= ring.capacity + self.largest_read
        history_bytes = ring.max_bytes + self.largest_entry  # the last one let in may overshoot
        assert ring.bytes_from(ring.start) <= history_bytes + self.largest_read_bytes
        assert len(self.pacer.held) <= self.largest_read

    def expected(self, entry: Entry) -> str:
        return f"[heartwatch] {entry.text}" if isinstance(entry, Marker) else entry


@settings(max_examples=300)
@given(
    capacity=st.integers(1, 12),
    max_bytes=st.integers(1, 300),
    frame_bytes=st.integers(1, 200),
    run=ops,
    data=st.data(),
)
def test_pacing_keeps_its_promises(
    capacity: int, max_bytes: int, frame_bytes: int, run: list[Op], data: st.DataObject
) -> None:
    paced = PacedRun(capacity, max_bytes, frame_bytes)
    paced.join(prompt=True)
    for kind, argument in run:
        if kind == "read":
            paced.read(argument, data)
        elif kind == "join":
            paced.join(prompt=bool(argument))
        elif kind == "leave":
            paced.leave(argument)
        elif paced.watchers:
            paced.send(paced.watchers[argument % len(paced.watchers)])
        paced.note_who_is_behind()
        paced.run_viewers()
        paced.note_who_is_behind()
        paced.check_bounds()
    # The end: every viewer's socket drains, reading goes on until nothing is held.
    for _ in range(len(paced.written) + 2):
        for watcher in paced.watchers:
            paced.send(watcher)
        paced.run_viewers()
        if paced.pacer.may_read() and not any(w.view.has_pending for w in paced.watchers):
            break
    assert not paced.pacer.held or not paced.watchers  # (without viewers, nothing is followed)
    for watcher in paced.watchers:
        expanded: list[str | None] = []
        for item in watcher.got:
            expanded += [None] * item if isinstance(item, int) else [item]
        wanted = [paced.expected(entry) for entry in paced.written[watcher.joined :]]
        assert len(expanded) == len(wanted)
        # Each entry once and in order, or counted in a "skipped N" exactly where it was.
        assert all(got is None or got == want for got, want in zip(expanded, wanted, strict=True))
        assert watcher.view.skipped_total == expanded.count(None)
        if watcher.prompt or not watcher.ever_behind:
            assert watcher.view.skipped_total == 0, "a viewer that kept up skipped"


# -- following -------------------------------------------------------------------------------


@dataclass
class Disk:
    """Files by inode; the name holds one of them or nothing; a writer appends to one."""

    files: dict[int, bytearray] = field(default_factory=dict)
    at_name: int | None = None
    writer: int | None = None
    lines: dict[int, list[tuple[str, int]]] = field(default_factory=dict)  # line, its end

    def stat(self, ino: int | None) -> FileStat | None:
        return None if ino is None else FileStat(1, ino, len(self.files[ino]))

    def create(self) -> int:
        ino = len(self.files) + 1
        self.files[ino], self.lines[ino] = bytearray(), []
        self.at_name = ino
        return ino


class Following:
    """The driver's loop (``FileFollower.pump``) over the pure ``Follow`` and
    ``LineAssembler``, on a ``Disk``: what the follower's steps deliver."""

    def __init__(self, disk: Disk, max_tracked: int) -> None:
        self.disk = disk
        self.follow = Follow(None, 0, max_tracked=max_tracked)
        self.assembler = LineAssembler()
        self.open: int | None = None
        self.kept: list[int] = []  # the files tracked, opened, not read yet
        self.delivered: list[Entry] = []

    def pump(self, reading: bool, chunk: int) -> None:
        disk = self.disk
        while True:
            step = self.follow.next_step(
                disk.stat(self.open), disk.stat(disk.at_name), reading=reading
            )
            if isinstance(step, Track):
                assert disk.at_name is not None
                kept = len(self.follow.tracked)
                self.follow.receive_tracked(disk.stat(disk.at_name))  # type: ignore[arg-type]
                if len(self.follow.tracked) > kept:
                    self.kept.append(disk.at_name)
            elif isinstance(step, Wait):
                return
            elif isinstance(step, Read):
                assert self.open is not None
                data = bytes(disk.files[self.open][step.start : step.start + chunk])
                self.follow.receive_read(len(data))
                self.delivered += self.assembler.receive(data, 0.0)
            elif isinstance(step, Truncated):
                self.assembler.reset()
                self.delivered.append(Marker(step.reason))
            elif isinstance(step, Advance):
                self.delivered += self.assembler.finish()
                self.open = self.kept.pop(0)
                self.follow.receive_advanced()
                self.delivered.append(Marker(step.reason, new_file=True))
            elif isinstance(step, Reopen):
                self.delivered += self.assembler.finish()
                if self.open is not None:
                    self.open = None
                    self.delivered.append(Marker(step.reason, new_file=True))
                self.follow.receive_closed()
                if disk.at_name is None:
                    return
                self.open = disk.at_name
                self.follow.receive_opened(disk.stat(self.open), 0)  # type: ignore[arg-type]

    def consumed(self, ino: int) -> int:
        """How much of file ``ino`` the follower has read."""
        return self.follow.offset if ino == self.open else 0


disk_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(1, 5)),
        st.tuples(st.just("rename"), st.just(0)),
        st.tuples(st.just("reopen"), st.just(0)),
        st.tuples(st.just("truncate"), st.just(0)),
        st.tuples(st.just("read"), st.integers(1, 60)),
    ),
    max_size=50,
)


@settings(max_examples=300)
@given(run=disk_ops, max_tracked=st.integers(1, 3), data=st.data())
def test_following_loses_and_repeats_no_line(
    run: list[Op], max_tracked: int, data: st.DataObject
) -> None:
    """Writes, rename rotations (the writer moves to a new file later), copytruncates, and
    reads of any size, with reading waiting (for viewers) at any time: every line written is
    delivered once, in order, except what a truncation cut before it was read; a truncation
    of what was read is said."""
    disk = Disk()
    follower = Following(disk, max_tracked)
    written: list[str] = []
    lost: set[str] = set()
    said = 0  # truncations the follower must announce
    for kind, argument in run:
        new_generation = kind == "reopen" or (kind == "write" and disk.writer is None)
        if new_generation and len(follower.follow.tracked) >= max_tracked:
            follower.pump(reading=True, chunk=1 << 20)  # else generations in between are lost
        if kind == "write":
            if disk.writer is None:
                disk.writer = disk.at_name if disk.at_name is not None else disk.create()
            for _ in range(argument):
                line = f"L{len(written)} " + "y" * data.draw(st.integers(0, 12))
                written.append(line)
                disk.files[disk.writer] += f"{line}\n".encode()
                disk.lines[disk.writer].append((line, len(disk.files[disk.writer])))
        elif kind == "rename":
            disk.at_name = None  # the writer keeps writing to the file renamed away
        elif kind == "reopen":
            disk.writer = disk.at_name if disk.at_name is not None else disk.create()
        elif kind == "truncate" and disk.at_name is not None:
            ino, read = disk.at_name, follower.consumed(disk.at_name)
            lost.update(line for line, end in disk.lines[ino] if end > read)
            said += read > 0 and ino == follower.open
            disk.files[ino].clear()
            disk.lines[ino] = []
        elif kind == "read":
            follower.pump(reading=True, chunk=argument)
            continue
        # Every change wakes the follower (inotify); reading may be waiting for its viewers
        # (lines it read are held: with no file open, none are).
        reading = data.draw(st.booleans()) or follower.open is None
        follower.pump(reading=reading, chunk=data.draw(st.integers(1, 60)))
    follower.pump(reading=True, chunk=1 << 20)
    lines = [entry for entry in follower.delivered if isinstance(entry, str)]
    assert lines == [line for line in written if line not in lost]
    notices = [e for e in follower.delivered if isinstance(e, Marker) and not e.new_file]
    assert len(notices) == said
