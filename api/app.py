"""FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from api.intake import GroupSignaller
from api.routes import alerts, chat, events, health, incidents, logs
from vigil import __version__
from vigil.settings import Settings
from vigil.store.database import Store, database_url
from vigil.temporal import connect


def create_app(settings: Settings, *, client: Client | None = None, store: Store | None = None) -> FastAPI:
    """The API. Given a client and store (tests, embedding) it uses them; otherwise it opens its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if client is None:
            app.state.temporal = await connect(settings)
            app.state.signaller = GroupSignaller(app.state.temporal, settings)
        if store is not None:
            yield
            return
        app.state.store = await Store.open(database_url(settings))
        try:
            yield
        finally:
            await app.state.store.close()

    app = FastAPI(
        title="Vigil",
        version=__version__,
        description=(
            "Alert webhooks, log and deploy-event intake (including the Loki push API) and the incident REST API. "
            "Every incident is a durable Temporal workflow."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.temporal = client
    app.state.signaller = None if client is None else GroupSignaller(client, settings)
    app.state.store = store
    app.include_router(alerts.router)
    app.include_router(incidents.router)
    app.include_router(logs.router)
    app.include_router(events.router)
    app.include_router(chat.router)
    app.include_router(health.router)
    return app
