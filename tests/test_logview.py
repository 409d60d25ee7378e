"""The pure side of live logs without a file or a loop: a viewer's frames, reading's pacing."""

from __future__ import annotations

from collections import deque

from heartwatch.logview.linefilter import LineFilter
from heartwatch.logview.linering import LineRing, Marker
from heartwatch.logview.pacing import Progress, ReadPacer
from heartwatch.logview.viewer import SKIPPED_TEXT, LogView


def attached(ring: LineRing, *, grep: str | None = None, max_frame_bytes: int = 1 << 20) -> LogView:
    view = LogView(
        grep=LineFilter(grep) if grep else None, html=False, max_frame_bytes=max_frame_bytes
    )
    view.attach(ring, [])
    return view


def fill(ring: LineRing, entries: list[str | Marker]) -> None:
    assert ring.fill(deque(entries), fastest=ring.end) == len(entries)


# -- a view ----------------------------------------------------------------------------------


def test_a_frame_stops_at_the_byte_cap_and_the_rest_carries_over_in_order() -> None:
    """Each frame, newlines counted, stays within the cap; the entry that did not fit opens
    the next frame."""
    ring = LineRing(100, 1 << 20)
    view = attached(ring, max_frame_bytes=10)  # two 4-byte lines and their newlines
    fill(ring, ["aaaa", "bbbb", "cccc", "dddd", "eeee"])
    frames = []
    while (frame := view.take_frame()) is not None:
        assert view.in_flight
        frames.append(frame)
        view.receive_sent()
    assert frames == ["aaaa\nbbbb", "cccc\ndddd", "eeee"]
    assert not view.has_pending


def test_a_line_over_the_cap_still_goes_out_alone() -> None:
    """A frame always holds at least one entry, however long (lines are cut at 64 KiB)."""
    ring = LineRing(10, 1 << 20)
    view = attached(ring, max_frame_bytes=10)
    fill(ring, ["x" * 50, "y"])
    assert view.take_frame() == "x" * 50
    assert view.take_frame() == "y"


def test_nothing_is_taken_while_the_initial_lines_are_read() -> None:
    """``attach(ring, None)``: the preface is coming; the ring's lines wait behind it."""
    ring = LineRing(10, 1 << 20)
    view = LogView(grep=None, html=False)
    view.attach(ring, None)
    fill(ring, ["live"])
    assert not view.has_pending and view.take_frame() is None
    view.receive_preface(["old"])
    assert view.has_pending
    assert view.take_frame() == "old"
    assert view.take_frame() == "live"


def test_sent_moves_once_per_frame_that_went_out() -> None:
    """``receive_sent`` says whether ``sent`` moved: a frame's second report, or a frame of
    the preface (no ring entry), is not progress."""
    ring = LineRing(10, 1 << 20)
    fill(ring, ["a", "b"])
    view = LogView(grep=None, html=False)
    view.attach(ring, ["initial"])
    assert (view.cursor, view.sent) == (2, 2)  # at the end when it came
    fill(ring, ["c"])
    assert view.take_frame() == "initial" and view.in_flight
    assert view.receive_sent() is False and not view.in_flight
    assert view.take_frame() == "c"
    assert (view.cursor, view.sent) == (3, 2)
    assert view.receive_sent() is True and view.sent == 3
    assert view.receive_sent() is False


def test_a_view_behind_the_history_is_told_how_much_it_skipped() -> None:
    ring = LineRing(3, 1 << 20)
    view = attached(ring)
    fill(ring, [str(i) for i in range(3)])
    fill(ring, ["3", "4"])
    ring.trim(protected=ring.end)
    assert view.take_frame() == "\n".join([f"[heartwatch] {SKIPPED_TEXT.format(2)}", "2", "3", "4"])
    assert view.skipped_total == 2


def test_a_frame_all_filtered_out_is_none_and_nothing_is_pending() -> None:
    ring = LineRing(10, 1 << 20)
    view = attached(ring, grep="ERROR")
    fill(ring, ["INFO a", "INFO b"])
    assert view.take_frame() is None and not view.in_flight
    assert view.cursor == 2 and not view.has_pending


def test_markers_pass_any_filter() -> None:
    """heartwatch's own notices are not the file's lines: a grep does not hide them."""
    ring = LineRing(10, 1 << 20)
    view = attached(ring, grep="ERROR")
    fill(ring, [Marker("the file was rotated", new_file=True), "INFO"])
    assert view.take_frame() == "[heartwatch] the file was rotated"


# -- pacing ----------------------------------------------------------------------------------


def test_reading_waits_while_lines_are_held_and_goes_on_when_they_got_in() -> None:
    """The fastest viewer a history behind: what was read is held, reading waits; its next
    frame sent lets the held lines in and reading goes on."""
    pacer: ReadPacer[LogView] = ReadPacer(LineRing(2, 1 << 20))
    view = attached(pacer.ring)
    pacer.views.add(view)
    assert pacer.may_read()
    assert pacer.receive_entries(["a", "b", "c"]) == 2
    assert list(pacer.held) == ["c"] and pacer.waiting
    assert not pacer.may_read() and pacer.paused
    assert view.take_frame() == "a\nb"
    assert pacer.receive_progress() == Progress(0, False)  # taken is not sent
    view.receive_sent()
    assert pacer.receive_progress() == Progress(1, True)
    assert not pacer.waiting and pacer.may_read()


def test_a_viewer_stuck_in_a_send_protects_nothing_a_waiting_one_does() -> None:
    """History is kept from the fastest's sent position, and from the cursor of a viewer
    waiting for lines; a viewer mid-send (its frame stuck) does not hold history back."""
    pacer: ReadPacer[LogView] = ReadPacer(LineRing(2, 1 << 20))
    stuck, waiting = attached(pacer.ring), attached(pacer.ring)
    pacer.views.update({stuck, waiting})
    pacer.receive_entries(["a", "b"])
    assert stuck.take_frame() == "a\nb"
    assert pacer.fastest() == 0 and pacer.protected(0) == 0
    assert waiting.take_frame() == "a\nb"
    waiting.receive_sent()
    assert pacer.fastest() == 2 and pacer.protected(2) == 2
    pacer.receive_entries(["c", "d"])
    assert (pacer.ring.start, pacer.ring.end) == (2, 4)
    assert stuck.receive_sent() and stuck.take_frame() == "c\nd"


def test_with_no_viewer_reading_is_not_held_back() -> None:
    """Nobody watching (a follower starting): entries flow, only the history is kept."""
    pacer: ReadPacer[LogView] = ReadPacer(LineRing(3, 1 << 20))
    for start in range(0, 10, 2):
        pacer.receive_entries([str(start), str(start + 1)])
    assert not pacer.held and (pacer.ring.start, pacer.ring.end) == (7, 10)


def test_held_lines_of_the_open_file_are_counted_back_to_the_last_notice() -> None:
    """A viewer joining gets the open file's last lines from disk: those still held are not
    among them (they come through the ring), and held lines of an older file allow none."""
    pacer: ReadPacer[LogView] = ReadPacer(LineRing(1, 1 << 20))
    pacer.views.add(attached(pacer.ring))
    assert pacer.held_of_open_file() == 0
    pacer.receive_entries(["x", "y", "z"])
    assert pacer.held_of_open_file() == 2
    pacer.receive_entries([Marker("file truncated"), "t"])
    assert pacer.held_of_open_file() == 1
    pacer.receive_entries([Marker("the file was rotated", new_file=True), "n"])
    assert pacer.held_of_open_file() is None
