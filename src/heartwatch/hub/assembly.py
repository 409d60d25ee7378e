"""``heartwatch hub``: assemble the hub, serve until asked to stop.

Order of start-up: bring the database's schema up to date (under an advisory lock: several
hubs may start at once); open the connection pool; the alerts, the host sweep (its start
grace counts from here); the broker: the ingest (one hub at a time consumes: the queue has a
single active consumer), the commands, the change feed, the log relay; the HTTP side; say
where (``<state_dir>/hub.json``: ``{"http": "127.0.0.1:PORT", "pid": N}``).
Order of shut-down: the reverse (HTTP first, the pool last), so nothing still running uses
what was closed; a batch being written is finished or left unacknowledged (sent again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, Final

from loguru import logger

from heartwatch.config import Config, ServerConfig
from heartwatch.core.redact import redact
from heartwatch.core.throttle import LogThrottle
from heartwatch.daemon.http_server import HttpServing, start_http
from heartwatch.hub.alerts import FleetAlerter
from heartwatch.hub.config import HubConfig
from heartwatch.hub.hosts import HostSweeper
from heartwatch.hub.ingest import Ingest
from heartwatch.hub.schema import migrate
from heartwatch.hub.store import FleetStore

HUB_INFO: Final = "hub.json"
BROKER_RETRY: Final = 2.0  # seconds between attempts to reach the broker at start
BROKER_LOG_INTERVAL: Final = 60.0
POOL_MAX: Final = 10


async def run_hub(config: HubConfig, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives (in the main thread).

    Raises what keeps it from starting (the database unreachable, ``SchemaTooNew``, a port in
    use); everything opened before is closed again."""
    from psycopg_pool import AsyncConnectionPool

    from heartwatch.hub.api import create_hub_app
    from heartwatch.hub.commands import CommandSender
    from heartwatch.hub.feed import FleetFeed
    from heartwatch.hub.logs import LogRelay
    from heartwatch.hub.metrics import HubCounters

    stop = stop or asyncio.Event()
    hub = config.hub
    async with contextlib.AsyncExitStack() as resources:
        _install_signal_handlers(stop, resources)
        state_dir = config.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        applied = await migrate(hub.database)
        if applied:
            logger.info("hub {}: database schema migrated to version {}", hub.name, applied[-1])
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            hub.database, min_size=2, max_size=POOL_MAX, open=False, name="hub"
        )
        await pool.open(wait=True, timeout=30)
        resources.push_async_callback(pool.close)
        counters = HubCounters()
        alerter = FleetAlerter(config, pool)
        alerter.start()
        resources.push_async_callback(alerter.close)
        sweeper = HostSweeper(pool, config.host_rules, alerter.receive_host_change)
        sweeper.start()
        resources.push_async_callback(sweeper.close)
        ingest = Ingest(hub.broker, hub.exchange, FleetStore(pool), counters, alerter.receive_batch)
        if not await _started(ingest, hub.broker, stop):
            return
        resources.push_async_callback(ingest.close)
        connection = ingest.connection
        assert connection is not None  # started

        async def new_channel() -> Any:
            return await connection.channel()

        commands = CommandSender(config, new_channel, pool)
        await commands.start()
        resources.push_async_callback(commands.close)
        feed = FleetFeed(pool, dsn=hub.database, counters=counters)
        await feed.start()
        resources.push_async_callback(feed.close)
        logs = LogRelay(config, connection, commands)
        await logs.start()
        resources.push_async_callback(logs.close)
        app = create_hub_app(config, pool, commands, feed, logs, counters=counters)
        http, address = await start_http(_http_settings(config), app)
        if http is not None:
            resources.push_async_callback(_stop_http, http)
        bound = _format_address(address) if address else ""
        info = state_dir / HUB_INFO
        _write_hub_info(info, bound)
        resources.callback(_remove_hub_info, info)
        logger.info("heartwatch hub {} serving http on {} (pid {})", hub.name, bound, os.getpid())
        await stop.wait()
        logger.info("heartwatch hub {} stopping", hub.name)
    logger.info("heartwatch hub stopped")


async def _started(ingest: Ingest, broker: str, stop: asyncio.Event) -> bool:
    """Connect the ingest, trying again while the broker cannot be reached (a hub may start
    before its broker); False if asked to stop meanwhile."""
    throttle = LogThrottle(BROKER_LOG_INTERVAL)
    while not stop.is_set():
        try:
            await ingest.start()
            return True
        except Exception as error:  # unreachable, refused login, ...: aio-pika's many forms
            suppressed = throttle.admit("broker", time.monotonic())
            if suppressed is not None:
                logger.warning(
                    "hub: the broker {} cannot be used ({}: {}); trying again every {} s{}",
                    redact(broker),
                    type(error).__name__,
                    redact(str(error))[:200],
                    BROKER_RETRY,
                    f" ({suppressed} failed attempts since the last report)" if suppressed else "",
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), BROKER_RETRY)
    return False


def _http_settings(config: HubConfig) -> Config:
    """The daemon's HTTP settings for ``start_http`` (the same limits and guards as the
    agent's server), at the hub's address."""
    return Config(server=ServerConfig(http=config.hub.http))


async def _stop_http(http: HttpServing) -> None:
    server, task = http
    server.request_exit()
    await task


def _write_hub_info(path: Path, http: str) -> None:
    """``hub.json``, replaced whole (a reader never sees half of it)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"http": http, "pid": os.getpid()}) + "\n")
    temporary.replace(path)


def _remove_hub_info(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def _install_signal_handlers(stop: asyncio.Event, resources: contextlib.AsyncExitStack) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        logger.info("received {}: stopping", sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (RuntimeError, ValueError):
            return  # not the main thread (a test's hub): the caller's stop event alone
        resources.callback(loop.remove_signal_handler, sig)


def _format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
