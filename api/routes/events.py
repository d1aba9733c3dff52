"""Deploy and change events: recorded for incidents to correlate ("what changed just before this broke?")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import ValidationError

from api.deps import (
    AUTH_RESPONSES,
    RETRY_AFTER,
    BearerDep,
    Refusal,
    SettingsDep,
    StoreDep,
    authorize_intake,
    require_viewer,
)
from api.metrics import DEPLOY_EVENTS
from api.routes.logs import NO_NUL, TimeOutOfRange, content_type_of, read_capped_body, to_utc, window
from vigil.models import DeployEvent, DeployEventRef, StoredDeployEvent
from vigil.store.database import STORE_UNAVAILABLE, store_unavailable
from vigil.untrusted_json import UNSTORABLE_TEXT, JSONInputError, loads_untrusted

router = APIRouter(prefix="/api/v1/events", tags=["events"])

DEFAULT_WINDOW = timedelta(hours=24)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong bearer token."},
    403: {"description": "A viewer's API token: intake needs VIGIL_API_TOKEN or a responder's (or admin's) token."},
    413: {"description": "Body larger than VIGIL_MAX_PAYLOAD_BYTES."},
    415: {"description": "Body is not JSON."},
    422: {"description": "Invalid JSON or event; `detail` says which field."},
    503: {"description": "PostgreSQL unreachable; retry later (nothing was stored)."},
}


def _unstorable_field(event: DeployEvent) -> str | None:
    """The first text field PostgreSQL cannot store: a NUL from a `\\u0000` escape (pydantic already refuses lone
    surrogates). Refused rather than altered: these are identifiers, and the event is idempotent on them."""
    return next(
        (name for name, value in event if isinstance(value, str) and UNSTORABLE_TEXT.search(value)),
        None,
    )


def _refuse(code: int, reason: str, detail: str) -> HTTPException:
    DEPLOY_EVENTS.labels(reason).inc()
    headers = RETRY_AFTER if code == status.HTTP_503_SERVICE_UNAVAILABLE else None
    return HTTPException(code, detail, headers=headers)


@router.post(
    "/deploy",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeployEventRef,
    summary="Record a deploy or change event",
    description=(
        "Idempotent on (service, version, commit, ts): a re-sent event is stored once and answered with the "
        "same id. Give `ts` when retrying: without it the event takes the time it was received."
    ),
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": DeployEvent.model_json_schema()}},
        }
    },
)
async def record_deploy(
    request: Request, settings: SettingsDep, store: StoreDep, credentials: BearerDep
) -> DeployEventRef:
    try:
        authorize_intake(request, credentials)
    except Refusal as refusal:
        DEPLOY_EVENTS.labels(refusal.reason).inc()
        raise
    limit = settings.max_payload_bytes
    body = await read_capped_body(request, limit)
    if body is None:
        raise _refuse(413, "too_large", f"body over the {limit}-byte limit")
    content_type = content_type_of(request)
    if content_type and not (content_type == "application/json" or content_type.endswith("+json")):
        raise _refuse(415, "not_json", f"content-type {content_type!r} is not application/json")
    try:
        event = DeployEvent.model_validate(loads_untrusted(body))
        if event.ts is not None:
            event.ts = to_utc(event.ts, "ts")
    except JSONInputError as exc:
        raise _refuse(422, "invalid_json", f"body is not valid JSON: {exc.reason}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise _refuse(422, "invalid_payload", f"{where}: {first['msg']}") from exc
    except TimeOutOfRange as exc:
        raise _refuse(422, "invalid_payload", str(exc)) from exc
    unstorable = _unstorable_field(event)
    if unstorable is not None:
        raise _refuse(422, "invalid_payload", f"{unstorable}: holds a NUL character or a lone UTF-16 surrogate")
    try:
        stored, created = await store.insert_deploy(event, received_at=datetime.now(UTC))
    except STORE_UNAVAILABLE as exc:
        if not store_unavailable(exc):
            raise
        raise _refuse(503, "database_unavailable", f"PostgreSQL did not take the event: {exc}") from exc
    DEPLOY_EVENTS.labels("stored" if created else "duplicate").inc()
    return DeployEventRef(id=stored.id, service=stored.service, ts=stored.ts)


@router.get(
    "/deploy",
    response_model=list[StoredDeployEvent],
    summary="Deploy events in a time window, oldest first",
    description="Events with start <= ts < end (default: the last 24 hours), of one service or all.",
    dependencies=[Depends(require_viewer)],
    responses={**AUTH_RESPONSES, 422: {"description": "Bad parameters."}},
)
async def list_deploys(
    store: StoreDep,
    service: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)] = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[StoredDeployEvent]:
    start, end = window(start, end, DEFAULT_WINDOW)
    return await store.deploys(service=service, start=start, end=end, limit=limit)
