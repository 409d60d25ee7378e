"""Log text, pure: ANSI colours to safe HTML, and the last N lines read backwards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heartwatch.logview import tailread
from heartwatch.logview.ansi import AnsiToHtml, strip_ansi
from heartwatch.logview.follow import (
    CUT_MARKER,
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
from heartwatch.logview.tailread import follow_from, read_last_lines


def test_markup_in_a_log_line_stays_text() -> None:
    """<img onerror> and friends are escaped; only colour codes become spans."""
    html = AnsiToHtml().convert("\x1b[31m<img src=x onerror=alert(1)>\x1b[0m & <b>")
    assert (
        html == '<span class="ansi-fg-1">&lt;img src=x onerror=alert(1)&gt;</span> &amp; &lt;b&gt;'
    )


def test_colour_state_carries_across_lines_and_each_line_is_closed() -> None:
    """A colour opened on one line continues on the next; every line's spans are closed."""
    converter = AnsiToHtml()
    assert converter.convert("\x1b[1;32mok") == '<span class="ansi-fg-2 ansi-bold">ok</span>'
    assert converter.convert("still") == '<span class="ansi-fg-2 ansi-bold">still</span>'
    assert converter.convert("\x1b[0mplain") == "plain"


@pytest.mark.parametrize(
    ("sequence", "style"),
    [
        ("\x1b[38;5;208m", 'style="color:#ff8700"'),
        ("\x1b[38;2;1;2;3m", 'style="color:#010203"'),
        ("\x1b[48;5;1m", 'class="ansi-bg-1"'),
        ("\x1b[93m", 'class="ansi-fg-11"'),
        ("\x1b[38:5:232m", 'style="color:#080808"'),
    ],
)
def test_extended_colours(sequence: str, style: str) -> None:
    """256-colour and true-colour codes become inline colours built from numbers."""
    assert style in AnsiToHtml().convert(sequence + "x")


def test_other_escapes_and_controls_are_dropped() -> None:
    """Cursor moves, OSC titles and hyperlinks, bells and NULs vanish; tabs stay."""
    line = "\x1b]0;title\x07\x1b[2J\x1b[Hclear\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\x00\tend\x07"
    assert AnsiToHtml().convert(line) == "clearlink\tend"
    assert strip_ansi("\x1b[1;31merr\x1b[0m\tok\x07") == "err\tok"


def test_inline_spans_need_no_stylesheet() -> None:
    """For a page without our stylesheet (the original viewer): CSS only, built from tables."""
    convert = AnsiToHtml(inline=True).convert
    assert convert("\x1b[1;31merr <b>\x1b[0m ok") == (
        '<span style="color:#cd0000;font-weight:bold">err &lt;b&gt;</span> ok'
    )
    assert convert("\x1b[38;5;208;4;9mo\x1b[0m") == (
        '<span style="color:#ff8700;text-decoration:underline line-through">o</span>'
    )
    assert (
        convert("\x1b[7mswapped")
        == '<span style="color:#ffffff;background-color:#000000">swapped</span>'
    )
    assert "class=" not in convert("\x1b[32;44;2;3mx")


@pytest.mark.parametrize("inline", [False, True])
@given(
    line=st.text(alphabet=st.sampled_from(list("<>&\"'ab\x1b[];0123456789m\x07\\")), max_size=80)
)
def test_converted_html_never_contains_raw_markup(inline: bool, line: str) -> None:
    """Whatever the bytes, no '<' reaches the output except our own spans."""
    html = AnsiToHtml(inline=inline).convert(line)
    stripped = html.replace("</span>", "")
    while "<span" in stripped:
        start = stripped.index("<span")
        stripped = stripped[:start] + stripped[stripped.index(">", start) + 1 :]
    assert "<" not in stripped
    assert ">" not in stripped
    assert "\x1b" not in html


def reader(data: bytes) -> tuple[tailread.ReadAt, int]:
    return (lambda offset, size: data[offset : offset + size]), len(data)


@pytest.mark.parametrize(
    ("data", "count", "lines", "end"),
    [
        (b"a\nb\nc\n", 2, [b"b", b"c"], 6),
        (b"a\nb\nc\npartial", 2, [b"b", b"c"], 6),
        (b"a\nb\n", 5, [b"a", b"b"], 4),
        (b"", 3, [], 0),
        (b"no newline yet", 2, [], 0),
        (b"\n\nx\n", 3, [b"", b"", b"x"], 4),
    ],
)
def test_last_lines(data: bytes, count: int, lines: list[bytes], end: int) -> None:
    """The last complete lines, and where following starts (after the last newline)."""
    tail = read_last_lines(*reader(data), count)
    assert (tail.lines, tail.end) == (lines, end)


@given(
    st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=40),
    st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")),
    st.integers(min_value=1, max_value=50),
    st.integers(min_value=1, max_value=17),
)
def test_last_lines_match_a_whole_read_for_any_block_size(
    lines: list[bytes], partial: bytes, count: int, block: int
) -> None:
    """Reading backwards in blocks of any size gives what splitting the whole file gives."""
    data = b"".join(line + b"\n" for line in lines) + partial
    tail = read_last_lines(*reader(data), count, block_size=block)
    assert tail.lines == lines[-count:]
    assert tail.end == len(data) - len(partial)


def test_last_lines_reads_only_the_end_of_a_big_file() -> None:
    """A gigabyte before the last lines costs nothing: only the blocks at the end are read."""
    size = 1 << 30
    ending = b"".join(b"line %d\n" % i for i in range(300))
    reads: list[int] = []

    def read_at(offset: int, length: int) -> bytes:
        reads.append(length)
        start = size - len(ending)
        if offset + length <= start:
            return b"x" * length
        head = b"x" * max(0, start - offset)
        return head + ending[max(0, offset - start) : offset + length - start]

    tail = read_last_lines(read_at, size, 200)
    assert tail.lines[-1] == b"line 299"
    assert len(tail.lines) == 200
    assert sum(reads) <= 2 * tailread.BLOCK_SIZE


def test_last_lines_bounded_on_one_enormous_line() -> None:
    """A file that is one endless line is not read whole; the line shown is only its end."""
    reads: list[int] = []
    read_at, size = reader(b"x" * 1000 + b"\nend\n")

    def counted(offset: int, length: int) -> bytes:
        reads.append(length)
        return read_at(offset, length)

    tail = read_last_lines(counted, size, 5, max_bytes=200, block_size=100)
    assert tail.lines[-1] == b"end"
    assert len(tail.lines) == 2 and 0 < len(tail.lines[0]) < 1000
    assert tail.lines[0] == b"x" * len(tail.lines[0])  # the end of the long line, cut
    assert sum(reads) <= 300


@pytest.mark.parametrize(
    ("data", "start"),
    [
        (b"", 0),
        (b"a\nb\n", 4),
        (b"a\nb\npart", 4),  # the partial line is the follower's: it comes once complete
        (b"no newline", 0),
        (b"a\n" + b"x" * 50, 52),  # an unterminated tail longer than max_partial: skipped
        (b"y" * 50, 50),
    ],
)
def test_following_starts_after_the_last_complete_line(data: bytes, start: int) -> None:
    assert follow_from(*reader(data), max_partial=20) == start


def stat(ino: int, size: int) -> FileStat:
    return FileStat(dev=1, ino=ino, size=size)


def test_follow_reads_growth_then_waits() -> None:
    """A growing file is read from the offset to its size, then the follower waits."""
    follow = Follow(stat(1, 10), offset=10)
    assert follow.next_step(stat(1, 25), stat(1, 25)) == Read(10, 25)
    follow.receive_read(15)
    assert follow.next_step(stat(1, 25), stat(1, 25)) == Wait()


def test_follow_rename_rotation_keeps_the_new_file_and_finishes_the_old_first() -> None:
    """After a rename the new file is kept at once; the old is read to its end, then the new."""
    follow = Follow(stat(1, 10), offset=10)
    assert follow.next_step(stat(1, 30), stat(2, 0)) == Track()
    follow.receive_tracked(stat(2, 0))
    assert follow.next_step(stat(1, 30), stat(2, 0)) == Read(10, 30)
    follow.receive_read(20)
    assert follow.next_step(stat(1, 30), stat(2, 5)) == Advance("the file was rotated")
    follow.receive_advanced()
    assert follow.next_step(stat(2, 5), stat(2, 5)) == Read(0, 5)


def test_follow_keeps_every_generation_while_behind() -> None:
    """Two rotations before the old file is read: both new files are kept, read in order."""
    follow = Follow(stat(1, 10), offset=0)
    follow.receive_tracked(stat(2, 0))
    assert follow.next_step(stat(1, 10), stat(3, 0)) == Track()
    follow.receive_tracked(stat(3, 0))
    follow.receive_tracked(stat(3, 0))  # the same file again: kept once
    assert follow.tracked == [stat(2, 0), stat(3, 0)]
    assert follow.next_step(stat(1, 10), stat(3, 0)) == Read(0, 10)
    follow.receive_read(10)
    assert follow.next_step(stat(1, 10), stat(3, 4)) == Advance("the file was rotated")
    follow.receive_advanced()
    assert follow.next_step(stat(2, 7), stat(3, 4)) == Read(0, 7)
    follow.receive_read(7)
    assert follow.next_step(stat(2, 7), stat(3, 4)) == Advance("the file was rotated")
    follow.receive_advanced()
    assert follow.next_step(stat(3, 4), stat(3, 4)) == Read(0, 4)


def test_follow_beyond_max_tracked_falls_back_to_reopening() -> None:
    """More generations than can be kept: the oldest kept are read, then the newest name."""
    follow = Follow(stat(1, 0), offset=0, max_tracked=1)
    follow.receive_tracked(stat(2, 0))
    assert follow.next_step(stat(1, 0), stat(3, 0)) == Advance("the file was rotated")
    follow.receive_advanced()
    assert follow.next_step(stat(2, 0), stat(3, 0)) == Track()
    follow.receive_tracked(stat(2, 0))  # the name went back to the open file: ignored
    assert follow.tracked == []


def test_follow_copytruncate_is_announced() -> None:
    """A file cut below the offset is a truncation: say so and start over at 0."""
    follow = Follow(stat(1, 100), offset=100)
    assert follow.next_step(stat(1, 20), stat(1, 20)) == Truncated(lost_after=100)
    assert Truncated(100).reason == "file truncated (lines after byte 100 may be lost)"
    assert follow.next_step(stat(1, 20), stat(1, 20)) == Read(0, 20)


def test_follow_deleted_file_waits_for_it_to_come_back() -> None:
    """A deleted path: keep what is open; when a file reappears, open it from the start."""
    follow = Follow(stat(1, 10), offset=10)
    assert follow.next_step(stat(1, 10), None) == Wait()
    follow.receive_closed()
    assert follow.next_step(None, None) == Wait()
    assert follow.next_step(None, stat(3, 0)) == Reopen("the file appeared")


def test_line_assembler_keeps_split_utf8_whole() -> None:
    """A multi-byte character split across reads decodes once, intact."""
    assembler = LineAssembler()
    data = "héllo wörld ✓\n".encode()
    lines: list[str] = []
    for i in range(len(data)):
        lines += assembler.receive(data[i : i + 1], now=0.0)
    assert lines == ["héllo wörld ✓"]


def test_line_assembler_holds_partial_line_until_flush() -> None:
    """A line without its newline waits; after flush_after it may be flushed."""
    assembler = LineAssembler(flush_after=0.5)
    assert assembler.receive(b"done\npart", now=1.0) == ["done"]
    assert assembler.flush_deadline() == 1.5
    assert assembler.receive(b"ial", now=1.2) == []
    assert assembler.flush_deadline() == 1.5
    assert assembler.flush() == ["partial"]
    assert assembler.flush_deadline() is None


def test_line_assembler_cuts_huge_lines_with_a_marker() -> None:
    """A line over max_line is cut once, marked, and the rest of it is dropped."""
    assembler = LineAssembler(max_line=10)
    lines = assembler.receive(b"0123456789ABCDEF", now=0.0)
    lines += assembler.receive(b"GHIJ\nnext\n", now=0.0)
    assert lines == ["0123456789" + CUT_MARKER.format(limit=10), "next"]


def test_line_assembler_replaces_invalid_bytes() -> None:
    """Bytes that are not UTF-8 become the replacement character, never an error."""
    assembler = LineAssembler()
    assert assembler.receive(b"bad \xff\xfe here\r\n", now=0.0) == ["bad \ufffd\ufffd here"]


def test_line_assembler_flush_keeps_a_split_character_for_the_rest() -> None:
    """A partial line flushed mid-character shows what is whole; the rest starts with it."""
    assembler = LineAssembler(flush_after=0.5)
    data = "wörld\n".encode()
    cut = data.index("ö".encode()) + 1
    assert assembler.receive(data[:cut], now=0.0) == []
    assert assembler.flush() == ["w"]
    assert assembler.receive(data[cut:], now=1.0) == ["örld"]


def test_line_assembler_finish_ends_the_file() -> None:
    """At the end of a rotated file, the partial line is shown and nothing carries over."""
    assembler = LineAssembler()
    assert assembler.receive(b"last \xc3", now=0.0) == []
    assert assembler.finish() == ["last \ufffd"]
    assert assembler.receive(b"new\n", now=0.0) == ["new"]


def test_line_assembler_flush_inside_a_cut_line_shows_nothing_more() -> None:
    """Flushing while the rest of an over-long line is being dropped does not revive it."""
    assembler = LineAssembler(max_line=4, flush_after=0.5)
    assert assembler.receive(b"abcdefgh", now=0.0) == ["abcd" + CUT_MARKER.format(limit=4)]
    assert assembler.flush() == []
    assert assembler.receive(b"ij\nnext\n", now=1.0) == ["next"]


def test_follow_while_reading_waits_keeps_new_files_and_says_truncations() -> None:
    """Reading waits for viewers: growth, advancing and reopening wait too, but a new file at
    the name is kept and a truncation is said at once (its old offset means nothing now)."""
    follow = Follow(stat(1, 10), offset=10)
    assert follow.next_step(stat(1, 30), stat(1, 30), reading=False) == Wait()
    assert follow.next_step(stat(1, 30), stat(2, 0), reading=False) == Track()
    follow.receive_tracked(stat(2, 0))
    assert follow.next_step(stat(1, 4), stat(2, 0), reading=False) == Truncated(lost_after=10)
    assert follow.next_step(stat(1, 4), stat(2, 0), reading=False) == Wait()
    assert follow.next_step(stat(1, 4), stat(2, 0)) == Read(0, 4)
    follow.receive_read(4)
    assert follow.next_step(stat(1, 4), stat(2, 0), reading=False) == Wait()  # not Advance
    assert follow.next_step(None, stat(3, 0), reading=False) == Wait()
