"""FastAPI dependencies: settings, Temporal client, store, and who the caller is (bearer tokens and roles)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.intake import GroupSignaller
from api.metrics import HTTP_REJECTED
from vigil.auth.directory import UserDirectory
from vigil.auth.models import UsersFileError
from vigil.auth.roles import Role
from vigil.auth.tokens import looks_like_user_token
from vigil.settings import Settings
from vigil.store.database import Store

_bearer = HTTPBearer(
    auto_error=False,
    description="Bearer token: VIGIL_API_TOKEN (acts as admin) or a user's API token (`vigil user token NAME`); "
    "required once either exists.",
)


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


@dataclass(frozen=True)
class Caller:
    """Who sent a request. `user`: the name behind a user API token; None for the service token
    (VIGIL_API_TOKEN, which acts as admin) and for an open API (no token configured anywhere)."""

    role: Role
    user: str | None = None

    def actor(self, claimed: str) -> str:
        """The actor an action records: a user token's own name, whatever the body claims; otherwise the
        body's `by` / `proposed_by`, as before users existed."""
        return self.user if self.user is not None else claimed


ADMIN_CALLER = Caller(role=Role.ADMIN)


class Refusal(HTTPException):
    """401 (no or wrong token), 403 (role too low) or 503 (users file unreadable); `reason` labels metrics."""

    def __init__(self, status_code: int, reason: str, detail: str) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if status_code == status.HTTP_401_UNAUTHORIZED else None
        super().__init__(status_code, detail, headers=headers)
        self.reason = reason


def unauthorized() -> Refusal:
    return Refusal(status.HTTP_401_UNAUTHORIZED, "unauthorized", "missing or wrong bearer token")


def _service_token_matches(settings: Settings, presented: str) -> bool:
    expected = settings.api_token
    return expected is not None and hmac.compare_digest(presented.encode(), expected.get_secret_value().encode())


def identify(settings: Settings, users: UserDirectory, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    """Who the bearer token says the caller is; `Refusal` when a token is required and this one is not valid.

    A token is required once VIGIL_API_TOKEN is set or any user holds an API token; until then the API is
    open, as it was before users existed. The service token is compared in constant time; a `vgl_` token is
    found by its id and its hash compared in constant time."""
    presented = credentials.credentials if credentials is not None else None
    if presented is not None and _service_token_matches(settings, presented):
        return ADMIN_CALLER
    try:
        if presented is not None and looks_like_user_token(presented):
            user = users.user_for_token(presented)
            if user is not None:
                return Caller(role=user.role, user=user.name)
            raise unauthorized()
        if settings.api_token is None and not users.has_api_tokens():
            return ADMIN_CALLER
    except UsersFileError as exc:
        raise Refusal(status.HTTP_503_SERVICE_UNAVAILABLE, "users_file_unreadable", str(exc)) from None
    raise unauthorized()


def authorize(request: Request, credentials: HTTPAuthorizationCredentials | None, required: Role) -> Caller:
    """The caller when its role includes `required`, else `Refusal` (403 names the role needed)."""
    caller = identify(request.app.state.settings, request.app.state.users, credentials)
    if not caller.role.may(required):
        raise Refusal(
            status.HTTP_403_FORBIDDEN,
            "forbidden",
            f"user {caller.user!r} is a {caller.role.value}; this needs the {required.value} role or higher",
        )
    return caller


INTAKE_ROLE = Role.RESPONDER
"""Alerts, logs and deploy events come from the service token or a responder's (or admin's) token."""


def authorize_intake(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    """For the intake routes, which count refusals in their own metrics (`Refusal.reason`)."""
    return authorize(request, credentials, INTAKE_ROLE)


def _requires(role: Role) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Caller]]:
    async def dependency(request: Request, credentials: BearerDep) -> Caller:
        try:
            return authorize(request, credentials, role)
        except Refusal as refusal:
            HTTP_REJECTED.labels(refusal.reason).inc()
            raise

    return dependency


require_viewer = _requires(Role.VIEWER)
"""Reads: any valid token (or none, while the API is open)."""
require_responder = _requires(Role.RESPONDER)
"""Incident actions and questions: a responder or admin user token, or the service token."""

ResponderDep = Annotated[Caller, Depends(require_responder)]
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong bearer token (VIGIL_API_TOKEN or a user's `vgl_` API token)."},
    403: {"description": "The token's user lacks the role this needs (viewers read, responders act)."},
}


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientDep = Annotated[Client, Depends(get_client)]
StoreDep = Annotated[Store, Depends(get_store)]
SignallerDep = Annotated[GroupSignaller, Depends(get_signaller)]
