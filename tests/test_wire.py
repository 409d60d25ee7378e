"""Line framing and message decoding, fed whole and byte by byte."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heartwatch.core.wire import LineDecoder, Message, WireError, is_data_kind, parse_message

ORIGINAL = b'{"type": "heartbeat", "time": "2026-11-21 10:00:00"}'


def feed_bytewise(decoder: LineDecoder, data: bytes) -> list[bytes]:
    lines: list[bytes] = []
    for i in range(len(data)):
        lines += decoder.receive_data(data[i : i + 1])
    return lines


def test_parse_message_heartbeat_from_original_client() -> None:
    """The original client's message: a heartbeat with the sender's time and no service."""
    assert parse_message(ORIGINAL) == Message("heartbeat", None, "2026-11-21 10:00:00", None)


def test_parse_message_data_event_takes_dat_or_data() -> None:
    """Any other type word is a data event with payload ``data`` (or ``dat``, as originally)."""
    original = parse_message(b'{"type": "poiid", "dat": {"id": 7}}')
    assert original.kind == "poiid" and original.data == {"id": 7}
    assert is_data_kind(original.kind)
    assert parse_message('{"type": "poiid", "data": 1, "dat": 2}').data == 1


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("poiid", True),
        ("row.written:2-b_c", True),
        ("k" * 64, True),
        ("k" * 65, False),
        ("", False),
        ("two words", False),
        ("heartbeat", False),
        ("start", False),
        ("fail", False),
        (5, False),
        (None, False),
    ],
)
def test_is_data_kind_is_a_word_that_is_not_a_control_type(word: object, kind: bool) -> None:
    """One rule for every place a data kind is named: messages, pings, notices, config."""
    assert is_data_kind(word) is kind


def test_parse_message_keeps_service() -> None:
    """A named service is kept for routing."""
    assert parse_message(b'{"type":"heartbeat","service":"collector"}').service == "collector"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "json"),
        (b"\xff\xfe\x00junk", "encoding"),
        (b'{"type": "heartbeat", "status": "\xc3"}', "encoding"),
        ('{"type": "\udc80"}', "encoding"),
        (b"[1, 2]", "shape"),
        (b'"heartbeat"', "shape"),
        (b"{}", "type"),
        (b'{"type": ""}', "type"),
        (b'{"type": 5}', "type"),
        (b'{"type": "two words"}', "type"),
        (b'{"type": "heartbeat", "service": 3}', "service"),
        (b'{"type": "heartbeat", "service": ""}', "service"),
        (b'{"type": "heartbeat", "service": "' + b"s" * 65 + b'"}', "service"),
    ],
)
def test_parse_message_refuses_bad_input_with_a_code(raw: bytes, code: str) -> None:
    """Every kind of broken message is refused with a code that can be counted."""
    with pytest.raises(WireError) as caught:
        parse_message(raw)
    assert caught.value.code == code


def test_parse_message_ignores_untrusted_time_types() -> None:
    """A non-string ``time`` is dropped, never interpreted."""
    assert parse_message(b'{"type": "heartbeat", "time": 12345}').sent_time is None


def test_line_decoder_splits_lines_whole_and_bytewise() -> None:
    """The same lines come out whether the stream arrives in one piece or one byte at a time."""
    stream = b'{"type":"heartbeat"}\n\n{"type":"poiid"}\r\n{"type":"x"}'
    whole = LineDecoder()
    assert whole.receive_data(stream) == [b'{"type":"heartbeat"}', b'{"type":"poiid"}']
    assert whole.receive_eof() == b'{"type":"x"}'
    bytewise = LineDecoder()
    assert feed_bytewise(bytewise, stream) == [b'{"type":"heartbeat"}', b'{"type":"poiid"}']
    assert bytewise.receive_eof() == b'{"type":"x"}'


def test_line_decoder_original_framing_is_the_tail_at_eof() -> None:
    """One object per connection, no newline, ended by close: the tail is the message."""
    decoder = LineDecoder()
    assert decoder.receive_data(ORIGINAL) == []
    assert decoder.receive_eof() == ORIGINAL
    assert decoder.receive_eof() is None


def test_line_decoder_drops_oversized_line_and_recovers() -> None:
    """A line over the limit is dropped and counted; the next line is decoded as usual."""
    decoder = LineDecoder(max_line=1000)
    assert decoder.receive_data(b"x" * 600) == []
    assert decoder.receive_data(b"y" * 600) == []  # now over the limit: discarding
    assert decoder.oversized == 1
    assert decoder.receive_data(b"z" * 5000) == []
    assert decoder.receive_data(b'zzz\n{"type":"heartbeat"}\n') == [b'{"type":"heartbeat"}']
    assert decoder.oversized == 1


def test_line_decoder_drops_oversized_complete_line_in_one_chunk() -> None:
    """A too-long line that arrives complete in one chunk is dropped, its neighbours kept."""
    decoder = LineDecoder(max_line=100)
    lines = decoder.receive_data(b"a\n" + b"b" * 101 + b"\nc\n")
    assert lines == [b"a", b"c"]
    assert decoder.oversized == 1


def test_line_decoder_accepts_line_exactly_at_limit() -> None:
    """A line of exactly max_line bytes is kept."""
    decoder = LineDecoder(max_line=100)
    assert decoder.receive_data(b"q" * 100 + b"\n") == [b"q" * 100]


@given(st.lists(st.binary(max_size=300), max_size=30), st.integers(min_value=1, max_value=64))
def test_line_decoder_chunking_never_changes_the_lines(parts: list[bytes], chunk: int) -> None:
    """However the bytes are split into reads, the decoded lines are the same."""
    stream = b"".join(parts)
    reference = LineDecoder(max_line=256)
    expected = reference.receive_data(stream)
    decoder = LineDecoder(max_line=256)
    got: list[bytes] = []
    for start in range(0, len(stream), chunk):
        got += decoder.receive_data(stream[start : start + chunk])
    assert got == expected
    assert decoder.receive_eof() == reference.receive_eof()
    assert decoder.oversized == reference.oversized


@given(st.binary(max_size=2000))
def test_parse_message_never_raises_anything_but_wire_error(raw: bytes) -> None:
    """Arbitrary bytes either decode or raise WireError; nothing else escapes."""
    with contextlib.suppress(WireError):
        parse_message(raw)


@given(
    st.dictionaries(
        st.sampled_from(["type", "service", "time", "data", "dat", "extra"]),
        st.one_of(st.text(max_size=20), st.integers(), st.none(), st.lists(st.integers())),
    )
)
def test_parse_message_on_any_json_object(obj: dict[str, object]) -> None:
    """Any JSON object decodes or is refused with a code; accepted ones keep a valid type."""
    try:
        message = parse_message(json.dumps(obj))
    except WireError as error:
        assert error.code in {"type", "service"}
    else:
        assert message.kind == obj["type"]
