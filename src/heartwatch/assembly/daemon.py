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
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from loguru import logger

from heartwatch.config import Config
from heartwatch.core.journal import DAEMON_STARTED, DAEMON_STOPPING, Journal
from heartwatch.daemon.alerts import Alerter
from heartwatch.daemon.http_server import HttpServing, start_http
from heartwatch.daemon.ingest import Ingest, connection_cap
from heartwatch.daemon.logfollow import LogHub
from heartwatch.daemon.memory import return_memory_to_os
from heartwatch.daemon.recorder import Recorder
from heartwatch.daemon.reload import Reloader, ReloadRefused
from heartwatch.daemon.sdnotify_socket import SdNotifySocket
from heartwatch.daemon.statedir import StateDir
from heartwatch.daemon.supervisor import DaemonStopping, Supervisor, log_listener_error
from heartwatch.daemon.systemd import SystemdNotifier
from heartwatch.daemon.tasks import TaskSet
from heartwatch.store.sqlite import SQLiteHistory
from heartwatch.web.access import AccessPolicy
from heartwatch.web.api import create_app
from heartwatch.web.control import selection_groups
from heartwatch.web.status import read_status

if TYPE_CHECKING:
    from heartwatch.daemon.fleet_commands import LocalApi

T = TypeVar("T")


async def run_daemon(config: Config, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or a stopping signal arrives.

    Raises ``DaemonAlreadyRunning``, or ``ListenerError`` naming the listener that could not
    be opened; either way everything opened before it is closed again.
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    # Every resource is pushed here as it is opened, so it is released (in reverse order)
    # however start-up or serving ends: a port in use, a failure, a cancellation.
    async with contextlib.AsyncExitStack() as resources:
        state = StateDir(config.resolve(config.daemon.state_dir))
        state.acquire()
        resources.callback(state.release)
        ended = await loop.run_in_executor(None, state.end_stale_children)
        if ended:
            logger.warning("ended stale children of a previous daemon: {}", ended)
        store = await loop.run_in_executor(None, SQLiteHistory, config.history_path)
        journal = Journal(first_id=store.last_entry_id() + 1, on_error=log_listener_error)
        supervisor = Supervisor(config, state, tcp_address=config.server.tcp, journal=journal)
        recorder = Recorder(store, supervisor.totals, retention=config.history.retention)
        resources.push_async_callback(recorder.close)  # stores the minute so far, last
        journal.subscribe(recorder.receive)
        recorder.start()
        alerter = Alerter(config.alerts, journal, supervisor.clock)
        resources.push_async_callback(alerter.close)  # queued alerts get a few seconds
        journal.subscribe(alerter.receive)
        alerter.start()
        policy = AccessPolicy(config.server)
        heartbeat_cap = connection_cap(config.server.max_connections)
        ingest = Ingest(
            supervisor.receive_message,
            max_line=config.server.max_line_bytes,
            max_connections=heartbeat_cap,
            stats=supervisor.stats,
            may_ingest=lambda peer, token: policy.may_ingest(token, peer),
        )
        resources.push_async_callback(ingest.close)
        supervisor.tcp_address = await _listening(
            "heartbeats", config.server.tcp, ingest.start(*config.server.tcp)
        )
        sdnotify = SdNotifySocket(
            f"heartwatch-{state.state_id}",
            supervisor.receive_notice,
            supervisor.identify,
            supervisor.stats,
        )
        resources.callback(sdnotify.close)
        sdnotify.start()
        supervisor.notify_address = sdnotify.address
        hub = LogHub(config.logs.partial_line_flush, config.logs.viewer_buffer_lines)
        resources.push_async_callback(hub.aclose)
        reloader = Reloader(supervisor, config.source)
        reload_tasks = TaskSet("reload")  # SIGHUP's reloads; the HTTP ones run in requests
        resources.push_async_callback(reload_tasks.close)
        app = create_app(supervisor, recorder=recorder, hub=hub, alerter=alerter, reloader=reloader)
        http_address: tuple[str, int] | None = None
        if config.server.http is not None:
            http, http_address = await _listening(
                "http", config.server.http, start_http(config, app, heartbeat_cap)
            )
            if http is not None:
                resources.push_async_callback(_stop_http, http)
        state.write_daemon_info(
            tcp=_format_address(supervisor.tcp_address),
            http=_format_address(http_address) if http_address else None,
        )
        logger.info(
            "heartwatch listening for heartbeats on {} (tcp+udp){}",
            _format_address(supervisor.tcp_address),
            f", http on {_format_address(http_address)}" if http_address else "",
        )
        resources.callback(_remove_signal_handlers, loop)
        _install_signal_handlers(
            loop,
            stop,
            supervisor,
            lambda why: _reload_in_background(reload_tasks, reloader, why),
        )
        if config.fleet is not None:
            # aio-pika (and the agent) are imported only by a daemon with [fleet].
            from heartwatch.daemon.fleet_agent import start_fleet_agent

            agent = await start_fleet_agent(
                config.fleet, supervisor, state.path, reloader, hub, _local_api(supervisor)
            )
            # Closed after the services stopped (below): their last entries go out with it.
            resources.push_async_callback(agent.close)
        journal.append("daemon", None, f"{DAEMON_STARTED} (pid {os.getpid()})", time.time())
        # From here on services run: whatever ends the daemon stops them first.
        resources.push_async_callback(_stop_services, config, supervisor, state, journal)
        supervisor.start_autostart(reason="daemon started")  # autostart = false waits
        supervisor.watch_queues()
        # Start-up (imports, building the API) leaves freed memory behind: give it back, so a
        # daemon that runs for months does not hold its start-up peak.
        return_memory_to_os()
        systemd = SystemdNotifier()
        systemd.ready(f"watching {len(config.service)} services")
        await stop.wait()
        systemd.stopping()
    logger.info("heartwatch stopped")


def _local_api(supervisor: Supervisor) -> LocalApi:
    """The fleet agent's snapshot and selections, as the local HTTP API makes them."""
    from heartwatch.daemon.fleet_commands import LocalApi  # aio-pika: only with [fleet]

    return LocalApi(
        services=lambda: [
            read_status(supervisor, record.name).model_dump(mode="json")
            for record in supervisor.watchdog.records()
        ],
        selectable=lambda verb: selection_groups(supervisor, verb),
    )


def _reload_in_background(tasks: TaskSet, reloader: Reloader, why: str) -> None:
    """A signal's reload: its outcome (applied or refused) is logged and journaled by it."""
    if not tasks.closed:
        tasks.start(_reload_quietly(reloader, why), name=f"reload ({why})")


async def _reload_quietly(reloader: Reloader, why: str) -> None:
    try:
        await reloader.reload(why)
    except ReloadRefused:
        pass  # said already, with every problem, in the log and the journal
    except DaemonStopping:
        logger.info("{}: not reloaded, the daemon is stopping", why)


class ListenerError(OSError):
    """A listener could not be opened: says which one, where, and why."""

    def __init__(self, what: str, address: tuple[str, int], error: OSError) -> None:
        # asyncio words it "error while attempting to bind on address (...): ..."; the errno
        # alone says it plainly.
        reason = os.strerror(error.errno) if error.errno else str(error)
        reason = reason[:1].lower() + reason[1:]
        super().__init__(error.errno, f"{what} {_format_address(address)}: {reason}")

    def __str__(self) -> str:
        return str(self.strerror)


async def _listening(what: str, address: tuple[str, int], opening: Awaitable[T]) -> T:
    try:
        return await opening
    except OSError as error:
        raise ListenerError(what, address, error) from None


async def _stop_http(http: HttpServing) -> None:
    server, task = http
    server.request_exit()
    await task


async def _stop_services(
    config: Config, supervisor: Supervisor, state: StateDir, journal: Journal
) -> None:
    """Stop every service in reverse dependency order; end whatever outlived its service."""
    logger.info("stopping all services")
    journal.append("daemon", None, DAEMON_STOPPING, time.time())
    # The services in force now (a reload may have added some since the start).
    timeout = sum(s.stop_timeout for s in supervisor.config.service) + 5.0
    await supervisor.shutdown(timeout)
    # Anything still carrying this state directory's mark outlived its service: end it.
    leftovers = await asyncio.get_running_loop().run_in_executor(None, state.end_stale_children)
    if leftovers:
        logger.warning("ended processes that outlived their services: {}", leftovers)


def _signals(*names: str) -> tuple[signal.Signals, ...]:
    """The named signals this platform has (SIGPWR and SIGSTKFLT are Linux's)."""
    return tuple(getattr(signal, name) for name in names if hasattr(signal, name))


# What each signal someone may send does to the daemon. Every signal whose default action ends
# a process is handled here, so that none can end the daemon without it stopping its children
# first (children of a dead daemon would run on under PID 1); left alone are SIGKILL, which
# cannot be caught (the next daemon ends what it left), and the signals of the process's own
# faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGSYS, SIGTRAP), whose handler would return
# to the faulting instruction. Stopping: a terminal's ^C and ^\, an init system's stop, a power
# failure (SIGPWR, from UPS daemons), the CPU time limit (SIGXCPU, before the kernel's SIGKILL).
_STOPPING_SIGNALS = _signals("SIGINT", "SIGTERM", "SIGQUIT", "SIGPWR", "SIGXCPU")
# SIGHUP reloads the configuration (an init system's reload, `kill -HUP`), as `heartwatch
# reload` does; a closed terminal's SIGHUP therefore reloads too, which does no harm.
_RELOAD_SIGNALS = _signals("SIGHUP")
# The user signals and the timers' and I/O signals a stray `kill` may send are said and
# ignored. (SIGPIPE and SIGXFSZ Python ignores itself: a closed pipe or a file too large is an
# error to the writer.)
_IGNORED_SIGNALS: tuple[int, ...] = (
    *_signals("SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGSTKFLT"),
    # The real-time signals end a process by default too (`kill -s RTMIN+3`).
    *range(getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", -1) + 1),
)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"


def _install_signal_handlers(
    loop: asyncio.AbstractEventLoop,
    stop: asyncio.Event,
    supervisor: Supervisor,
    reload: Callable[[str], None],
) -> None:
    def on_stopping_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            logger.info("received {}: stopping (send it again to kill at once)", sig.name)
            stop.set()
        else:
            logger.warning("received {} again: killing all services now", sig.name)
            supervisor.kill_all()

    def on_ignored_signal(sig: int) -> None:
        logger.warning("received {}: ignored (it does not stop heartwatch)", _signal_name(sig))

    for stopping in _STOPPING_SIGNALS:
        loop.add_signal_handler(stopping, on_stopping_signal, stopping)

    def on_reload_signal(sig: signal.Signals) -> None:
        logger.info("received {}: reloading the configuration", sig.name)
        reload(sig.name)

    for stopping in _RELOAD_SIGNALS:
        loop.add_signal_handler(stopping, on_reload_signal, stopping)
    for ignored in _IGNORED_SIGNALS:
        loop.add_signal_handler(ignored, on_ignored_signal, ignored)


def _remove_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
    for sig in (*_STOPPING_SIGNALS, *_RELOAD_SIGNALS, *_IGNORED_SIGNALS):
        loop.remove_signal_handler(sig)


def _format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
