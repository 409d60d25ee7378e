"""The fleet's wire format: what decodes, what is refused and how it is named, batches (each
bad element refused alone, an envelope of another host than its key refused), routing keys."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heartwatch.core.fleetwire import (
    HOST_WORD,
    MAX_BATCH,
    MAX_MESSAGE_BYTES,
    Envelope,
    FleetWireError,
    batch_routing_key,
    decode,
    decode_batch,
    encode,
    encode_batch,
    escape_word,
    event_routing_key,
    log_routing_key,
    parse_routing_key,
    routing_key,
    unescape_word,
)

BOOT = "0123456789abcdef0123456789abcdef"


def envelope(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "v": 1,
        "type": "entry",
        "host": "farm-07",
        "boot": BOOT,
        "seq": 1,
        "at": 1764590000.5,
        "body": {"kind": "transition", "service": "collector@2"},
    }
    message.update(changes)
    return message


def raw(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def test_an_envelope_survives_encoding() -> None:
    sent = Envelope("snapshot", "farm-07.example.org", BOOT, 0, 1.5, {"services": [], "é": "ü"})
    assert decode(encode(sent)) == sent
    assert "é".encode() in encode(sent)  # UTF-8 as it is, not \\u escapes


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"v": 2}, "version"),
        ({"v": None}, "version"),
        ({"type": "pickle"}, "type"),
        ({"type": ["entry"]}, "type"),
        ({"host": ""}, "host"),
        ({"host": "farm/07"}, "host"),
        ({"host": "<b>x</b>"}, "host"),
        ({"host": "x" * 129}, "host"),
        ({"boot": "ABC"}, "boot"),
        ({"boot": BOOT.upper()}, "boot"),
        ({"seq": 0}, "seq"),  # an event is numbered from 1
        ({"seq": -1}, "seq"),
        ({"seq": True}, "seq"),
        ({"seq": 1.0}, "seq"),
        ({"seq": 2**63}, "seq"),
        ({"at": "now"}, "at"),
        ({"at": -1}, "at"),
        ({"at": 1e300}, "at"),
        ({"body": []}, "body"),
    ],
)
def test_a_broken_envelope_is_refused_with_what_is_wrong(change: dict[str, Any], code: str) -> None:
    with pytest.raises(FleetWireError) as refused:
        decode(raw(envelope(**change)))
    assert refused.value.code == code


def test_reports_may_carry_seq_zero() -> None:
    """A heartbeat before any event says "no event yet"."""
    assert decode(raw(envelope(type="heartbeat", seq=0, body={}))).seq == 0


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\xfe", "encoding"),
        (b"{", "json"),
        (b"[1, 2]", "shape"),
        (b"null", "shape"),
        (b"NaN", "json"),
        (b'{"v": 1, "body": {"x": Infinity}}', "json"),
    ],
)
def test_what_is_not_an_envelope_is_named(data: bytes, code: str) -> None:
    with pytest.raises(FleetWireError) as refused:
        decode(data)
    assert refused.value.code == code


def test_a_message_nested_too_deeply_is_refused_by_name() -> None:
    deep = b'{"v": 1, "body": {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}"
    with pytest.raises(FleetWireError) as refused:
        decode(deep)
    assert refused.value.code == "json"
    assert "nested too deeply" in refused.value.detail


def test_an_oversized_message_is_refused_before_parsing() -> None:
    with pytest.raises(FleetWireError) as refused:
        decode(b" " * (MAX_MESSAGE_BYTES + 1))
    assert refused.value.code == "size"


@given(st.binary(max_size=300))
def test_no_bytes_make_decode_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(FleetWireError):
        decode(data)


names = st.text(alphabet="abc.%-_@2E", min_size=1, max_size=20)


@given(names, st.one_of(st.none(), names), st.sampled_from(["transition", "heartbeat"]))
def test_routing_keys_keep_dotted_names_apart(host: str, service: str | None, kind: str) -> None:
    key = routing_key(host, service, kind)
    assert key.count(".") == 2
    assert parse_routing_key(key) == (host, service, kind)


def test_a_service_named_like_the_host_word_is_not_the_host() -> None:
    """The host's own word is ``-``; a service cannot be named ``-`` (names start alnum)."""
    assert routing_key("farm-07", None, "heartbeat") == f"farm-07.{HOST_WORD}.heartbeat"
    assert escape_word("a.b%c") == "a%2Eb%25c"
    assert unescape_word(escape_word("%2E.")) == "%2E."


def test_entries_route_by_service_and_kind_and_the_rest_by_host() -> None:
    entry = decode(raw(envelope()))
    assert event_routing_key(entry) == "farm-07.collector@2.transition"
    daemon = decode(raw(envelope(body={"kind": "daemon", "service": None})))
    assert event_routing_key(daemon) == "farm-07.-.daemon"
    counts = decode(raw(envelope(type="counts", body={"minute": 60, "counts": []})))
    assert event_routing_key(counts) == "farm-07.-.counts"
    reply = decode(raw(envelope(type="reply", body={"service": "emu.1", "command": "x"})))
    assert event_routing_key(reply) == "farm-07.emu%2E1.reply"


def test_a_key_of_another_shape_is_refused() -> None:
    with pytest.raises(FleetWireError):
        parse_routing_key("farm-07.collector")


# --- batches --------------------------------------------------------------------------------

seqs = st.lists(st.integers(min_value=1, max_value=2**40), min_size=1, max_size=MAX_BATCH)


@given(seqs, st.sampled_from(["entry", "counts", "reply"]))
def test_a_batch_of_good_envelopes_round_trips(numbers: list[int], kind: str) -> None:
    sent = [
        Envelope(kind, "farm-07", BOOT, seq, 1764590000.0 + seq % 1000, {"n": seq, "é": "ü"})  # type: ignore[arg-type]
        for seq in numbers
    ]
    good, bad = decode_batch(encode_batch([encode(e) for e in sent]), "farm-07")
    assert good == sent and bad == []


bad_elements = st.sampled_from(
    [
        envelope(v=2),
        envelope(seq=0),
        envelope(host="farm-08"),  # another host than the routing key's
        envelope(type="heartbeat", seq=3),  # a report: never in a batch
        envelope(body=[]),
        [1, 2],
        "text",
        None,
    ]
)


@given(st.lists(st.one_of(st.integers(1, 1000), bad_elements), min_size=1, max_size=60))
def test_bad_elements_of_a_batch_do_not_take_the_good_ones_down(
    elements: list[Any],
) -> None:
    batch = [envelope(seq=e) if type(e) is int else e for e in elements]
    good, bad = decode_batch(json.dumps(batch).encode(), "farm-07")
    assert [e.seq for e in good] == [e for e in elements if type(e) is int]
    assert len(bad) == sum(1 for e in elements if type(e) is not int)
    assert all(isinstance(error, FleetWireError) for error in bad)


def test_a_batch_names_what_is_wrong_with_each_bad_element() -> None:
    batch = [envelope(seq=1), envelope(host="farm-08", seq=2), envelope(type="snapshot"), 7]
    good, bad = decode_batch(json.dumps(batch).encode(), "farm-07")
    assert [e.seq for e in good] == [1]
    assert [error.code for error in bad] == ["host_mismatch", "type", "shape"]


def test_a_single_envelope_must_come_from_its_routing_keys_host() -> None:
    assert decode_batch(raw(envelope(type="heartbeat", seq=0)), "farm-07")[0][0].host == "farm-07"
    with pytest.raises(FleetWireError) as refused:
        decode_batch(raw(envelope()), "farm-08")
    assert refused.value.code == "host_mismatch"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"[]", "batch"),
        (json.dumps([envelope(seq=n) for n in range(1, MAX_BATCH + 2)]).encode(), "batch"),
        (b"17", "shape"),
        (b'"x"', "shape"),
        (b"[", "json"),
        (b"\xff", "encoding"),
    ],
)
def test_a_message_neither_an_envelope_nor_a_batch_is_refused_whole(data: bytes, code: str) -> None:
    with pytest.raises(FleetWireError) as refused:
        decode_batch(data, "farm-07")
    assert refused.value.code == code


@given(st.binary(max_size=300))
def test_no_bytes_make_decode_batch_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(FleetWireError):
        decode_batch(data, "farm-07")


def test_batches_and_log_streams_have_keys_of_their_own() -> None:
    assert batch_routing_key("farm.07") == "farm%2E07.-.batch"
    assert parse_routing_key(batch_routing_key("farm.07")) == ("farm.07", None, "batch")
    key = log_routing_key("farm.07", "emu.1", "ab12")
    assert key == "farm%2E07.emu%2E1.log.ab12"
    with pytest.raises(FleetWireError):
        parse_routing_key(key)  # four words: never read as an event's key
