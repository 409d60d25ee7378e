"""The client library: never blocks, never raises, coalesces beats, keeps and reports events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from heartwatch import AsyncHeartbeat, Heartbeat
from heartwatch.client import wallclock
from heartwatch.client.address import token_for
from heartwatch.client.outbox import Outbox
from heartwatch.integrations.pika import beating, poll

# Generous: the goal (100 µs) is measured by bench/client.py; this only catches real blocking
# (a blocking connect to an address that does not answer would take minutes).
CALL_BOUND = 1.0


def outbox(
    service: str | None, max_events: int = 1000, token: str | None = None, now: float = 0.0
) -> Outbox:
    """An outbox on a clock that stands still (events are stamped from it)."""
    return Outbox(
        service, max_events, token, clock=lambda: now, local_second=lambda second: f"@{second}"
    )


def lines_of(data: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in data.splitlines() if line]


def test_outbox_coalesces_beats_and_orders_events_first() -> None:
    """Many beats while blocked are one beat; events keep their order and come first."""
    box = outbox("svc")
    for _ in range(100):
        box.beat()
    box.event("poiid", {"id": 1})
    box.event("poiid", {"id": 2})
    sent = lines_of(box.take_lines())
    assert [m["type"] for m in sent] == ["poiid", "poiid", "heartbeat"]
    assert [m["data"] for m in sent[:2]] == [{"id": 1}, {"id": 2}]
    assert box.take_lines() == b""


def test_outbox_bound_drops_oldest_and_reports_the_count_once() -> None:
    """Past max_events the oldest go; the next heartbeat carries how many."""
    box = outbox("svc", max_events=3)
    for i in range(5):
        box.event("x", i)
    box.beat()
    sent = lines_of(box.take_lines())
    assert [m.get("data") for m in sent[:3]] == [2, 3, 4]
    assert sent[3] == {"type": "heartbeat", "service": "svc", "dropped": 2}
    box.beat()
    assert lines_of(box.take_lines()) == [{"type": "heartbeat", "service": "svc"}]


def test_outbox_put_back_keeps_whole_lines_and_counts_a_torn_event() -> None:
    """After a broken send, unstarted lines come back in order; a half-sent event is counted."""
    box = outbox("svc")
    box.event("a")
    box.event("b")
    box.event("c")
    box.beat()
    data = box.take_lines()
    first_newline = data.index(b"\n")
    box.put_back(data[first_newline - 5 :], starts_line=False)
    resent = lines_of(box.take_lines())
    assert [m["type"] for m in resent] == ["b", "c", "heartbeat"]
    assert resent[-1]["dropped"] == 1


def test_outbox_stamps_events_from_the_clock_it_is_given() -> None:
    """An event's time is the injected clock's (or the one given), as local time with
    milliseconds; each second is formatted once, then reused."""
    formatted: list[int] = []
    moments = iter([1000.25, 1000.5, 1001.0])

    def local_second(second: int) -> str:
        formatted.append(second)
        return f"second {second}"

    box = Outbox("svc", clock=lambda: next(moments), local_second=local_second)
    for _ in range(3):
        box.event("x")
    box.event("y", sent_at=5.125)
    sent = lines_of(box.take_lines())
    assert [m["time"] for m in sent] == [
        "second 1000.250",
        "second 1000.500",
        "second 1001.000",
        "second 5.125",
    ]
    assert formatted == [1000, 1001, 5]


def test_the_wall_clock_writes_local_time_as_the_original_client() -> None:
    """The drivers' clock: local ``YYYY-MM-DD HH:MM:SS`` for a whole second."""
    second = int(time.time())
    assert wallclock.local_second(second) == time.strftime(
        "%Y-%m-%d %H:%M:%S", time.localtime(second)
    )


def test_outbox_status_and_ready_ride_on_the_heartbeat() -> None:
    """status() and ready() produce one heartbeat carrying both."""
    box = outbox(None)
    box.status("warming up")
    box.ready()
    assert lines_of(box.take_lines()) == [
        {"type": "heartbeat", "ready": True, "status": "warming up"}
    ]


class Listener:
    """A TCP listener on port 0 that collects what clients send, in a thread."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.05)
        self.port = self.server.getsockname()[1]
        self.received = bytearray()
        self.connections: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # a client may reset: that ends its stream
            while chunk := conn.recv(65536):
                self.received.extend(chunk)

    def messages(self) -> list[dict[str, object]]:
        data = bytes(self.received)
        return lines_of(data[: data.rfind(b"\n") + 1])

    def close(self) -> None:
        self._stop = True
        self.server.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def wait(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def timed(call: object) -> float:
    start = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - start


def test_heartbeat_reaches_listener_with_env_defaults(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no arguments the client uses HEARTWATCH_ADDR and HEARTWATCH_SERVICE."""
    monkeypatch.setenv("HEARTWATCH_ADDR", listener.address)
    monkeypatch.setenv("HEARTWATCH_SERVICE", "collector")
    with Heartbeat() as hb:
        hb.beat()
        hb.event("poiid", {"id": 7})
        assert hb.flush(2.0)
    wait(lambda: len(listener.messages()) >= 2)
    messages = listener.messages()
    assert {"type": "heartbeat", "service": "collector"} in messages
    assert any(m["type"] == "poiid" and m["data"] == {"id": 7} for m in messages)


def test_beat_never_blocks_or_raises_when_daemon_is_down() -> None:
    """A refused address: every call returns at once, events are kept up to the bound."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        hb = Heartbeat("svc", f"127.0.0.1:{port}", max_events=10)
        worst = max(timed(hb.beat) for _ in range(200))
        for i in range(20):
            hb.event("x", i)
        assert worst < CALL_BOUND
        assert not hb.connected
        assert hb.dropped == 10
        hb.close()


def test_beat_never_blocks_when_address_does_not_answer() -> None:
    """A listener whose backlog is full never completes the handshake; beat() still returns."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    address = server.getsockname()
    fillers = []
    for _ in range(8):  # fill the accept queue so further SYNs are dropped
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(address)
        fillers.append(filler)
    try:
        hb = Heartbeat("svc", address, connect_timeout=0.2)
        worst = max(timed(hb.beat) for _ in range(300))
        assert worst < CALL_BOUND
        hb.close()
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_beats_are_rate_limited_but_events_are_not(listener: Listener) -> None:
    """Within min_interval extra beats wait (coalesced); an event goes out at once, with them."""
    now = [100.0]
    hb = Heartbeat("svc", listener.address, min_interval=1.0, clock=lambda: now[0])
    hb.beat()
    wait(lambda: len(listener.messages()) == 1)
    for _ in range(1000):
        hb.beat()
    now[0] += 0.5
    hb.beat()
    time.sleep(0.05)
    assert len(listener.messages()) == 1  # nothing more sent inside the interval
    hb.event("poiid", 1)
    wait(lambda: len(listener.messages()) == 3)
    assert [m["type"] for m in listener.messages()] == ["heartbeat", "poiid", "heartbeat"]
    now[0] += 1.0
    hb.beat()  # past the interval: sent
    wait(lambda: len(listener.messages()) == 4)
    hb.close()


def test_client_never_raises_on_unencodable_events(listener: Listener) -> None:
    """Non-string keys and huge ints are encoded another way; what cannot be, is counted."""
    hb = Heartbeat("svc", listener.address)
    hb.event("poiid", {1: "a"})
    hb.event("poiid", {"n": 2**70})
    cyclic: list[object] = []
    cyclic.append(cyclic)
    hb.event("poiid", cyclic)
    hb.beat()
    assert hb.flush(2.0)
    wait(lambda: sum(1 for m in listener.messages() if m["type"] == "poiid") == 2)
    assert hb.dropped == 1
    hb.close()


def test_beat_never_blocks_when_daemon_stops_reading() -> None:
    """A daemon that accepts but never reads: once the socket buffers fill, calls still return."""
    server = socket.create_server(("127.0.0.1", 0))
    hb = Heartbeat("svc", server.getsockname(), max_events=50)
    hb.beat()
    conn, _ = server.accept()
    try:
        payload = "x" * 4000
        worst = max(timed(lambda: hb.event("big", payload)) for _ in range(2000))
        assert worst < CALL_BOUND
        assert hb.connected
        assert hb.dropped > 0  # ~8 MB offered: the kernel took what it could, the rest counted
    finally:
        hb.close()
        conn.close()
        server.close()


def test_events_buffered_while_down_arrive_after_the_daemon_comes_back(
    listener: Listener,
) -> None:
    """Events sent while the daemon is away are delivered, in order, once it is back."""
    port = listener.port
    listener.close()
    hb = Heartbeat("svc", f"127.0.0.1:{port}", reconnect_initial=0.01, reconnect_max=0.05)
    for i in range(5):
        hb.event("poiid", i)
        hb.beat()
    assert not hb.connected
    back = socket.create_server(("127.0.0.1", port))
    try:
        wait(lambda: (hb.beat(), hb.connected)[1], 5)
        conn, _ = back.accept()
        hb.flush(2.0)
        conn.settimeout(2)
        data = b""
        while data.count(b"\n") < 6:
            data += conn.recv(65536)
        sent = lines_of(data)
        assert [m["data"] for m in sent if m["type"] == "poiid"] == [0, 1, 2, 3, 4]
        conn.close()
    finally:
        back.close()
        hb.close()


def test_heartbeat_notices_daemon_restart_and_reconnects(listener: Listener) -> None:
    """When the daemon closes the connection, the client reconnects by itself."""
    hb = Heartbeat("svc", listener.address, reconnect_initial=0.01)
    hb.beat()
    wait(lambda: listener.connections)
    listener.connections[0].shutdown(socket.SHUT_RDWR)
    wait(lambda: (hb.beat(), hb.connects >= 2)[1], 5)
    hb.close()


def test_heartbeat_is_thread_safe(listener: Listener) -> None:
    """Four threads beating and sending events interleave whole lines, never torn ones."""
    hb = Heartbeat("svc", listener.address, max_events=100_000)

    def work(n: int) -> None:
        for i in range(500):
            hb.event("t", [n, i])
            hb.beat()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert hb.flush(5.0)
    wait(lambda: sum(1 for m in listener.messages() if m["type"] == "t") == 2000)
    hb.close()


def test_udp_mode_sends_datagrams() -> None:
    """udp=True sends one datagram per message."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(2)
        hb = Heartbeat("svc", receiver.getsockname(), udp=True)
        hb.beat()
        hb.event("poiid")
        got = [json.loads(receiver.recv(65536)) for _ in range(2)]
        assert [m["type"] for m in got] == ["heartbeat", "poiid"]
        hb.close()


def test_async_heartbeat_delivers_and_reconnects(listener: Listener) -> None:
    """AsyncHeartbeat sends from the loop, never awaits in beat(), and reconnects."""

    async def main() -> None:
        async with AsyncHeartbeat("svc", listener.address, reconnect_initial=0.01) as hb:
            hb.beat()
            hb.event("poiid", 1)
            for _ in range(500):
                if len(listener.messages()) >= 2:
                    break
                await asyncio.sleep(0.01)
            assert hb.connected
            listener.connections[0].shutdown(socket.SHUT_RDWR)
            for _ in range(500):
                hb.beat()
                if hb.connects >= 2:
                    break
                await asyncio.sleep(0.01)
            assert hb.connects >= 2

    asyncio.run(main())
    assert any(m["type"] == "poiid" for m in listener.messages())


def test_async_heartbeat_with_daemon_down_buffers_without_blocking() -> None:
    """With nobody listening, calls return at once and events wait in the bound."""

    async def main() -> None:
        async with AsyncHeartbeat("svc", "127.0.0.1:1", max_events=3) as hb:
            worst = 0.0
            for i in range(100):
                worst = max(worst, timed(hb.beat), timed(lambda i=i: hb.event("x", i)))
                await asyncio.sleep(0)
            assert worst < CALL_BOUND
            assert hb.dropped == 97

    asyncio.run(main())


class FakeChannel:
    """Just enough of a pika channel for the polling loop."""

    def __init__(self, bodies: list[bytes | None]) -> None:
        self.bodies = bodies
        self.connection = self
        self.acked: list[int] = []
        self.slept = 0

    def basic_get(self, queue: str, auto_ack: bool) -> tuple[object, object, object]:
        body = self.bodies.pop(0)
        if body is None:
            return None, None, None
        method = type("M", (), {"delivery_tag": len(self.bodies), "redelivered": False})()
        return method, object(), body

    def sleep(self, seconds: float) -> None:
        self.slept += 1

    def basic_ack(self, tag: int) -> None:
        self.acked.append(tag)


class CountingBeat:
    def __init__(self) -> None:
        self.beats = 0

    def beat(self) -> None:
        self.beats += 1


def test_pika_poll_beats_on_every_poll_taken_or_empty() -> None:
    """Each basic_get beats, whether it brought a message or found the queue empty."""
    channel = FakeChannel([b"a", None, None, b"b"])
    hb = CountingBeat()
    deliveries = poll(channel, "q", hb)
    first = next(deliveries)
    first.ack()
    second = next(deliveries)
    assert (first.body, second.body, hb.beats, channel.slept) == (b"a", b"b", 4, 2)
    assert channel.acked == [3]


def test_pika_beating_wrapper_beats_before_handling() -> None:
    """A wrapped on_message_callback beats per delivery, before the handler runs."""
    hb = CountingBeat()
    seen: list[int] = []
    handler = beating(lambda ch, m, p, body: seen.append(hb.beats), hb)
    handler(None, None, None, b"x")
    handler(None, None, None, b"y")
    assert seen == [1, 2]


def test_outbox_sends_a_token_in_every_message_when_given() -> None:
    """For a daemon on another machine every line carries the token; otherwise none does."""
    box = outbox("svc", token="ingest-secret")
    box.event("poiid", {"id": 1})
    box.beat()
    lines = [json.loads(line) for line in box.take_lines().splitlines()]
    assert [line["token"] for line in lines] == ["ingest-secret", "ingest-secret"]
    plain = outbox("svc")
    plain.beat()
    assert "token" not in json.loads(plain.take_lines())


def test_token_goes_only_to_other_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback daemons get no token; others get the given one, else the environment's."""
    monkeypatch.setenv("HEARTWATCH_TOKEN", "from-env-token")
    assert token_for(("127.0.0.1", 5005), "given") is None
    assert token_for(("::1", 5005), None) is None
    assert token_for(("10.1.2.3", 5005), "given") == "given"
    assert token_for(("10.1.2.3", 5005), None) == "from-env-token"
    monkeypatch.setenv("HEARTWATCH_INGEST_TOKEN", "ingest-only")
    assert token_for(("10.1.2.3", 5005), None) == "ingest-only"
