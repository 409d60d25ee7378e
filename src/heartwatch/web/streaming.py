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

    await until_first_ends(sending, wait_disconnect())


async def until_first_ends(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Run the coroutines together until one of them ends; cancel and await the others.

    The ways a websocket ends (the peer left, a send to it failed, it was closed) are ends,
    not errors: they are not raised. (Not ``asyncio.TaskGroup``: it waits for every task.)
    """
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            # OSError: uvicorn's ClientDisconnected, from a send to a peer that is gone.
            with contextlib.suppress(
                asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError
            ):
                await task
