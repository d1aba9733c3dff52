"""FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.client import Client

from api.deps import RETRY_AFTER
from api.intake import GroupSignaller
from api.limits import RequestLimits
from api.metrics import HTTP_REJECTED
from api.routes import alerts, chat, events, health, incidents, logs, postmortem, slack, traces, webhooks
from api.slack_app import build_slack_app, socket_mode
from vigil import __version__
from vigil.auth.directory import UserDirectory
from vigil.settings import Settings
from vigil.store.database import STORE_UNAVAILABLE, Store, database_url, store_unavailable
from vigil.temporal import connect


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each field at fault (`loc`) and why (`msg`). Unlike FastAPI's default answer it does not echo
    the input back: that could be megabytes, or a float like 1e999 that JSON cannot even write (a 500)."""
    assert isinstance(exc, RequestValidationError)
    HTTP_REJECTED.labels("invalid_request").inc()
    errors = [
        {"type": str(error["type"]), "loc": list(error["loc"]), "msg": str(error["msg"])} for error in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """PostgreSQL down or restarting, on whichever route noticed: 503 with Retry-After, never a 500."""
    if not store_unavailable(exc):
        raise exc
    HTTP_REJECTED.labels("database_unavailable").inc()
    return JSONResponse(
        {"detail": f"PostgreSQL is unreachable ({type(exc).__name__}: {exc}); retry later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers=RETRY_AFTER,
    )


def create_app(settings: Settings, *, client: Client | None = None, store: Store | None = None) -> FastAPI:
    """The API. Given a client and store (tests, embedding) it uses them; otherwise it opens its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if client is None:
            app.state.temporal = await connect(settings)
            app.state.signaller = GroupSignaller(app.state.temporal, settings)
        async with socket_mode(app.state.slack, settings):
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
        # FastAPI's own OpenTelemetry hooks look up the OTel providers on every request (≈9% of the webhook's CPU
        # in a py-spy profile); Vigil exports Prometheus metrics and configures no OTel provider.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.add_middleware(RequestLimits, max_body_bytes=settings.max_payload_bytes)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for error in STORE_UNAVAILABLE:
        app.add_exception_handler(error, _store_unavailable)
    app.state.settings = settings
    app.state.users = UserDirectory.of(settings)
    app.state.temporal = client
    app.state.signaller = None if client is None else GroupSignaller(client, settings)
    app.state.store = store
    app.state.slack = build_slack_app(settings, lambda: app.state.temporal)
    app.include_router(alerts.router)
    app.include_router(incidents.router)
    app.include_router(postmortem.router)
    app.include_router(logs.router)
    app.include_router(traces.router)
    app.include_router(events.router)
    app.include_router(chat.router)
    app.include_router(health.router)
    app.include_router(slack.router)
    app.include_router(webhooks.router)
    return app
