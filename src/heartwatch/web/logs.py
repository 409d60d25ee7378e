"""Live logs over websocket, and the list of logs that may be viewed.

    GET /ws/logs/{service}      a service's captured stdout/stderr; ``@daemon``: the daemon's
    GET /ws/logs?path=...       a file under [logs] roots
    GET /<absolute path>[?tail=1]  the original viewer's form (``web/original.py``)
    GET /api/v1/logs            what may be viewed, with size and modification time

Query: ``lines`` (initial lines, capped by ``max_initial_lines``), ``follow`` (default on),
``format`` (``text``: lines as written, colours included; ``html``: escaped, colours as
spans), ``grep`` (a regular expression applied on the server), ``token``. A frame is one or
more lines joined by newlines; heartwatch's own notices are lines starting ``[heartwatch]``.
A refusal is a close with a code and a reason: 4400 bad request, 4401 token, 4403 outside the
roots or cross-origin, 4404 no such log. Protocol-level pings (``[logs] ping_interval``) drop
viewers that stop answering, and a frame that cannot be sent within that time drops its
viewer too; all per-viewer state is freed on disconnect.

Files are opened below their root in one step (``daemon/beneath.py``); listing the roots and
reading initial lines run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import stat
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, WebSocket
from loguru import logger
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect

from heartwatch.daemon.beneath import open_planned
from heartwatch.daemon.logfollow import LogHub, LogTarget, Viewer, off_loop, read_initial_lines
from heartwatch.logview.linefilter import FilterTooSlow, LineFilter
from heartwatch.logview.logpaths import (
    BAD_PATH,
    NO_SUCH_LOG,
    OUTSIDE_ROOTS,
    Beneath,
    LogPathError,
    plan_log_path,
)
from heartwatch.web.original import CHUNK_END, ORIGINAL_QUIET, OriginalStream, is_own_route
from heartwatch.web.streaming import send_until_disconnect

if TYPE_CHECKING:
    from heartwatch.daemon.supervisor import Supervisor

MAX_LISTED = 1000
MAX_VISITED = 100_000  # entries looked at while listing, files or not: a bound on the walk
SEND_DEADLINE_WITHOUT_PINGS = 60.0  # a frame's send deadline when ping_interval is 0 (off)
# The daemon's own log, named like a service's: no service name can start with "@".
DAEMON_LOG = "@daemon"

# Sends a viewer's frames to its websocket until one of them goes away: the native protocol
# (``_stream``), or the original viewer's (``web/original.py``).
Stream = Callable[[WebSocket, Viewer, Path], Awaitable[None]]


class LogFile(BaseModel):
    kind: Literal["service", "daemon", "file"]
    name: str  # the service (or @daemon) for /ws/logs/{name}, or the path to ask for (?path=)
    size: int | None
    mtime: float | None  # seconds since the epoch


def create_log_router(supervisor: Supervisor, hub: LogHub) -> APIRouter:
    config = supervisor.config
    roots = [config.resolve(root) for root in config.logs.roots]
    # Each root is resolved once (it may be a symlink: it is the operator's); below it, no
    # symlink is followed. An absolute ?path= may start with either spelling.
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    spellings = [(str(root), str(real)) for root, real in zip(roots, real_roots, strict=True)]
    log_dir = Path(os.path.realpath(config.resolve(config.daemon.log_dir)))
    daemon_log = config.resolve(config.daemon.log_dir) / config.daemon.log_file
    daemon_target = LogTarget(Path(os.path.realpath(daemon_log.parent)), (daemon_log.name,))
    # A frame not out within a ping interval: the viewer stopped reading, as a missing pong says.
    send_deadline = config.logs.ping_interval or SEND_DEADLINE_WITHOUT_PINGS
    router = APIRouter()

    @router.get("/api/v1/logs", response_model=list[LogFile], tags=["logs"])
    async def list_logs() -> list[LogFile]:
        """Service output logs, the daemon's own log (``@daemon``), then files under the
        configured roots (up to 1000)."""
        services = list(supervisor.services)
        return await off_loop(lambda: _listing(services, log_dir, daemon_target, roots))

    @router.websocket("/ws/logs/{service}")
    async def service_log(websocket: WebSocket, service: str) -> None:
        # Token and origin were checked before (web/access.py): strangers learn nothing here.
        if service == DAEMON_LOG:
            target = daemon_target
        elif service in supervisor.services:
            target = LogTarget(log_dir, (f"{service}.log",))
        else:
            known = ", ".join(sorted(supervisor.services)) or "none"
            reason = f"no service {service!r} (services: {known}; {DAEMON_LOG}: the daemon's log)"
            await _refuse(websocket, NO_SUCH_LOG, _clip_reason(reason))
            return
        # Not written yet is not an error for a service: following starts when it appears.
        await _serve_native(websocket, [target.root], [Beneath(0, target.parts)], missing_ok=True)

    @router.websocket("/ws/logs")
    async def file_log(websocket: WebSocket) -> None:
        try:
            candidates = plan_log_path(websocket.query_params.get("path", ""), spellings)
        except LogPathError as error:
            await _refuse(websocket, error.code, error.reason)
            return
        await _serve_native(websocket, real_roots, candidates, missing_ok=False)

    # The original viewer's form, ws://host:port/<absolute path>?tail=1 (docs/logs.md). Last
    # among the routes: a websocket on any path no other route took. Plain HTTP never gets
    # here (a websocket route matches websocket upgrades only).
    @router.websocket("/{path:path}")
    async def original_viewer(websocket: WebSocket, path: str) -> None:
        requested = "/" + path
        if is_own_route(requested):
            reason = f"{requested}: no such endpoint (a heartwatch route, not a log path)"
            await _refuse(websocket, NO_SUCH_LOG, _clip_reason(reason))
            return
        try:
            candidates = plan_log_path(requested, spellings)
        except LogPathError as error:
            await _refuse(websocket, error.code, error.reason)
            return
        params = websocket.query_params
        stream = OriginalStream(config.logs.ping_interval or ORIGINAL_QUIET, send_deadline)
        await _serve(
            websocket,
            real_roots,
            candidates,
            missing_ok=False,
            viewer=Viewer(grep=None, html=True, inline_styles=True),
            lines=config.logs.initial_lines,
            follow=params.get("tail", "0").lower() in ("1", "true", "yes"),
            stream=stream.run,
            frame_end=CHUNK_END,
        )

    async def _serve_native(
        websocket: WebSocket,
        in_roots: Sequence[Path],
        candidates: Sequence[Beneath],
        *,
        missing_ok: bool,
    ) -> None:
        params = websocket.query_params
        try:
            lines = min(
                int(params.get("lines", config.logs.initial_lines)), config.logs.max_initial_lines
            )
            grep = LineFilter(params["grep"]) if params.get("grep") else None
        except ValueError as error:
            await _refuse(websocket, BAD_PATH, _clip_reason(f"bad query: {error}"))
            return
        follow = params.get("follow", "true").lower() not in ("0", "false", "no")
        await _serve(
            websocket,
            in_roots,
            candidates,
            missing_ok=missing_ok,
            viewer=Viewer(grep=grep, html=params.get("format") == "html"),
            lines=max(0, lines),
            follow=follow,
            stream=lambda ws, viewer, path: _stream(ws, viewer, path, send_deadline),
        )

    async def _serve(
        websocket: WebSocket,
        in_roots: Sequence[Path],
        candidates: Sequence[Beneath],
        *,
        missing_ok: bool,
        viewer: Viewer,
        lines: int,
        follow: bool,
        stream: Stream,
        frame_end: str = "",
    ) -> None:

        def close_opened(opened: tuple[Beneath, int]) -> None:
            os.close(opened[1])

        # Resolved and opened in one step, in a thread: what is checked is what is read.
        try:
            found, fd = await off_loop(lambda: open_planned(in_roots, candidates), close_opened)
        except LogPathError as error:
            if not (missing_ok and error.code == NO_SUCH_LOG):
                await _refuse(websocket, error.code, error.reason)
                return
            found, fd = candidates[0], -1
        target = LogTarget(in_roots[found.root], found.parts)
        try:
            if not follow:
                initial = await off_loop(lambda: read_initial_lines(fd, lines)) if fd >= 0 else []
                fd = -1
                viewer.receive_preface(initial)
                await websocket.accept()
                while (frame := viewer.take_frame()) is not None:
                    await websocket.send_text(frame + frame_end)
                await websocket.close(1000, "end of the initial lines")
                return
            # Positioned before the handshake completes: a line written as soon as the client
            # is connected comes after the initial lines, never inside them or lost.
            opened, fd = (fd if fd >= 0 else None), -1  # the hub takes it over
            follower = await hub.subscribe(target, viewer, lines, opened)
            try:
                await websocket.accept()
                await stream(websocket, viewer, target.path)
            finally:
                hub.unsubscribe(follower, viewer)
        except LogPathError as error:
            await _refuse(websocket, error.code, error.reason)
        except OSError as error:  # the client went away, or the system refused a resource
            await _refuse(websocket, OUTSIDE_ROOTS, _clip_reason(f"cannot open: {error}"))
        except FilterTooSlow as slow:
            logger.warning("live logs: closed a viewer of {}: {}", target.path, slow)
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await websocket.close(BAD_PATH, _clip_reason(str(slow)))
        finally:
            if fd >= 0:
                os.close(fd)

    return router


async def _stream(websocket: WebSocket, viewer: Viewer, path: Path, deadline: float) -> None:
    """Send frames until the viewer goes away, or one cannot be sent within ``deadline``
    (its socket stays full: it stopped reading)."""

    async def send_frames() -> None:
        while True:
            frame = await viewer.next_frame()
            try:
                async with asyncio.timeout(deadline):
                    await websocket.send_text(frame)
            except TimeoutError:
                logger.info(
                    "live logs: dropped a viewer of {}: a frame could not be sent in {:g} s",
                    path,
                    deadline,
                )
                return
            viewer.receive_sent()  # only now does it count as keeping up

    await send_until_disconnect(websocket, send_frames())


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Accept, then close with the code and reason, so the client learns why."""
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await websocket.accept()
        await websocket.close(code, reason)


def _clip_reason(reason: str) -> str:
    """A close reason fits in 123 bytes (RFC 6455); cut on a character, with a mark."""
    data = reason.encode()
    if len(data) <= 123:
        return reason
    return data[:120].decode("utf-8", "ignore") + "…"


# -- the listing (blocking: runs in a worker thread) -------------------------------------------


def _listing(
    services: Sequence[str], log_dir: Path, daemon: LogTarget, roots: Sequence[Path]
) -> list[LogFile]:
    listed = [_entry("service", name, log_dir / f"{name}.log") for name in services]
    listed.append(_entry("daemon", DAEMON_LOG, daemon.path))
    for root in roots:
        for path in _files_under(root, MAX_LISTED - len(listed)):
            listed.append(_entry("file", str(path), path))
        if len(listed) >= MAX_LISTED:
            break
    return listed[:MAX_LISTED]


def _entry(kind: Literal["service", "daemon", "file"], name: str, path: Path) -> LogFile:
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return LogFile(kind=kind, name=name, size=None, mtime=None)
    if not stat.S_ISREG(info.st_mode):
        return LogFile(kind=kind, name=name, size=None, mtime=None)
    return LogFile(kind=kind, name=name, size=info.st_size, mtime=info.st_mtime)


def _files_under(root: Path, limit: int) -> list[Path]:
    """Regular files below ``root`` reached without a symlink (what ?path= would serve), in
    a stable order, at most ``limit``; at most ``MAX_VISITED`` entries looked at."""
    found: list[Path] = []
    visited = 0
    pending = [root]
    while pending and len(found) < limit and visited < MAX_VISITED:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                # A folder of millions of entries: only the first ones, not all in memory.
                first = itertools.islice(entries, MAX_VISITED - visited)
                listed = sorted(first, key=lambda entry: entry.name)
        except OSError:
            continue
        visited += len(listed)
        folders = []
        for entry in listed:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    found.append(Path(entry.path))
                    if len(found) >= limit:
                        break
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
        pending.extend(reversed(folders))  # depth first, in name order
    return found
