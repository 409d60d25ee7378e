"""The heartbeat port end to end: the original client's framing, and junk that must not hurt."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e.support import Daemon, Pipeline, duration, scaled, send_tcp, send_udp, wait_until

pytestmark = pytest.mark.e2e

MAX_LINE = 64 * 1024  # the daemon's default max_line_bytes
SINK = "sink"


def test_original_client_framing_reaches_default_service(pipeline: Pipeline) -> None:
    """One object per connection, no newline, no service: it counts for default_service."""
    pipeline.write_config(
        [{"name": "collector", "heartbeat_timeout": duration(60), "startup_grace": duration(60)}],
        server={"default_service": "collector"},
    )
    daemon = pipeline.start_daemon()
    before = daemon.service("collector")
    assert (before["state"], before["messages"], before["last_heartbeat_age"]) == (
        "starting",
        0,
        None,
    )

    beat = {"type": "heartbeat", "time": "2026-11-21 10:00:00"}
    send_tcp(daemon.tcp_address, json.dumps(beat).encode())
    status = daemon.wait_service("collector", lambda s: s["messages"] == 1, "the heartbeat")
    assert status["last_heartbeat_age"] is not None
    assert status["state"] == "running"

    item = {"type": "poiid", "time": "2026-11-21 10:00:05", "dat": {"poi": 42, "name": "x"}}
    send_tcp(daemon.tcp_address, json.dumps(item).encode())
    status = daemon.wait_service("collector", lambda s: "poiid" in s["data"], "the poiid event")
    assert status["messages"] == 2
    assert status["data"]["poiid"]["count"] == 1
    assert status["data"]["poiid"]["last_sent_time"] == "2026-11-21 10:00:05"

    send_udp(daemon.tcp_address, json.dumps(beat).encode())
    daemon.wait_service("collector", lambda s: s["messages"] == 3, "the UDP heartbeat")


# -- fuzz: one daemon for the module, since hypothesis runs many examples per test ------------


@pytest.fixture(scope="module")
def sink_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon watching one service, ``sink``, that no fuzz input names."""
    pipeline = Pipeline(tmp_path_factory.mktemp("fuzz"))
    pipeline.write_config([{"name": SINK}])
    try:
        yield pipeline.start_daemon()
    finally:
        leftovers = pipeline.close()
        print(pipeline.report())
    assert not leftovers


def line(**fields: Any) -> bytes:
    return json.dumps(fields).encode() + b"\n"


VALID = line(type="heartbeat", service=SINK)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
not_sink = st.text(max_size=70).filter(lambda s: s != SINK)
messages = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["heartbeat", "poiid", "", "a b", "x" * 65]) | json_values,
        "service": st.sampled_from(["nobody", "", "../etc", "-x", "y" * 65]) | not_sink,
        "time": json_values,
        "dat": json_values,
    },
)
payloads = st.one_of(
    st.binary(max_size=2048),
    st.lists(st.binary(max_size=100), max_size=8).map(b"\n".join),  # junk with newlines
    json_values.map(lambda v: json.dumps(v).encode() + b"\n"),  # arrays, strings, numbers
    messages.map(lambda m: json.dumps(m).encode() + b"\n"),  # unknown services, bad types
    messages.map(lambda m: json.dumps(m).encode()[:-1] + b"\n"),  # broken JSON
    st.integers(MAX_LINE + 1, MAX_LINE + 4096).map(lambda n: b"[" + b"1" * n + b"\n"),
)
transports = st.sampled_from(["tcp-once", "tcp-persistent", "tcp-half-open", "udp"])


def messages_of(daemon: Daemon) -> int:
    count: int = daemon.service(SINK)["messages"]
    return count


def assert_answers(daemon: Daemon) -> None:
    """The daemon lives, answers its API, and counts a valid heartbeat on a fresh connection."""
    assert daemon.popen.poll() is None, daemon.stderr_text()
    started = time.monotonic()
    before = messages_of(daemon)
    assert time.monotonic() - started < scaled(5.0), "the API answered, but slowly"
    send_tcp(daemon.tcp_address, VALID)
    wait_until(lambda: messages_of(daemon) == before + 1, "a valid heartbeat to be counted")


def test_ingest_survives_fuzzed_input(sink_daemon: Daemon) -> None:
    """After arbitrary bytes over TCP and UDP, the daemon answers and counts valid heartbeats."""
    address = sink_daemon.tcp_address
    with contextlib.ExitStack() as stack:
        half_open: list[socket.socket] = []

        @stack.callback
        def close_half_open() -> None:
            for sock in half_open:
                sock.close()

        persistent = stack.enter_context(socket.create_connection(address, timeout=scaled(5)))

        @settings(
            max_examples=200,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(payload=payloads, transport=transports)
        def feed(payload: bytes, transport: str) -> None:
            if transport == "tcp-once":
                send_tcp(address, payload)
            elif transport == "tcp-persistent":
                persistent.sendall(payload)
            elif transport == "tcp-half-open" and len(half_open) < 50:
                sock = socket.create_connection(address, timeout=scaled(5))
                half_open.append(sock)
                sock.sendall(payload.replace(b"\n", b" ")[:4096])  # a line never finished
            elif len(payload) < 60000:  # a datagram's limit
                send_udp(address, payload)

        feed()
        assert_answers(sink_daemon)
        # The persistent connection is still open and, after a newline, carries valid lines.
        before = messages_of(sink_daemon)
        persistent.sendall(b"\n" + VALID)
        wait_until(lambda: messages_of(sink_daemon) == before + 1, "a beat on the old connection")


def test_ingest_keeps_serving_with_many_idle_connections(sink_daemon: Daemon) -> None:
    """300 idle, 20 half-open and 20 half-closed connections lock out neither clients nor API."""
    address = sink_daemon.tcp_address
    with contextlib.ExitStack() as stack:
        for _ in range(300):
            stack.enter_context(socket.create_connection(address, timeout=scaled(5)))
        for index in range(40):
            sock = stack.enter_context(socket.create_connection(address, timeout=scaled(5)))
            sock.sendall(b'{"type": "heartbeat", "service": "' + str(index).encode())
            if index % 2:
                sock.shutdown(socket.SHUT_WR)  # we said all, but never read the close
        assert_answers(sink_daemon)
        before = messages_of(sink_daemon)
        send_udp(address, VALID)
        wait_until(lambda: messages_of(sink_daemon) == before + 1, "a UDP beat")
    assert_answers(sink_daemon)


def test_ingest_bad_lines_leave_connection_usable(sink_daemon: Daemon) -> None:
    """After broken JSON, junk, an oversized line and an unknown service, the same connection
    still delivers a valid heartbeat."""
    bad = [
        b"{broken\n",
        b"\x00\xff\xfe junk \x80\n\n\r\n",
        b'[1, 2, 3]\n"just a string"\n42\n',
        b'{"type": "heartbeat", "service": "nobody"}\n',
        b'{"type": 7, "service": "sink"}\n',
        b'{"type": "heartbeat", "service": "sink", "x": "' + b"y" * MAX_LINE + b'"}\n',
    ]
    with socket.create_connection(sink_daemon.tcp_address, timeout=scaled(5)) as sock:
        before = messages_of(sink_daemon)
        for chunk in bad:
            sock.sendall(chunk)
        sock.sendall(VALID)
        wait_until(lambda: messages_of(sink_daemon) == before + 1, "the valid line after junk")
        sock.sendall(VALID)
        wait_until(lambda: messages_of(sink_daemon) == before + 2, "a second valid line")
    assert_answers(sink_daemon)
