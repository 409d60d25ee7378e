"""The daemon's HTTP server: uvicorn embedded in the daemon's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from email.utils import formatdate

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heartwatch.config import Config
from heartwatch.daemon.http_guard import guarded_protocols


class _EmbeddedServer(uvicorn.Server):
    """uvicorn on the daemon's loop; signals belong to the daemon, not to uvicorn.

    uvicorn's own main loop wakes ten times a second to refresh its cached Date header; an idle
    daemon should not wake at all, so this one waits for ``request_exit`` instead, and the Date
    header is written per response (``_with_date_header``).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        await self.on_tick(0)
        await self._exit_requested.wait()

    def request_exit(self) -> None:
        self.should_exit = True
        self._exit_requested.set()


def _with_date_header(app: ASGIApp) -> ASGIApp:
    async def app_with_date(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_date(message: Message) -> None:
            if message["type"] == "http.response.start":
                date = formatdate(usegmt=True).encode()
                message["headers"] = [*message.get("headers", []), (b"date", date)]
            await send(message)

        await app(scope, receive, send_with_date)

    return app_with_date


HttpServing = tuple[_EmbeddedServer, "asyncio.Task[None]"]


async def start_http(
    config: Config, app: ASGIApp
) -> tuple[HttpServing | None, tuple[str, int] | None]:
    if config.server.http is None:
        return None, None
    host, port = config.server.http
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()  # the port is taken or not ours: leave nothing open
        raise
    http_protocol, ws_protocol = guarded_protocols(
        config.server.http_header_timeout, config.server.http_max_pending
    )
    server = _EmbeddedServer(
        uvicorn.Config(
            _with_date_header(app),
            date_header=False,
            # h11 (uvicorn's default without httptools), with a request deadline, a bound on
            # the connections still sending one, and an answer for every request too big.
            http=http_protocol,
            ws=ws_protocol,
            ws_ping_interval=config.logs.ping_interval,
            # No permessage-deflate: compressing each frame again for each viewer cost 20 % of a
            # burst and 60 % of a frame's CPU with 200 viewers (bench/logs.py); logs are read on
            # the machine or its network, where the CPU is what is short.
            ws_per_message_deflate=False,
            ws_ping_timeout=config.logs.ping_interval,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    )
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    # uvicorn offers a flag, not an event, for "started"; this loop lasts a few milliseconds.
    while not server.started and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    if task.done():
        task.result()  # raise what stopped it
    bound = sock.getsockname()
    return (server, task), (str(bound[0]), int(bound[1]))
