"""The original viewer's text keepalive, on a clock the test holds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heartwatch.core.textping import KeepaliveStep, TextKeepalive


def test_ping_after_quiet_then_drop_without_an_answer() -> None:
    keepalive = TextKeepalive(interval=20.0, answer_within=5.0, now=100.0)
    assert keepalive.next_deadline() == 120.0
    assert keepalive.step(119.9) is None
    assert keepalive.step(120.0) is KeepaliveStep.PING
    assert keepalive.next_deadline() == 125.0
    assert keepalive.step(124.0) is None  # a single ping per quiet spell
    assert keepalive.step(125.0) is KeepaliveStep.DROP


def test_an_answer_or_any_message_starts_the_quiet_again() -> None:
    keepalive = TextKeepalive(interval=20.0, answer_within=5.0, now=0.0)
    assert keepalive.step(20.0) is KeepaliveStep.PING
    keepalive.receive_message(22.0)  # "pong"
    assert keepalive.next_deadline() == 42.0
    assert keepalive.step(30.0) is None
    keepalive.receive_message(35.0)  # the viewer's own "ping", or anything
    assert keepalive.step(42.0) is None
    assert keepalive.step(55.0) is KeepaliveStep.PING


@pytest.mark.parametrize(("interval", "answer"), [(0, 5), (20, 0), (-1, 5)])
def test_bounds_must_be_positive(interval: float, answer: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        TextKeepalive(interval, answer, now=0.0)


@given(
    st.lists(st.tuples(st.floats(0, 30, allow_nan=False), st.booleans()), min_size=1, max_size=40)
)
def test_a_viewer_is_dropped_only_after_a_ping_went_unanswered(
    moves: list[tuple[float, bool]],
) -> None:
    """Whatever the timing: a drop always follows a ping by at least ``answer_within``, with
    nothing heard in between; and a viewer that answers every ping is never dropped."""
    keepalive = TextKeepalive(interval=10.0, answer_within=5.0, now=0.0)
    now, last_ping, heard_since_ping = 0.0, None, False
    for delay, answers in moves:
        now += delay
        step = keepalive.step(now)
        if step is KeepaliveStep.PING:
            last_ping, heard_since_ping = now, False
            if answers:
                keepalive.receive_message(now)
                heard_since_ping = True
        elif step is KeepaliveStep.DROP:
            # On the clock, as the deadline is set (ping time + 5 s): ``now - last_ping`` can
            # come out a rounding below 5.0 at the very deadline (11.213… + 5 = 16.213…).
            assert last_ping is not None and now >= last_ping + 5.0
            assert not heard_since_ping
            return
