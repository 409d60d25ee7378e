"""Request-size limits, the waiting room of unfinished requests, and the refusals' bytes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
import pytest
import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from heartwatch.core.httplimits import (
    MAX_HEAD,
    MAX_HEADERS,
    MAX_LINE,
    StormWatch,
    WaitingRoom,
    check_head,
    incomplete_head_refusal,
    refusal_response,
    request_timeout,
)
from heartwatch.daemon.http_guard import GuardedWebSocketProtocol


def test_a_head_within_the_limits_passes() -> None:
    headers = [(b"host", b"127.0.0.1"), (b"x-big", b"v" * (MAX_LINE - 7))]
    assert check_head(b"GET", b"/" + b"a" * (MAX_LINE - 14), headers) is None


@pytest.mark.parametrize(
    ("target", "headers", "status"),
    [
        (b"/" + b"a" * MAX_LINE, [], 414),
        (b"/", [(b"x-big", b"v" * MAX_LINE)], 431),
        (b"/", [(b"x-%d" % i, b"v") for i in range(MAX_HEADERS + 1)], 431),
        (b"/", [(b"x-%d" % i, b"v" * 1000) for i in range(MAX_HEAD // 1000 + 1)], 431),
    ],
    ids=["request line", "header line", "header count", "head"],
)
def test_a_head_beyond_a_limit_is_refused_with_its_status(
    target: bytes, headers: list[tuple[bytes, bytes]], status: int
) -> None:
    refusal = check_head(b"GET", target, headers)
    assert refusal is not None
    assert refusal.status == status


def test_an_unended_head_is_a_long_line_or_a_large_head() -> None:
    assert incomplete_head_refusal(b"GET /" + b"a" * MAX_HEAD).status == 414
    assert incomplete_head_refusal(b"GET / HTTP/1.1\r\nx: " + b"v" * MAX_HEAD).status == 431


def test_a_refusal_is_a_complete_http_answer_that_closes() -> None:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(refusal_response(request_timeout(10)))
    response = client.next_event()
    assert isinstance(response, h11.Response)
    assert response.status_code == 408
    assert (b"connection", b"close") in response.headers
    data = client.next_event()
    assert isinstance(data, h11.Data)
    assert json.loads(data.data)["code"] == "request_timeout"
    assert isinstance(client.next_event(), h11.EndOfMessage)


def test_the_waiting_room_turns_away_the_oldest() -> None:
    room: WaitingRoom[str] = WaitingRoom(3)
    assert [room.enter(name) for name in "abc"] == [None, None, None]
    assert room.enter("a") is None  # in already: to the back, nobody pushed out
    assert room.enter("d") == "b"
    room.leave("c")
    assert room.enter("e") is None
    assert room.enter("f") == "a"
    assert len(room) == 3
    assert "a" not in room
    assert "d" in room


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default


@pytest.mark.parametrize(
    ("protocol_class", "answered"),
    [
        pytest.param(WebSocketsSansIOProtocol, False, id="uvicorn's own: never answers"),
        pytest.param(GuardedWebSocketProtocol, True, id="guarded"),
    ],
)
def test_a_websocket_handshake_the_library_refuses_is_answered(
    protocol_class: type[WebSocketsSansIOProtocol], answered: bool
) -> None:
    async def handshake() -> _Transport:
        config = uvicorn.Config(app=None, ws=protocol_class)  # type: ignore[arg-type]
        protocol = protocol_class(
            config=config,
            server_state=ServerState(),
            app_state={},
            _loop=asyncio.get_running_loop(),
        )
        transport = _Transport()
        protocol.connection_made(transport)
        protocol.data_received(
            b"GET /ws/events?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        return transport

    transport = asyncio.run(handshake())
    if answered:
        assert transport.written.startswith(b"HTTP/1.1 414 ")
        assert transport.closed
    elif transport.written:
        # Not a failure: a newer uvicorn writes the answer itself (a fresh install takes the
        # newest), and GuardedWebSocketProtocol's workaround can go.
        pytest.skip("uvicorn now answers a refused handshake: the workaround can go")
    else:
        assert not transport.closed  # why the guard is needed: the client would hang


def test_a_storm_is_settled_once_its_crowd_has_left() -> None:
    watch = StormWatch(crowd=10, fraction=0.25, interval=30.0)
    for _ in range(9):
        watch.opened()
    assert [watch.closed(1.0) for _ in range(9)] == [None] * 9  # never a crowd
    for _ in range(20):
        watch.opened()
    delays = [watch.closed(2.0) for _ in range(15)]
    assert delays == [None] * 14 + [0.0]  # 5 of 20 left open: settle at once
    assert watch.closed(2.0) is None  # planned already
    watch.settled(3.0)
    assert watch.peak == 4
    for _ in range(40):
        watch.opened()
    delays = [watch.closed(10.0) for _ in range(33)]  # 44 open, down to 11
    assert delays[-1] == 23.0  # the next settle waits for the interval
    assert delays[:-1] == [None] * 32
