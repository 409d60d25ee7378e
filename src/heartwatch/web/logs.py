"""Live logs over websocket, and the list of logs that may be viewed.

    GET /ws/logs/{service}      a service's captured stdout/stderr
    GET /ws/logs?path=...       a file under [logs] roots
    GET /api/v1/logs            what may be viewed, with size and modification time

Query: ``lines`` (initial lines, capped by ``max_initial_lines``), ``follow`` (default on),
``format`` (``text``: lines as written, colours included; ``html``: escaped, colours as
spans), ``grep`` (a regular expression applied on the server), ``token``. A frame is one or
more lines joined by newlines; heartwatch's own notices are lines starting ``[heartwatch]``.
A refusal is a close with a code and a reason: 4400 bad request, 4401 token, 4403 outside the
roots or cross-origin, 4404 no such log. Protocol-level pings (``[logs] ping_interval``) drop
viewers that stop answering; all per-viewer state is freed on disconnect.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, WebSocket
from loguru import logger
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect

from heartwatch.daemon.logfollow import LogHub, Viewer, read_initial_lines
from heartwatch.linefilter import FilterTooSlow, LineFilter
from heartwatch.logpaths import BAD_PATH, NO_SUCH_LOG, LogPathError, resolve_log_path
from heartwatch.web.streaming import send_until_disconnect

if TYPE_CHECKING:
    from heartwatch.daemon.supervisor import Supervisor

MAX_LISTED = 1000


class LogFile(BaseModel):
    kind: Literal["service", "file"]
    name: str  # the service, or the path to ask for (?path=)
    size: int | None
    mtime: float | None  # seconds since the epoch


def create_log_router(supervisor: Supervisor, hub: LogHub) -> APIRouter:
    config = supervisor.config
    roots = [config.resolve(root) for root in config.logs.roots]
    # Real paths: a follower refuses a path that stops being its own real path.
    log_dir = Path(os.path.realpath(config.resolve(config.daemon.log_dir)))
    router = APIRouter()

    @router.get("/api/v1/logs", response_model=list[LogFile], tags=["logs"])
    async def list_logs() -> list[LogFile]:
        """Service output logs, then files under the configured roots (up to 1000)."""
        listed = [_entry("service", name, log_dir / f"{name}.log") for name in supervisor.services]
        for root in roots:
            for path in _files_under(root):
                if len(listed) >= MAX_LISTED:
                    return listed
                listed.append(_entry("file", str(path), path))
        return listed

    @router.websocket("/ws/logs/{service}")
    async def service_log(websocket: WebSocket, service: str) -> None:
        # Token and origin were checked before (web/access.py): strangers learn nothing here.
        if service not in supervisor.services:
            await _refuse(websocket, NO_SUCH_LOG, f"no service {service!r}")
            return
        await _serve(websocket, log_dir / f"{service}.log")

    @router.websocket("/ws/logs")
    async def file_log(websocket: WebSocket) -> None:
        try:
            path = resolve_log_path(websocket.query_params.get("path", ""), roots)
        except LogPathError as error:
            await _refuse(websocket, error.code, error.reason)
            return
        await _serve(websocket, path)

    async def _serve(websocket: WebSocket, path: Path) -> None:
        params = websocket.query_params
        try:
            lines = min(
                int(params.get("lines", config.logs.initial_lines)), config.logs.max_initial_lines
            )
            grep = LineFilter(params["grep"]) if params.get("grep") else None
        except ValueError as error:
            await _refuse(websocket, BAD_PATH, f"bad query: {error}")
            return
        follow = params.get("follow", "true").lower() not in ("0", "false", "no")
        viewer = Viewer(grep=grep, html=params.get("format") == "html")
        try:
            if not follow:
                viewer.receive_preface(read_initial_lines(path, max(0, lines)))
                await websocket.accept()
                while (frame := viewer.take_frame()) is not None:
                    await websocket.send_text(frame)
                await websocket.close(1000, "end of the initial lines")
                return
            # Positioned before the handshake completes: a line written as soon as the client
            # is connected comes after the initial lines, never inside them or lost.
            follower = hub.subscribe(path, viewer, max(0, lines))
            try:
                await websocket.accept()
                await _stream(websocket, viewer)
            finally:
                hub.unsubscribe(follower, viewer)
        except FilterTooSlow as slow:
            logger.warning("live logs: closed a viewer of {}: {}", path, slow)
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(BAD_PATH, str(slow)[:120])

    return router


async def _stream(websocket: WebSocket, viewer: Viewer) -> None:
    """Send frames until the viewer goes away."""

    async def send_frames() -> None:
        while True:
            await websocket.send_text(await viewer.next_frame())
            viewer.receive_sent()  # only now does it count as keeping up

    await send_until_disconnect(websocket, send_frames())


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Accept, then close with the code and reason, so the client learns why."""
    await websocket.accept()
    await websocket.close(code, reason)


def _entry(kind: Literal["service", "file"], name: str, path: Path) -> LogFile:
    try:
        info = os.stat(path)
    except OSError:
        return LogFile(kind=kind, name=name, size=None, mtime=None)
    return LogFile(kind=kind, name=name, size=info.st_size, mtime=info.st_mtime)


def _files_under(root: Path) -> list[Path]:
    found = []
    for folder, _dirs, files in os.walk(root, followlinks=False):
        for name in sorted(files):
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found.append(path)
            if len(found) >= MAX_LISTED:
                return found
    return found
