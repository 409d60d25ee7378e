"""Signed commands: what an agent runs, and everything it refuses, with the reason."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from heartwatch.core.fleetcommands import (
    CLOCK_SKEW,
    Command,
    CommandRefused,
    judge,
    parse_private_key,
    parse_public_key,
    private_key_text,
    public_key_text,
    reply_body,
    sign,
)

HUB = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()
NOW = 1_764_590_000.0
ID = "a" * 32


def command(**changes: Any) -> Command:
    fields: dict[str, Any] = {
        "id": ID,
        "host": "farm-07",
        "service": "collector@2",
        "verb": "restart",
        "issued_at": NOW,
        "expires_at": NOW + 60,
        "issued_by": "hub-1",
    }
    fields.update(changes)
    return Command(**fields)


def run(data: bytes, *, now: float = NOW, ran: frozenset[str] = frozenset()) -> Command:
    return judge(
        data,
        host="farm-07",
        now=now,
        trusted=[parse_public_key(public_key_text(HUB.public_key()))],
        already_ran=ran.__contains__,
    )


def refusal(data: bytes, **kwargs: Any) -> str:
    with pytest.raises(CommandRefused) as refused:
        run(data, **kwargs)
    return refused.value.code


def test_a_signed_command_for_this_host_runs() -> None:
    assert run(sign(command(), HUB)) == command()


def test_any_trusted_key_will_do() -> None:
    """Two hubs, or a key being rotated: the agent trusts each key in its list."""
    data = sign(command(), STRANGER)
    assert judge(
        data,
        host="farm-07",
        now=NOW,
        trusted=[HUB.public_key(), STRANGER.public_key()],
        already_ran=lambda _id: False,
    )


def test_a_command_signed_by_another_key_is_forged() -> None:
    assert refusal(sign(command(), STRANGER)) == "forged"


def test_a_changed_field_breaks_the_signature() -> None:
    signed = json.loads(sign(command(), HUB))
    signed["command"]["service"] = "storage"  # someone on the broker retargets it
    assert refusal(json.dumps(signed).encode()) == "forged"


def test_a_signature_moved_to_another_command_is_forged() -> None:
    signed = json.loads(sign(command(), HUB))
    other = json.loads(sign(command(id="b" * 32), HUB))
    signed["signature"] = other["signature"]
    assert refusal(json.dumps(signed).encode()) == "forged"


def test_a_command_for_another_host_is_refused() -> None:
    assert refusal(sign(command(host="farm-08"), HUB)) == "wrong_host"


def test_an_expired_command_never_runs_late() -> None:
    with pytest.raises(CommandRefused) as refused:
        run(sign(command(), HUB), now=NOW + 61)
    assert refused.value.code == "expired"
    assert "never ran" in refused.value.reason


def test_a_command_from_the_far_future_is_refused() -> None:
    data = sign(command(issued_at=NOW + CLOCK_SKEW + 5, expires_at=NOW + 500), HUB)
    assert refusal(data) == "future"
    assert run(sign(command(issued_at=NOW + CLOCK_SKEW - 5), HUB))  # skew within bounds


def test_a_replayed_command_is_refused() -> None:
    assert refusal(sign(command(), HUB), ran=frozenset({ID})) == "replayed"


@pytest.mark.parametrize(
    "changes",
    [
        {"id": "not-hex"},
        {"host": "a/b"},
        {"verb": "exec"},
        {"service": None},  # restart needs one
        {"verb": "reload", "service": "collector"},  # reload takes none
        {"expires_at": NOW - 1},
        {"expires_at": NOW + 2 * 86400},
        {"service": "<script>"},
    ],
)
def test_malformed_commands_are_refused_before_their_signature_counts(
    changes: dict[str, Any],
) -> None:
    assert refusal(sign(command(**changes), HUB)) == "malformed"


def test_a_reload_names_no_service() -> None:
    assert run(sign(command(verb="reload", service=None), HUB)).service is None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{", "malformed"),
        (b'{"command": 1}', "malformed"),
        (b'{"command": {}, "signature": "%%%"}', "unsigned"),
        (b"x" * 20_000, "malformed"),
    ],
)
def test_garbage_is_refused(data: bytes, code: str) -> None:
    assert refusal(data) == code


@given(st.binary(max_size=200))
def test_no_bytes_make_judge_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(CommandRefused):
        run(data)


def test_keys_round_trip_through_their_text() -> None:
    private = parse_private_key(private_key_text(HUB))
    assert public_key_text(private.public_key()) == public_key_text(HUB.public_key())
    with pytest.raises(ValueError, match="32 bytes"):
        parse_public_key(base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="base64"):
        parse_public_key("not base64!")


def test_a_reply_names_the_command() -> None:
    assert reply_body(command(), "done", "restarted") == {
        "command": ID,
        "service": "collector@2",
        "verb": "restart",
        "status": "done",
        "reason": "restarted",
    }
    assert reply_body({"id": "x", "service": 3}, "refused", "forged")["service"] is None
