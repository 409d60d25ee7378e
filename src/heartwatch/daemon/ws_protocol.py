"""uvicorn's websockets-sansio protocol, made to really drop a peer that stopped reading.

uvicorn sends a ping every ``ws_ping_interval`` and, when no pong comes within
``ws_ping_timeout``, queues a close frame and calls ``transport.close()``. But asyncio's
``close()`` waits for the write buffer to drain before it closes the socket, and a peer that
never reads never drains it: the connection stayed open forever, the application's pending
``send`` waited forever on "writable", and every viewer's state with it (20 non-reading
viewers were all still connected after 85 s with a 20 s ping interval). The same wait follows
any close, including the one after the application returns.

Here, once a connection is closing (keepalive timeout, or the application is done), it is
given ``grace`` seconds to flush; then it is aborted: the socket is closed at once, buffers
dropped, and ``connection_lost`` tells the application (its pending ``send`` raises, its
``receive`` gets the disconnect) so that everything it held is freed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class DroppingWebSocketProtocol(WebSocketsSansIOProtocol):
    """A websocket connection that cannot outlive its close by more than a grace period."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # As long as the pong may take; at most uvicorn's own closing-handshake timeout.
        timeout = self.ping_timeout if self.ping_timeout else self.close_timeout
        self.grace = min(self.close_timeout, max(1.0, timeout))
        self._abort_timer: asyncio.TimerHandle | None = None

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self._abort_unless_gone()

    async def run_asgi(self) -> None:
        try:
            await super().run_asgi()
        finally:
            self._abort_unless_gone()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        super().connection_lost(exc)

    def _abort_unless_gone(self) -> None:
        if self._abort_timer is None and not self.disconnected and self.transport is not None:
            self._abort_timer = self.loop.call_later(self.grace, self._abort)

    def _abort(self) -> None:
        self._abort_timer = None
        if not self.disconnected:
            self.transport.abort()  # connection_lost follows, soon, from the loop
