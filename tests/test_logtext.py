"""Log text, pure: ANSI colours to safe HTML, and the last N lines read backwards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heartwatch import tailread
from heartwatch.ansi import AnsiToHtml, strip_ansi
from heartwatch.tailread import read_last_lines


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


@given(st.text(alphabet=st.sampled_from(list("<>&\"'ab\x1b[];0123456789m\x07\\")), max_size=80))
def test_converted_html_never_contains_raw_markup(line: str) -> None:
    """Whatever the bytes, no '<' reaches the output except our own spans."""
    html = AnsiToHtml().convert(line)
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
    assert (tail.lines, tail.end, tail.cut) == (lines, end, False)


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
    original = tailread.BLOCK_SIZE
    tailread.BLOCK_SIZE = block
    try:
        tail = read_last_lines(*reader(data), count)
    finally:
        tailread.BLOCK_SIZE = original
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


def test_last_lines_bounded_on_one_enormous_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that is one endless line is not read whole; the line shown is marked cut."""
    monkeypatch.setattr(tailread, "BLOCK_SIZE", 100)
    tail = read_last_lines(*reader(b"x" * 1000 + b"\nend\n"), 5, max_bytes=200)
    assert tail.lines[-1] == b"end"
    assert tail.cut
    assert len(tail.lines[0]) < 1000
