"""``heartwatch run``: assemble the daemon, serve until asked to stop, leave no child behind.

Order of start-up: take the state directory's lock; end children a crashed predecessor left;
open the history (the journal goes on from its last entry) and the alerts; listen for
heartbeats (TCP and UDP) and HTTP; say where (``daemon.json``); start the services.
Order of shut-down: stop the services in reverse dependency order; close the listeners; let
queued alerts go out (a few seconds at most); store the minute so far; release the lock.
A second SIGINT or SIGTERM during shut-down kills what is left at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import signal
import time

from loguru import logger

from heartwatch.config import Config
from heartwatch.daemon.alerts import Alerter
from heartwatch.daemon.http_server import start_http
from heartwatch.daemon.ingest import Ingest, connection_cap
from heartwatch.daemon.logfollow import LogHub
from heartwatch.daemon.notify_socket import NotifySocket
from heartwatch.daemon.recorder import Recorder
from heartwatch.daemon.statedir import StateDir
from heartwatch.daemon.supervisor import Supervisor, log_listener_error
from heartwatch.daemon.systemd import SystemdNotifier
from heartwatch.journal import Journal
from heartwatch.store.sqlite import SQLiteHistory
from heartwatch.web.access import AccessPolicy
from heartwatch.web.api import create_app


async def run_daemon(config: Config, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGTERM/SIGINT arrives; raises ``DaemonAlreadyRunning``."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    state = StateDir(config.resolve(config.daemon.state_dir))
    state.acquire()
    try:
        ended = await loop.run_in_executor(None, state.end_stale_children)
        if ended:
            logger.warning("ended stale children of a previous daemon: {}", ended)
        store = await loop.run_in_executor(None, SQLiteHistory, config.history_path)
        journal = Journal(first_id=store.last_entry_id() + 1, on_error=log_listener_error)
        supervisor = Supervisor(config, state, tcp_address=config.server.tcp, journal=journal)
        recorder = Recorder(store, supervisor.totals, retention=config.history.retention)
        journal.subscribe(recorder.receive)
        recorder.start()
        alerter = Alerter(config.notify, journal, supervisor.wall_time)
        journal.subscribe(alerter.receive)
        alerter.start()
        policy = AccessPolicy(config.server)
        ingest = Ingest(
            supervisor.receive_message,
            max_line=config.server.max_line_bytes,
            max_connections=connection_cap(config.server.max_connections),
            stats=supervisor.stats,
            may_ingest=lambda peer, token: policy.may_ingest(token, peer),
        )
        supervisor.tcp_address = await ingest.start(*config.server.tcp)
        notify = NotifySocket(
            f"heartwatch-{state.state_id}",
            supervisor.receive_notice,
            supervisor.identify,
            supervisor.stats,
        )
        notify.start()
        supervisor.notify_address = notify.address
        hub = LogHub(config.logs.partial_line_flush, config.logs.viewer_buffer_lines)
        http, http_address = await start_http(
            config, create_app(supervisor, recorder=recorder, hub=hub, alerter=alerter)
        )
        state.write_daemon_info(
            tcp=_format_address(supervisor.tcp_address),
            http=_format_address(http_address) if http_address else None,
        )
        logger.info(
            "heartwatch listening for heartbeats on {} (tcp+udp){}",
            _format_address(supervisor.tcp_address),
            f", http on {_format_address(http_address)}" if http_address else "",
        )
        _install_signal_handlers(loop, stop, supervisor)
        journal.append("daemon", None, f"heartwatch started (pid {os.getpid()})", time.time())
        supervisor.start(reason="daemon started")
        supervisor.watch_queues()
        _return_memory_to_os()
        systemd = SystemdNotifier()
        systemd.ready(f"watching {len(config.service)} services")
        await stop.wait()
        systemd.stopping()
        logger.info("stopping all services")
        journal.append("daemon", None, "heartwatch stopping", time.time())
        timeout = sum(s.stop_timeout for s in config.service) + 5.0
        await supervisor.shutdown(timeout)
        # Anything still carrying this state directory's mark outlived its service: end it.
        leftovers = await loop.run_in_executor(None, state.end_stale_children)
        if leftovers:
            logger.warning("ended processes that outlived their services: {}", leftovers)
        await ingest.close()
        notify.close()
        if http is not None:
            server, task = http
            server.request_exit()
            await task
        hub.close()
        await alerter.close()
        await recorder.close()
        logger.info("heartwatch stopped")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        state.release()


def _install_signal_handlers(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, supervisor: Supervisor
) -> None:
    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            logger.info("received {}: stopping (send it again to kill at once)", sig.name)
            stop.set()
        else:
            logger.warning("received {} again: killing all services now", sig.name)
            supervisor.kill_all()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)


def _return_memory_to_os() -> None:
    """Start-up (imports, building the API) leaves freed memory that glibc keeps; give it back,
    so a daemon that runs for months does not hold its start-up peak."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
