"""FastAPI dependencies: settings, Temporal client, store and bearer-token auth."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.intake import GroupSignaller
from vigil.settings import Settings
from vigil.store.database import Store

_bearer = HTTPBearer(auto_error=False, description="Bearer token (VIGIL_API_TOKEN), required when configured.")


RETRY_AFTER = {"Retry-After": "5"}
"""Headers of every 503 the API answers: how long a sender (Alertmanager, a log shipper) waits before retrying."""


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_client(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


async def get_signaller(request: Request) -> GroupSignaller:
    signaller: GroupSignaller = request.app.state.signaller
    return signaller


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def token_accepted(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> bool:
    """True when no token is configured, or the request carries it (compared in constant time)."""
    expected = settings.api_token
    if expected is None:
        return True
    return credentials is not None and hmac.compare_digest(
        credentials.credentials.encode(), expected.get_secret_value().encode()
    )


def unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "missing or wrong bearer token",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def require_token(settings: Annotated[Settings, Depends(get_settings)], credentials: BearerDep) -> None:
    if not token_accepted(settings, credentials):
        raise unauthorized()


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientDep = Annotated[Client, Depends(get_client)]
StoreDep = Annotated[Store, Depends(get_store)]
SignallerDep = Annotated[GroupSignaller, Depends(get_signaller)]
