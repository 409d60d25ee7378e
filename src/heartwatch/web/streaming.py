"""Websocket plumbing shared by the streaming endpoints (live logs, events)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect


async def send_until_disconnect(websocket: WebSocket, sending: Coroutine[Any, Any, None]) -> None:
    """Run ``sending`` until it ends or the client goes away, noticed by a concurrent receive
    (a sender blocked on a slow client would otherwise never learn that it left)."""

    async def wait_disconnect() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    sender = asyncio.ensure_future(sending)
    listener = asyncio.ensure_future(wait_disconnect())
    try:
        await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, listener):
            task.cancel()
        for task in (sender, listener):
            # OSError: uvicorn's ClientDisconnected, from a send to a peer that is gone.
            with contextlib.suppress(
                asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError
            ):
                await task
