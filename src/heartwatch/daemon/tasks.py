"""Background tasks with an owner: every task the daemon starts is kept, reported, and ended.

``asyncio.TaskGroup`` (and anyio's task groups) end every task when one fails, which suits a
request but not a daemon: an alert that cannot be sent must not stop the supervision of the
services. A ``TaskSet`` keeps the other half of structured concurrency: it holds a strong
reference to each task (the loop keeps only weak ones: a bare ``ensure_future`` can be
collected mid-flight), logs a failure once with its traceback, and at shut-down cancels what is
left and waits for it, so nothing runs on after its owner closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from loguru import logger

T = TypeVar("T")


class TaskSet:
    """Tasks owned by one part of the daemon (named in failure reports)."""

    def __init__(self, owner: str, on_idle: Callable[[], None] | None = None) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_idle = on_idle
        self._closed = False

    def start(self, coroutine: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Run ``coroutine`` as a task of this set; refused once the set is closed."""
        if self._closed:
            coroutine.close()  # never awaited: close it, or Python warns about it
            raise RuntimeError(f"{self.owner}: closed, no new tasks")
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self, grace: float = 0.0) -> None:
        """Give running tasks ``grace`` seconds to finish, then cancel the rest and await them."""
        self._closed = True
        if not self._tasks:
            return
        if grace > 0:
            await asyncio.wait(set(self._tasks), timeout=grace)
        late = set(self._tasks)
        for task in late:
            task.cancel()
        # gather, not wait: a task that swallows one cancellation is still awaited to its end.
        await asyncio.gather(*late, return_exceptions=True)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.opt(exception=error).error("{}: a task failed: {}", self.owner, task.get_name())
        if not self._tasks and self._on_idle is not None:
            self._on_idle()
