"""Postmortem draft (Markdown) and MTTx timings of an incident, built from the same detail as
GET /api/v1/incidents/{id}: live state when a worker answers, else the stored record."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from api.deps import AUTH_RESPONSES, ClientDep, StoreDep, require_viewer
from api.routes.incidents import IncidentId, get_incident
from vigil.models import AlertRecord, IncidentDetail
from vigil.mttx import IncidentTimings, mttx
from vigil.postmortem import postmortem_markdown
from vigil.store.database import Store

router = APIRouter(
    prefix="/api/v1/incidents", tags=["postmortem"], dependencies=[Depends(require_viewer)], responses=AUTH_RESPONSES
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No incident with this id."},
    503: {"description": "Neither the workflow nor the store can be read now; retry later (`Retry-After`)."},
}
MARKDOWN = "text/markdown; charset=utf-8"


async def _alerts(store: Store, detail: IncidentDetail) -> list[AlertRecord] | None:
    """The stored alerts when no worker answered (the record alone carries only their counts)."""
    if detail.state is not None or detail.record is None:
        return None
    return await store.alerts(detail.incident_id)


@router.get(
    "/{incident_id}/postmortem",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {"schema": {"type": "string"}}}}, **_ERRORS},
    summary="Postmortem draft in Markdown: summary, impact, timeline, root cause, actions, MTTx, follow-ups",
)
async def get_postmortem(incident_id: IncidentId, client: ClientDep, store: StoreDep) -> Response:
    detail = await get_incident(incident_id, client, store)
    markdown = postmortem_markdown(detail, await _alerts(store, detail))
    return Response(markdown, media_type=MARKDOWN)


@router.get(
    "/{incident_id}/timings",
    response_model=IncidentTimings,
    responses=_ERRORS,
    summary="MTTx: times to detect, acknowledge, diagnose, mitigate and resolve (seconds; null when not reached)",
)
async def get_timings(incident_id: IncidentId, client: ClientDep, store: StoreDep) -> IncidentTimings:
    detail = await get_incident(incident_id, client, store)
    return mttx(detail, await _alerts(store, detail))
