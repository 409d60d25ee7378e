"""The daemon's HTTP server: uvicorn embedded in the daemon's event loop.

Under abuse: HTTP and websocket connections are capped together (``http_max_connections``,
lowered so that it and the heartbeat cap stay below the open-files limit with a reserve); a
websocket message may be at most ``WS_MAX_MESSAGE`` (a client only ever sends pongs and tiny
texts), so no client makes the daemon hold megabytes of an unfinished message. If descriptors
run out all the same, asyncio's listener reports every failed ``accept`` to the loop's
exception handler, with a traceback each (55,000 in 25 s with 300 idle websockets):
``quiet_resource_errors`` turns those into one line per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import socket
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import uvicorn
from loguru import logger
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heartwatch.config import Config
from heartwatch.core.throttle import LogThrottle
from heartwatch.daemon.http_guard import guarded_protocols

# The largest websocket message a client may send (pongs, the original viewer's "ping"): a
# bigger one closes the connection with 1009 before it is buffered. uvicorn's default, 16 MiB,
# let each client make the daemon hold ~16 MiB for as long as it liked.
WS_MAX_MESSAGE = 64 * 1024
# Descriptors kept free beside both connection caps: service pipes and pidfds, output files,
# log followers, the history database, the notify socket.
_FD_RESERVE = 64
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
RESOURCE_LOG_INTERVAL = 10.0


def http_connection_cap(wanted: int, heartbeat_cap: int) -> int:
    """``wanted``, lowered so that it and ``heartbeat_cap`` stay below the open-files limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    cap = max(8, min(wanted, soft - heartbeat_cap - _FD_RESERVE))
    if cap < wanted:
        logger.warning(
            "http_max_connections {} lowered to {}: the open-files limit is {}", wanted, cap, soft
        )
    return cap


def quiet_resource_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop`` report running out of descriptors or memory (asyncio's "socket.accept()
    out of system resource") as one line per interval, without a traceback; everything else
    goes to the handler it had."""
    previous = loop.get_exception_handler()
    throttle = LogThrottle(RESOURCE_LOG_INTERVAL)

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in _RESOURCE_ERRORS:
            suppressed = throttle.admit(str(error.errno), time.monotonic())
            if suppressed is not None:
                more = f" ({suppressed} more since the last report)" if suppressed else ""
                logger.warning(
                    "{}: {}{}", context.get("message", "asyncio"), os.strerror(error.errno), more
                )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


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
    config: Config, app: ASGIApp, heartbeat_cap: int = 0
) -> tuple[HttpServing | None, tuple[str, int] | None]:
    """Serve ``app``; ``heartbeat_cap``: the heartbeat connections that may be open beside."""
    if config.server.http is None:
        return None, None
    quiet_resource_errors(asyncio.get_running_loop())
    host, port = config.server.http
    # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP (accepted ones inherit it). Without it, every answer after the first on a
    # keep-alive connection (a browser's) waited ~40 ms for a delayed ACK (bench/history.py).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()  # the port is taken or not ours: leave nothing open
        raise
    http_protocol, ws_protocol = guarded_protocols(
        config.server.http_header_timeout,
        config.server.http_max_pending,
        http_connection_cap(config.server.http_max_connections, heartbeat_cap),
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
            ws_max_size=WS_MAX_MESSAGE,
            ws_max_queue=4,  # (used by uvicorn's other websocket implementations only)
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
