"""Live-log viewers over the shared ring: batching, bounds, skip markers, filters, formats."""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import pytest

from heartwatch.daemon.logfollow import LogHub, LogTarget, Viewer
from heartwatch.logview.linefilter import FilterTooSlow, LineFilter
from heartwatch.logview.linering import Entry, LineRing, Marker
from heartwatch.logview.pacing import ReadPacer
from heartwatch.logview.viewer import MAX_FRAME_BYTES


class Source:
    """A follower without a file: the real pacing over a ring, progress reports counted."""

    def __init__(self, capacity: int = 1000, max_bytes: int = 1 << 30) -> None:
        self.ring = LineRing(capacity, max_bytes)
        self.pacer: ReadPacer[Viewer] = ReadPacer(self.ring)
        self.progress = 0

    @property
    def waiting(self) -> bool:
        return self.pacer.waiting

    def receive_progress(self) -> None:
        self.progress += 1
        self.pacer.receive_progress()

    def publish(self, entries: Sequence[Entry]) -> None:
        self.pacer.receive_entries(entries)

    def viewer(self, grep: str | None = None, html: bool = False) -> Viewer:
        viewer = Viewer(grep=LineFilter(grep) if grep else None, html=html)
        viewer.attach_to(self, [])
        self.pacer.views.add(viewer)
        return viewer


def fill_all(ring: LineRing, entries: Sequence[Entry]) -> None:
    """Let every entry in, as reading does while its fastest viewer keeps up: each ``fill``
    has room for a history beyond that viewer, who has taken everything so far."""
    held: deque[Entry] = deque(entries)
    while held:
        assert ring.fill(held, fastest=ring.end) > 0


def _target(path: Path) -> LogTarget:
    return LogTarget(path.parent, (path.name,))


def frames_of(viewer: Viewer) -> list[str]:
    """Take and "send" frames until nothing is left."""
    frames = []
    while (frame := viewer.take_frame()) is not None:
        frames.append(frame)
        viewer.receive_sent()
    return frames


# -- the ring --------------------------------------------------------------------------------


def test_ring_keeps_what_is_protected() -> None:
    """History is cut to capacity, but never past the protected entry."""
    ring = LineRing(capacity=3, max_bytes=1 << 20)
    fill_all(ring, [str(i) for i in range(10)])
    ring.trim(protected=2)
    assert (ring.start, ring.end) == (2, 10)
    ring.trim(protected=9)
    assert (ring.start, ring.end) == (7, 10)
    assert [ring[i] for i in range(7, 10)] == ["7", "8", "9"]
    with pytest.raises(IndexError):
        ring[6]


def test_ring_lets_nothing_in_when_the_fastest_is_a_history_behind() -> None:
    """Entries wait when the fastest viewer lags by capacity lines or max_bytes bytes."""
    ring = LineRing(capacity=4, max_bytes=10)
    held: deque[Entry] = deque(["ab", "cd", "ef", "gh", "ij"])
    assert ring.fill(held, fastest=0) == 4  # capacity lines beyond the fastest
    assert ring.fill(held, fastest=0) == 0 and list(held) == ["ij"]
    assert ring.fill(held, fastest=1) == 1 and ring.end == 5
    held.extend(["0123456789", "z"])
    assert ring.fill(held, fastest=4) == 1  # "ij" and the 10 bytes after it: over max_bytes
    assert ring.bytes_from(5) == 10 and ring.fill(held, fastest=5) == 0
    assert ring.fill(held, fastest=6) == 1 and not held


def test_ring_trims_history_to_max_bytes() -> None:
    """Slow viewers' history is bounded in bytes too, multi-byte characters counted as sent."""
    ring = LineRing(capacity=1000, max_bytes=9)
    fill_all(ring, ["aaa", "日日", "bbb"])  # 3 + 6 + 3 bytes
    ring.trim(protected=3)
    assert ring.start == 1 and ring.bytes_from(0) == 9


def test_ring_compacts_without_renumbering() -> None:
    """Long runs stay O(1) per line: the dropped head is compacted, numbers keep counting."""
    ring = LineRing(capacity=10, max_bytes=1 << 20)
    for block in range(100):
        fill_all(ring, [f"{block}-{i}" for i in range(100)])
        ring.trim(protected=ring.end)
    assert (ring.start, ring.end, len(ring)) == (9990, 10000, 10)
    assert ring[9999] == "99-99"
    assert ring.bytes_from(9990) == sum(len(f"99-{i}") for i in range(90, 100))


# -- viewers ---------------------------------------------------------------------------------


def test_viewer_batches_what_piled_up_into_one_frame() -> None:
    """Lines received while no frame was taken go out together, in order."""
    source = Source()
    viewer = source.viewer()
    source.publish(["a", "b"])
    source.publish(["c"])
    assert frames_of(viewer) == ["a\nb\nc"]
    assert not viewer.has_pending


def test_viewer_initial_lines_come_first() -> None:
    """The preface (the file's last lines) goes out before anything followed after it."""
    source = Source()
    viewer = source.viewer()
    viewer.receive_preface(["old 1", "old 2"])
    source.publish(["new"])
    assert "\n".join(frames_of(viewer)).split("\n") == ["old 1", "old 2", "new"]


def test_slow_viewer_skips_oldest_and_says_how_many() -> None:
    """A viewer the history moved past is told how many lines it lost, then goes on."""
    source = Source(capacity=100)
    fast, slow = source.viewer(), source.viewer()
    slow.receive_preface(["before"])
    assert slow.take_frame() == "before"  # its socket stalls on its initial lines
    for block in range(5):
        source.publish([f"line {block * 50 + i}" for i in range(50)])
        assert frames_of(fast)  # the fast viewer keeps up; the slow one takes nothing yet
    slow.receive_sent()
    lines = "\n".join(frames_of(slow)).split("\n")
    assert lines[0] == "[heartwatch] skipped 150 lines (this viewer could not keep up)"
    assert lines[1] == "line 150" and lines[-1] == "line 249"
    assert slow.skipped_total == 150 and fast.skipped_total == 0


def test_fast_viewer_loses_nothing_beyond_capacity() -> None:
    """Far more lines than the history holds reach a viewer that was the fastest."""
    source = Source(capacity=10)
    viewer = source.viewer()
    source.publish([str(i) for i in range(1000)])  # a single read may exceed the history
    assert "\n".join(frames_of(viewer)).split("\n") == [str(i) for i in range(1000)]


def test_progress_counts_what_was_sent_not_what_was_taken() -> None:
    """A frame taken but stuck in a socket is not progress; once it is sent, it is (heard
    only by a follower whose reading waits)."""
    source = Source()
    source.pacer.paused = True
    viewer = source.viewer()
    source.publish(["a", "b"])
    assert viewer.take_frame() == "a\nb"
    assert (viewer.cursor, viewer.sent, source.progress) == (2, 0, 0)
    viewer.receive_sent()
    assert (viewer.sent, source.progress) == (2, 1)
    viewer.receive_sent()  # nothing new went out
    assert source.progress == 1


@pytest.mark.parametrize(
    ("line", "html"),
    [("x" * 1000, False), ("日" * 1000, False), ("<" * 1000, True)],
    ids=["ascii", "wide-characters", "html-escaped"],
)
def test_viewer_frames_stay_under_the_limit_as_sent(line: str, html: bool) -> None:
    """A burst is split into frames whose UTF-8 size, after rendering, stays under the cap."""
    source = Source(capacity=100_000)
    viewer = source.viewer(html=html)
    source.publish([line] * 5000)
    frames = frames_of(viewer)
    assert len(frames) > 1
    assert all(len(frame.encode()) <= MAX_FRAME_BYTES for frame in frames)
    assert sum(frame.count("\n") + 1 for frame in frames) == 5000


def test_viewer_grep_filters_on_text_without_colours() -> None:
    """The filter sees the text as a person reads it, colour codes stripped."""
    source = Source()
    viewer = source.viewer(grep=r"^ERROR")
    source.publish(["\x1b[31mERROR\x1b[0m disk", "INFO ok", "ERROR two"])
    assert frames_of(viewer) == ["\x1b[31mERROR\x1b[0m disk\nERROR two"]
    source.publish(["INFO only"])
    assert frames_of(viewer) == []
    assert not viewer.has_pending


def test_viewer_html_escapes_lines_and_markers() -> None:
    """In html format a log line is text; heartwatch's markers are spans of their own."""
    source = Source()
    viewer = source.viewer(html=True)
    source.publish(["<img src=x onerror=alert(1)>"])
    source.publish([Marker("file truncated (lines after byte 10 may be lost)")])
    frame = frames_of(viewer)[0]
    assert frame.split("\n") == [
        "&lt;img src=x onerror=alert(1)&gt;",
        '<span class="hw-marker">[heartwatch] file truncated (lines after byte 10 may be lost)'
        "</span>",
    ]


def test_a_line_cannot_pass_for_a_marker() -> None:
    """A log line that looks like heartwatch's notice stays a plain line, even in html."""
    source = Source()
    viewer = source.viewer(html=True)
    source.publish(["\0skipped 5 lines", "[heartwatch] the file was rotated"])
    assert "hw-marker" not in frames_of(viewer)[0]


def test_reading_paused_for_viewers_never_flushes_a_half_read_line(tmp_path: Path) -> None:
    """While reading waits for a slow viewer, a line cut by a read is not shown in two."""
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    lines = [f"{i:05d} {'x' * 60}" for i in range(5000)]  # ~330 KB: many 64 KiB reads

    async def main() -> list[str]:
        hub = LogHub(flush_after=0.01, history_lines=100)
        viewer = Viewer(grep=None, html=False)
        follower = await hub.subscribe(_target(path), viewer, 0)
        path.write_bytes("".join(f"{line}\n" for line in lines).encode())
        await asyncio.sleep(0.3)  # reading pauses at once; the flush delay passes many times
        assert follower.paused
        received: list[str] = []
        while len(received) < len(lines):
            frame = await asyncio.wait_for(viewer.next_frame(), 5)
            viewer.receive_sent()
            received += frame.split("\n")
        hub.close()
        return received

    assert asyncio.run(main()) == lines


def test_a_stalled_viewer_ahead_in_taking_does_not_make_a_reading_one_skip(tmp_path: Path) -> None:
    """The stalled viewer took a frame first (stuck in its socket); the reading one loses none."""
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    lines = [f"{i:05d} {'y' * 100}" for i in range(20_000)]  # ~2 MB, 200 times the history

    async def main() -> list[str]:
        hub = LogHub(flush_after=0.5, history_lines=100)
        stalled, reading = Viewer(grep=None, html=False), Viewer(grep=None, html=False)
        await hub.subscribe(_target(path), stalled, 0)
        await hub.subscribe(_target(path), reading, 0)
        path.write_bytes("".join(f"{line}\n" for line in lines).encode())
        await stalled.next_frame()  # taken, never sent
        received: list[str] = []
        while len(received) < len(lines):
            frame = await asyncio.wait_for(reading.next_frame(), 5)
            reading.receive_sent()
            received += frame.split("\n")
        hub.close()
        assert reading.skipped_total == 0
        return received

    assert asyncio.run(main()) == lines


def test_rotations_while_reading_waits_lose_no_generation(tmp_path: Path) -> None:
    """Renamed away twice while the viewer holds reading back: every file is read, in order."""
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    generations = [[f"{g}-{i:04d} {'z' * 80}" for i in range(2000)] for g in range(3)]

    async def main() -> list[str]:
        hub = LogHub(flush_after=0.5, history_lines=100)
        viewer = Viewer(grep=None, html=False)
        follower = await hub.subscribe(_target(path), viewer, 0)
        for number, lines in enumerate(generations):
            if number:
                path.rename(tmp_path / f"app.log.{number}")
            path.write_bytes("".join(f"{line}\n" for line in lines).encode())
            await asyncio.sleep(0.1)  # the follower notices (and keeps) the new file
            assert follower.paused
        received: list[str] = []
        while len(received) < 6002:
            frame = await asyncio.wait_for(viewer.next_frame(), 5)
            viewer.receive_sent()
            received += frame.split("\n")
        hub.close()
        return received

    rotated = "[heartwatch] the file was rotated"
    expected = [*generations[0], rotated, *generations[1], rotated, *generations[2]]
    assert asyncio.run(main()) == expected


def _write(path: Path, lines: list[str]) -> None:
    with path.open("a") as file:
        file.write("".join(f"{line}\n" for line in lines))


async def _take(viewer: Viewer, count: int) -> list[str]:
    """Frames until ``count`` lines came, each sent at once."""
    received: list[str] = []
    while len(received) < count:
        frame = await asyncio.wait_for(viewer.next_frame(), 5)
        viewer.receive_sent()
        received += frame.split("\n")
    return received


def test_a_lone_viewer_stuck_in_a_send_does_not_break_reading(tmp_path: Path) -> None:
    """Every viewer mid-send (a slow link): lines keep arriving, nothing raises."""
    path = tmp_path / "app.log"
    path.write_bytes(b"")

    async def main() -> list[str]:
        hub = LogHub(flush_after=0.5, history_lines=100)
        viewer = Viewer(grep=None, html=False)
        follower = await hub.subscribe(_target(path), viewer, 0)
        _write(path, ["one"])
        first = await asyncio.wait_for(viewer.next_frame(), 5)  # taken, its send hangs
        _write(path, ["two"])
        await asyncio.sleep(0.2)
        assert follower._watch is not None and not follower._watch.done()
        viewer.receive_sent()
        rest = await _take(viewer, 1)
        hub.close()
        return [first, *rest]

    assert asyncio.run(main()) == ["one", "two"]


def test_last_viewer_leaving_stops_the_follower_for_good(tmp_path: Path) -> None:
    """A pump already scheduled when the follower closes opens and reads nothing."""
    path = tmp_path / "app.log"
    path.write_bytes(b"x" * 100 + b"\n")

    async def main() -> None:
        hub = LogHub(flush_after=0.5, history_lines=100)
        viewer = Viewer(grep=None, html=False)
        follower = await hub.subscribe(_target(path), viewer, 0)
        await asyncio.sleep(0.05)
        follower._schedule_pump()  # as an inotify event or a spent budget would
        hub.unsubscribe(follower, viewer)
        fds = len(os.listdir("/proc/self/fd"))
        await asyncio.sleep(0.1)
        assert follower.closed and follower._fd == -1
        assert len(os.listdir("/proc/self/fd")) <= fds
        again = Viewer(grep=None, html=False)  # forgotten: the next viewer starts another
        assert await hub.subscribe(_target(path), again, 0) is not follower
        await hub.aclose()

    asyncio.run(main())


def test_a_viewer_joining_while_reading_waits_is_served_without_repeats(tmp_path: Path) -> None:
    """Reading paused for a stalled viewer: a new one gets its initial lines, then the rest,
    each line once and in order, without waiting for the stalled one."""
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    lines = [f"{i:05d} {'w' * 60}" for i in range(3000)]

    async def main() -> tuple[list[str], list[str]]:
        hub = LogHub(flush_after=0.5, history_lines=100)
        stalled = Viewer(grep=None, html=False)
        follower = await hub.subscribe(_target(path), stalled, 0)
        _write(path, lines)
        await asyncio.sleep(0.2)
        assert follower.paused and follower.pacer.held
        joining = Viewer(grep=None, html=False)
        await hub.subscribe(_target(path), joining, 20)
        preface = (await asyncio.wait_for(joining.next_frame(), 5)).split("\n")
        joining.receive_sent()
        rest = await _take(joining, len(lines) - int(preface[-1][:5]) - 1)
        hub.close()
        return preface, rest

    preface, rest = asyncio.run(main())
    assert len(preface) == 20
    assert preface + rest == lines[lines.index(preface[0]) :]


def test_a_new_file_that_cannot_be_opened_does_not_stop_the_old_one(tmp_path: Path) -> None:
    """A symlink takes the name after a rotation: the old file is still read to its end."""
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    (tmp_path / "elsewhere").write_text("secret\n")

    async def main() -> list[str]:
        hub = LogHub(flush_after=0.5, history_lines=100)
        viewer = Viewer(grep=None, html=False)
        await hub.subscribe(_target(path), viewer, 0)
        _write(path, ["first"])
        got = await _take(viewer, 1)
        with path.open("a") as old:  # the writer still holds the old file
            path.rename(tmp_path / "app.log.1")
            path.symlink_to(tmp_path / "elsewhere")
            old.write("last lines before rotation\n")
        got += await _take(viewer, 2)
        hub.close()
        return got

    got = asyncio.run(main())
    assert got[0] == "first"
    assert "last lines before rotation" in got
    assert "secret" not in got
    assert any(line.startswith("[heartwatch] the new file cannot be followed") for line in got)


def test_a_catastrophic_grep_is_stopped_not_waited_for() -> None:
    """``(a|aa)+$`` on a long line: the match gives up within its limit and says so."""
    source = Source()
    viewer = source.viewer(grep=r"(a|aa)+$")
    source.publish(["a" * 40 + "b"])
    started = time.monotonic()
    with pytest.raises(FilterTooSlow, match="took over 20 ms"):
        viewer.take_frame()
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("pattern", "problem"), [("(", "bad regular expression"), ("x" * 201, "limited to 200")]
)
def test_a_bad_grep_is_refused_with_the_reason(pattern: str, problem: str) -> None:
    """An invalid or over-long pattern is a clear error, before anything is followed."""
    with pytest.raises(ValueError, match=problem):
        LineFilter(pattern)


def test_sending_does_not_bother_a_follower_that_does_not_wait() -> None:
    """With reading not waiting, a frame sent costs the follower nothing (no scan of viewers)."""
    source = Source()
    viewer = source.viewer()
    source.publish(["a"])
    frames_of(viewer)
    assert source.progress == 0


def test_a_send_that_cannot_complete_drops_the_viewer_after_its_deadline() -> None:
    """A viewer whose socket stays full (its send never returns) is let go at the deadline,
    not waited for forever; what it held is then freed by the caller's unsubscribe."""
    from heartwatch.web.logs import _stream

    class StuckSocket:
        sends = 0

        async def send_text(self, text: str) -> None:
            self.sends += 1
            await asyncio.sleep(3600)  # a full socket: writable never comes back

        async def receive(self) -> dict[str, str]:
            await asyncio.sleep(3600)  # nor does the peer say anything
            return {"type": "websocket.disconnect"}

    async def main() -> tuple[float, int, bool]:
        source = Source()
        viewer = source.viewer()
        source.publish(["one line"])
        websocket = StuckSocket()
        started = time.monotonic()
        await asyncio.wait_for(_stream(websocket, viewer, Path("x.log"), 0.2), 10)  # type: ignore[arg-type]
        return time.monotonic() - started, websocket.sends, viewer.in_flight

    elapsed, sends, in_flight = asyncio.run(main())
    assert sends == 1 and in_flight  # its frame never went out
    assert 0.15 < elapsed < 5


def test_a_folder_swapped_for_a_symlink_is_never_followed_into(tmp_path: Path) -> None:
    """While followed, the file's folder becomes a symlink to another folder holding a file of
    the same name: the follower reads on in the file it had and never opens the other."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "app.log").write_text("secret 0\n")
    path = root / "sub" / "app.log"
    path.write_text("")

    async def main() -> list[str]:
        hub = LogHub(flush_after=0.5, history_lines=100)
        viewer = Viewer(grep=None, html=False)
        follower = await hub.subscribe(LogTarget(root, ("sub", "app.log")), viewer, 0)
        _write(path, ["inside 0"])
        got = await _take(viewer, 1)
        (root / "sub").rename(root / "parked")
        (root / "sub").symlink_to(outside)
        _write(root / "parked" / "app.log", ["inside 1"])  # the writer holds the old file
        _write(outside / "app.log", ["secret 1"])
        got += await _take(viewer, 1)
        await asyncio.sleep(0.3)  # time to be tempted by the name's new target
        _write(outside / "app.log", ["secret 2"])
        await asyncio.sleep(0.3)
        while (frame := viewer.take_frame()) is not None:
            viewer.receive_sent()
            got += frame.split("\n")
        hub.unsubscribe(follower, viewer)
        await hub.aclose()
        return got

    got = asyncio.run(main())
    assert got[:2] == ["inside 0", "inside 1"]
    assert not any("secret" in line for line in got), got


def test_a_truncation_while_reading_waits_is_said_and_reading_starts_over(tmp_path: Path) -> None:
    """A copytruncate while a stalled viewer holds reading back: once it catches up, it is
    told the file was truncated, then gets the new lines whole (the old offset is not used)."""
    path = tmp_path / "app.log"
    path.write_bytes(b"")
    lines = [f"{i:05d} {'v' * 60}" for i in range(3000)]  # ~200 KB: several reads

    async def main() -> list[str]:
        hub = LogHub(flush_after=0.5, history_lines=100)
        viewer = Viewer(grep=None, html=False)
        follower = await hub.subscribe(_target(path), viewer, 0)
        _write(path, lines)
        first = await asyncio.wait_for(viewer.next_frame(), 5)  # taken; its send hangs
        for _ in range(500):
            if follower.paused:
                break
            await asyncio.sleep(0.01)
        assert follower.paused
        offset = follower._follow.offset
        os.truncate(path, 0)
        for _ in range(500):  # the follower is woken by the change
            if follower._follow.offset == 0:
                break
            await asyncio.sleep(0.01)
        # The file grows again past where reading stood before anyone caught up.
        _write(path, [f"after {i} {'a' * 80}" for i in range(offset // 80 + 10)])
        viewer.receive_sent()
        received = first.split("\n")
        while not received[-1].startswith(f"after {offset // 80 + 9} "):
            frame = await asyncio.wait_for(viewer.next_frame(), 5)
            viewer.receive_sent()
            received += frame.split("\n")
        hub.close()
        return received

    received = asyncio.run(main())
    marker = next(i for i, line in enumerate(received) if "file truncated" in line)
    assert received[marker].startswith("[heartwatch] file truncated (lines after byte ")
    assert received[:marker] == lines[:marker]  # what was read before: whole, in order
    after = received[marker + 1 :]
    assert after[0].startswith("after 0 ")
    assert all(line.startswith(f"after {i} ") for i, line in enumerate(after))
