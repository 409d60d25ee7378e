"""``AsyncHeartbeat``: the asyncio flavour of ``Heartbeat``.

The calls (``beat``, ``event``, ``status``, ``ready``) are plain synchronous methods that only
append to the ``Outbox`` and write to an asyncio transport: they never await, never raise and
never block. A background task keeps the connection up, reconnecting with backoff; the event
loop drains what the kernel could not take at once, so nothing waits for the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Any

from heartwatch.client.address import resolve_target, token_for
from heartwatch.client.wallclock import stamped_outbox

# Above this many bytes waiting in the transport, stop pulling from the outbox: beats then
# coalesce and events wait in their bounded queue instead of growing the transport's buffer.
_HIGH_WATER = 64 * 1024


class AsyncHeartbeat:
    def __init__(
        self,
        service: str | None = None,
        address: str | tuple[str, int] | None = None,
        *,
        max_events: int = 1000,
        reconnect_initial: float = 0.05,
        reconnect_max: float = 2.0,
        min_interval: float = 0.1,
        token: str | None = None,
    ) -> None:
        self.service, self.address, self.problem = resolve_target(service, address)
        self.min_interval = min_interval
        self._sent_at = float("-inf")
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self.connects = 0
        self._outbox = stamped_outbox(self.service, max_events, token_for(self.address, token))
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost: asyncio.Event | None = None

    def beat(self) -> None:
        """Alive; rate-limited to one send per ``min_interval``, as ``Heartbeat.beat``."""
        self._outbox.beat()
        if time.monotonic() - self._sent_at >= self.min_interval:
            self._flush()

    def event(self, kind: str, data: Any = None) -> None:
        self._outbox.event(kind, data)
        self._flush()

    def status(self, text: str) -> None:
        self._outbox.status(text)
        self._flush()

    def ready(self) -> None:
        self._outbox.ready()
        self._flush()

    @property
    def connected(self) -> bool:
        return self._transport is not None

    @property
    def dropped(self) -> int:
        return self._outbox.dropped_total

    def start(self) -> None:
        """Begin connecting (called by ``async with`` and, lazily, by the first call)."""
        if self._task is None and self.address is not None:
            self._lost = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._keep_connected())

    async def aclose(self) -> None:
        """Send what is pending (briefly), then close."""
        if self._transport is not None:
            self._flush()
            for _ in range(50):
                if self._transport is None or not self._transport.get_write_buffer_size():
                    break
                await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> AsyncHeartbeat:
        self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _flush(self) -> None:
        transport = self._transport
        if transport is None:
            with contextlib.suppress(RuntimeError):  # no running loop: it waits for one
                self.start()
            return
        if transport.get_write_buffer_size() < _HIGH_WATER and self._outbox.has_lines:
            self._sent_at = time.monotonic()
            transport.write(self._outbox.take_lines())

    async def _keep_connected(self) -> None:
        assert self.address is not None
        assert self._lost is not None
        loop = asyncio.get_running_loop()
        delay = self.reconnect_initial
        while True:
            self._lost.clear()
            try:
                transport, _ = await loop.create_connection(
                    lambda: _Watcher(self), self.address[0], self.address[1]
                )
            except OSError:
                await asyncio.sleep(delay)
                delay = min(self.reconnect_max, delay * 2)
                continue
            assert isinstance(transport, asyncio.Transport)
            self._transport = transport
            self.connects += 1
            delay = self.reconnect_initial
            self._flush()
            await self._lost.wait()
            self._transport = None

    def _connection_lost(self) -> None:
        self._transport = None
        if self._lost is not None:
            self._lost.set()


class _Watcher(asyncio.Protocol):
    def __init__(self, owner: AsyncHeartbeat) -> None:
        self.owner = owner

    def resume_writing(self) -> None:
        self.owner._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._connection_lost()
