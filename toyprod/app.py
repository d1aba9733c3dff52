"""The toyprod FastAPI application and its background tasks (log shipper, watchdog)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from toyprod import SERVICE, VERSION, admin_api, chaos_api, middleware, routes
from toyprod.admin import Admin
from toyprod.chaos import Chaos
from toyprod.config import ToyConfig
from toyprod.dependencies import Database, PaymentClient
from toyprod.deploys import DeployAnnouncer
from toyprod.disk import DataDisk
from toyprod.logs import JsonLog, Sink, stdout_sink
from toyprod.metrics import ToyMetrics
from toyprod.shipping import LogShipper
from toyprod.shop import Shop
from toyprod.watchdog import Watchdog


def create_app(config: ToyConfig, *, sinks: Sequence[Sink] = (stdout_sink,)) -> FastAPI:
    """The shop. `sinks` receive every JSON log line (stdout by default; tests capture them)."""
    metrics = ToyMetrics()
    shipper: LogShipper | None = None
    if config.vigil_url:
        shipper = LogShipper(
            config.vigil_url,
            config.vigil_token,
            metrics,
            lambda level, message: log.log(level, "toyprod.shipper", message, ship=False),
            batch_size=config.ship_batch,
            interval_s=config.ship_interval_s,
            max_buffer=config.ship_buffer,
            max_backoff_s=config.ship_max_backoff_s,
        )
    log = JsonLog(sinks, shipper.submit if shipper else None)
    shop = Shop(
        config=config,
        metrics=metrics,
        log=log,
        db=Database(metrics, size=config.pool_size, timeout_s=config.pool_timeout_s, latency_s=config.query_latency_s),
        payments=PaymentClient(metrics, log, latency_s=config.payments_latency_s),
        disk=DataDisk(config.data_dir, config.disk_quota_bytes, metrics),
    )
    announcer = DeployAnnouncer(config.vigil_url, config.vigil_token, log) if config.vigil_url else None
    chaos = Chaos(shop, announcer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if shipper is not None:
            shipper.start()
        watchdog = asyncio.create_task(Watchdog(shop).run(), name="toyprod-watchdog")
        log.info("toyprod.app", f"{SERVICE} {shop.build.version} (commit {shop.build.commit}) started")
        try:
            yield
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            chaos.stop()
            log.info("toyprod.app", f"{SERVICE} stopping")
            if shipper is not None:
                await shipper.stop()

    app = FastAPI(
        title="toyprod",
        version=VERSION,
        description="Demo shop with chaos switches and admin fixes.",
        lifespan=lifespan,
    )
    app.state.shop = shop
    app.state.chaos = chaos
    app.state.admin = Admin(shop, chaos, announcer)
    app.state.shipper = shipper
    middleware.install(app, shop, chaos)
    app.include_router(routes.router)
    app.include_router(chaos_api.router)
    app.include_router(admin_api.router)
    return app
