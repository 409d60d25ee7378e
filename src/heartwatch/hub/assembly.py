"""``heartwatch hub``: assemble the hub, serve until asked to stop.

Order of start-up: bring the database's schema up to date (under an advisory lock: several
hubs may start at once); open the connection pool; the alerts, the host sweep, the retention;
the change feed (it needs only PostgreSQL) and the HTTP side: the fleet's view lives in the
database, so a hub whose broker is away (down, wrong credentials) still shows it. Meanwhile
the broker, tried until it answers: the ingest (one hub at a time consumes: the queue has a
single active consumer), the commands and the log relay, attached to the HTTP side when they
are ready (until then their routes answer 503 ``broker_unreachable``). Once HTTP listens and
the broker's first attempt is over (reached or not: a hub that has its broker is ready when
it says where it is), say where: ``<state_dir>/hub.json``, ``{"http": "127.0.0.1:PORT",
"pid": N, "broker": bool}``, written again with ``"broker": true`` once reached. The host
sweep hears through the ingest (``hub/hosts.py``): no host goes unreachable while this hub
has not reached the broker, nor while its database or its ingest fails.
Order of shut-down: the reverse (HTTP first, the pool last), so nothing still running uses
what was closed; a batch being written is finished or left unacknowledged (sent again).

The pool waits at most ``POOL_WAIT`` for a connection and checks each one it hands out, and
gives up a reconnection after ``POOL_RECONNECT`` (a new one starts at the next request), so a
database that comes back is used again within a couple of seconds, not after the pool's
backoff has grown to half a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from loguru import logger

from heartwatch.config import Config, ServerConfig
from heartwatch.core.redact import redact
from heartwatch.core.throttle import LogThrottle
from heartwatch.daemon.http_server import HttpServing, start_http
from heartwatch.hub.alerts import FleetAlerter
from heartwatch.hub.config import HubConfig
from heartwatch.hub.hosts import HearingStore, HostSweeper, ingest_ears
from heartwatch.hub.ingest import Ingest
from heartwatch.hub.retention import Retention
from heartwatch.hub.schema import migrate

if TYPE_CHECKING:
    from fastapi import FastAPI
    from psycopg_pool import AsyncConnectionPool


HUB_INFO: Final = "hub.json"
BROKER_RETRY: Final = 2.0  # seconds between attempts to reach the broker
BROKER_LOG_INTERVAL: Final = 60.0
POOL_MAX: Final = 10
POOL_WAIT: Final = 2.0  # seconds a caller waits for a connection (the API: 1 s, its own)
POOL_RECONNECT: Final = 2.0  # seconds one reconnection attempt is retried before it gives up


def hub_pool(database: str) -> AsyncConnectionPool[Any]:
    """The hub's pool (not yet open): short waits, checked connections, quick reconnection."""
    from psycopg_pool import AsyncConnectionPool

    return AsyncConnectionPool(
        database,
        min_size=2,
        max_size=POOL_MAX,
        open=False,
        name="hub",
        timeout=POOL_WAIT,
        reconnect_timeout=POOL_RECONNECT,
        check=AsyncConnectionPool.check_connection,
    )


async def run_hub(config: HubConfig, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives (in the main thread).

    Raises what keeps it from starting (the database unreachable, ``SchemaTooNew``, a port in
    use); everything opened before is closed again. The broker is not needed to start."""
    from heartwatch.hub.api import create_hub_app
    from heartwatch.hub.feed import FleetFeed
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
        pool = hub_pool(hub.database)
        await pool.open(wait=True, timeout=30)
        resources.push_async_callback(pool.close)
        counters = HubCounters()
        alerter = FleetAlerter(config, pool)
        alerter.start()
        resources.push_async_callback(alerter.close)
        store = HearingStore(pool)
        ingest = Ingest(hub.broker, hub.exchange, store, counters, alerter.receive_batch)
        sweeper = HostSweeper(
            pool,
            config.host_rules,
            alerter.receive_host_change,
            ears=lambda: ingest_ears(ingest, store),
        )
        sweeper.start()
        resources.push_async_callback(sweeper.close)
        retention = Retention(hub.database, hub.retention, hub.forget_after)
        retention.start()
        resources.push_async_callback(retention.close)
        feed = FleetFeed(pool, dsn=hub.database, counters=counters)
        await feed.start()
        resources.push_async_callback(feed.close)
        broker_side = contextlib.AsyncExitStack()  # closed after HTTP (pushed before it)
        resources.push_async_callback(broker_side.aclose)
        app = create_hub_app(config, pool, None, feed, None, counters=counters)
        info = state_dir / HUB_INFO
        tried, reached = asyncio.Event(), asyncio.Event()
        connecting = asyncio.create_task(
            _broker_side(config, ingest, pool, app, broker_side, stop, tried, reached),
            name="hub broker",
        )
        resources.push_async_callback(_cancel, connecting)
        http, address = await start_http(_http_settings(config), app)
        if http is not None:
            resources.push_async_callback(_stop_http, http)
        bound = _format_address(address) if address else ""
        await _first_of(tried, stop)
        _write_hub_info(info, bound, reached.is_set())
        resources.callback(_remove_hub_info, info)
        if not reached.is_set():
            saying = asyncio.create_task(_say_reached(info, bound, reached), name="hub.json")
            resources.push_async_callback(_cancel, saying)
        logger.info("heartwatch hub {} serving http on {} (pid {})", hub.name, bound, os.getpid())
        await stop.wait()
        logger.info("heartwatch hub {} stopping", hub.name)
    logger.info("heartwatch hub stopped")


async def _broker_side(
    config: HubConfig,
    ingest: Ingest,
    pool: AsyncConnectionPool[Any],
    app: FastAPI,
    resources: contextlib.AsyncExitStack,
    stop: asyncio.Event,
    tried: asyncio.Event,
    reached: asyncio.Event,
) -> None:
    """Reach the broker (trying again until it answers; ``tried`` set after the first
    attempt), then start what needs it, attach the commands and the log relay to ``app``,
    and set ``reached``."""
    from heartwatch.hub.api import attach
    from heartwatch.hub.commands import CommandSender
    from heartwatch.hub.logs import LogRelay

    try:
        if not await _started(ingest, config.hub.broker, stop, tried):
            return
    finally:
        tried.set()
    resources.push_async_callback(ingest.close)
    connection = ingest.connection
    assert connection is not None  # started

    async def new_channel() -> Any:
        return await connection.channel()

    commands = CommandSender(config, new_channel, pool)
    await commands.start()
    resources.push_async_callback(commands.close)
    logs = LogRelay(config, connection, commands)
    await logs.start()
    resources.push_async_callback(logs.close)
    attach(app, commands, logs)
    reached.set()
    logger.info("hub {}: the broker is reached: ingesting, commands and logs on", config.name)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _say_reached(info: Path, bound: str, reached: asyncio.Event) -> None:
    await reached.wait()
    _write_hub_info(info, bound, True)


async def _started(
    ingest: Ingest, broker: str, stop: asyncio.Event, tried: asyncio.Event | None = None
) -> bool:
    """Connect the ingest, trying again while the broker cannot be reached (a hub may start
    before its broker); False if asked to stop meanwhile. ``tried``: set after the first
    attempt."""
    throttle = LogThrottle(BROKER_LOG_INTERVAL)
    while not stop.is_set():
        try:
            await ingest.start()
            return True
        except Exception as error:  # unreachable, refused login, ...: aio-pika's many forms
            if tried is not None:
                tried.set()
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


def _write_hub_info(path: Path, http: str, broker: bool) -> None:
    """``hub.json``, replaced whole (a reader never sees half of it)."""
    temporary = path.with_name(path.name + ".tmp")
    info = {"http": http, "pid": os.getpid(), "broker": broker}
    temporary.write_text(json.dumps(info) + "\n")
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
