"""Pure protocol pieces: sd_notify datagrams, ping paths, the queue-stall rule, and the
watchdog inputs they drive (ready notices, reported failures, stalls, timeout changes)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heartwatch.config import parse_config
from heartwatch.core.events import ServiceState, Spawn, Stop
from heartwatch.core.ping import WHAT_PATTERN, parse_ping
from heartwatch.core.sdnotify import Notice, NoticeError, parse_notice
from heartwatch.core.stall import QueueStall
from heartwatch.core.watchdog import Watchdog
from heartwatch.core.wire import FAIL, HEARTBEAT, START, Message

S = ServiceState


def test_parse_notice_honours_the_documented_keys() -> None:
    """READY, WATCHDOG, STATUS, STOPPING, the timeouts and heartwatch's event key."""
    notice = parse_notice(
        b"READY=1\nSTATUS=Booting\nWATCHDOG=1\nWATCHDOG_USEC=30000000\n"
        b"EXTEND_TIMEOUT_USEC=5000000\nX_HEARTWATCH_EVENT=poiid\nX_HEARTWATCH_EVENT=img\n"
        b"MAINPID=4\nSOMETHING_NEW=1\n"
    )
    assert notice == Notice(
        ready=True,
        alive=True,
        status="Booting",
        watchdog_timeout=30.0,
        extend_timeout=5.0,
        events=("poiid", "img"),
    )


def test_parse_notice_trigger_and_stopping() -> None:
    """WATCHDOG=trigger asks to be treated as failed; STOPPING=1 says it is going down."""
    assert parse_notice(b"WATCHDOG=trigger").trigger
    assert parse_notice(b"STOPPING=1").stopping
    assert parse_notice(b"").empty


@pytest.mark.parametrize("datagram", [b"\xff\xfe", b"READY", b"just words\n"])
def test_parse_notice_refuses_what_is_not_sd_notify(datagram: bytes) -> None:
    """Binary junk and lines without '=' are refused, to be counted."""
    with pytest.raises(NoticeError):
        parse_notice(datagram)


@pytest.mark.parametrize(
    "datagram",
    [
        b"X_HEARTWATCH_EVENT=two words",
        b"X_HEARTWATCH_EVENT=fail",
        b"X_HEARTWATCH_EVENT=" + b"k" * 65,
    ],
)
def test_parse_notice_refuses_an_event_that_is_not_a_data_kind(datagram: bytes) -> None:
    """An event's name follows the rule of a message's type: a control word or a phrase is no
    data kind (it would otherwise become a kind no message could send)."""
    with pytest.raises(NoticeError, match="not a data kind"):
        parse_notice(b"READY=1\n" + datagram)


@given(st.binary(max_size=300))
def test_parse_notice_only_raises_notice_error(datagram: bytes) -> None:
    """Any datagram decodes or raises NoticeError."""
    with contextlib.suppress(NoticeError):
        parse_notice(datagram)


@pytest.mark.parametrize(
    ("what", "body", "expected"),
    [
        (None, None, Message(HEARTBEAT)),
        ("heartbeat", "ignored", Message(HEARTBEAT)),
        ("start", None, Message(START)),
        ("fail", "disk full\nmore", Message(FAIL, reason="disk full")),
        ("fail", None, Message(FAIL, reason="fail ping")),
        ("0", None, Message(HEARTBEAT)),
        ("3", None, Message(FAIL, reason="exit code 3")),
        ("255", None, Message(FAIL, reason="exit code 255")),
        ("256", None, "exit code must be 0-255"),
        ("poiid", "payload", Message("poiid", data="payload")),
        ("1st.pass", None, Message("1st.pass")),
        ("bad kind!", None, "not a data kind"),
        ("k" * 65, None, "not a data kind"),
    ],
)
def test_parse_ping_paths(what: str | None, body: str | None, expected: object) -> None:
    """Healthchecks-style paths map to heartbeats, starts, failures and data events."""
    assert parse_ping(what, body) == expected


@given(st.from_regex(WHAT_PATTERN, fullmatch=True))
def test_every_documented_ping_path_is_taken(what: str) -> None:
    """What the API document allows after the service, ``parse_ping`` accepts."""
    assert isinstance(parse_ping(what, None), Message)


def test_queue_stall_only_while_messages_wait_and_depth_does_not_fall() -> None:
    """Stalled after stalled_after with depth > 0 and no decrease; empty or falling is fine."""
    stall = QueueStall(stalled_after=60.0)
    stall.reset(0.0)
    stall.receive_depth(10, 1.0)  # the first reading is the baseline
    assert stall.deadline() == 61.0
    stall.receive_depth(8, 30.0)
    assert stall.deadline() == 90.0
    stall.receive_depth(12, 80.0)  # grew: no progress
    assert stall.stalled(89.9) is None
    assert stall.stalled(90.0) == "queue not going down for 60.0 s (12 ready)"
    stall.receive_depth(0, 95.0)
    assert stall.deadline() is None


def test_queue_stall_broker_problem_suspends_the_verdict() -> None:
    """While the depth cannot be read, the consumer is never called stalled."""
    stall = QueueStall(stalled_after=10.0)
    stall.reset(0.0)
    stall.receive_depth(5, 0.0)
    stall.receive_broker_problem("broker unreachable")
    assert stall.stalled(100.0) is None
    stall.receive_depth(5, 101.0)
    assert stall.stalled(101.0) is not None  # no progress since 0.0


def make(**service: Any) -> Watchdog:
    config = parse_config({"service": [{"name": "svc", "command": "x", **service}]})
    watchdog = Watchdog([s.spec() for s in config.service], random=lambda: 0.5)
    watchdog.receive_start(["svc"], 0.0, "start")
    assert watchdog.actions_to_take() == [Spawn("svc", "started")]
    return watchdog


def test_ready_notify_waits_for_the_notice_not_the_first_message() -> None:
    """ready = "notify": WATCHDOG=1-style messages do not make it ready; READY=1 does."""
    watchdog = make(ready="notify", startup_grace=30, heartbeat_timeout=5)
    watchdog.receive_message("svc", "heartbeat", 1.0)
    assert watchdog.record("svc").state is S.STARTING
    watchdog.receive_ready("svc", 2.0)
    assert watchdog.record("svc").state is S.RUNNING
    assert watchdog.next_deadline() == 7.0


def test_ready_notify_grace_expiry_names_the_notice() -> None:
    """No READY=1 within the grace: unresponsive, saying what was missing."""
    watchdog = make(ready="notify", startup_grace=30)
    watchdog.tick(30.0)
    assert watchdog.record("svc").reason == "no ready notice within 30.0 s startup grace"


def test_reported_failure_recovers_the_service() -> None:
    """A fail message makes a running service unresponsive and restarts it."""
    watchdog = make(heartbeat_timeout=60)
    watchdog.receive_message("svc", "heartbeat", 1.0)
    watchdog.receive_failure_report("svc", "exit code 3", 2.0)
    assert watchdog.actions_to_take() == [Stop("svc", "reported failure: exit code 3")]


def test_watchdog_usec_and_extend_timeout_change_this_run() -> None:
    """WATCHDOG_USEC sets the heartbeat timeout; EXTEND_TIMEOUT_USEC stretches startup."""
    watchdog = make(ready="notify", startup_grace=10, heartbeat_timeout=60)
    watchdog.receive_extend_startup("svc", 30.0, 5.0)
    assert watchdog.next_deadline() == 35.0
    watchdog.receive_ready("svc", 20.0)
    watchdog.receive_heartbeat_timeout("svc", 2.0, 20.0)
    assert watchdog.next_deadline() == 22.0


def test_queue_stall_restarts_a_beating_consumer() -> None:
    """A running consumer that beats while its queue does not move is recovered."""
    watchdog = make(
        heartbeat_timeout=10, queue={"name": "items", "stalled_after": 30, "check_interval": 1}
    )
    watchdog.receive_message("svc", "heartbeat", 1.0)
    watchdog.receive_queue_depth("svc", 7, 2.0)
    now = 2.0
    while now < 40.0:
        now += 1.0
        watchdog.receive_message("svc", "heartbeat", now)
        watchdog.receive_queue_depth("svc", 7, now)
        watchdog.tick(now)
    record = watchdog.record("svc")
    assert record.state is S.RESTARTING
    assert record.reason.startswith("queue not going down for 30.0 s (7 ready)")
