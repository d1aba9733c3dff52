"""Incidents: list (from Temporal visibility, no worker needed), detail, approval, remediation, resolve."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel
from temporalio.client import Client

from api import incident_updates
from api.deps import AUTH_RESPONSES, RETRY_AFTER, ClientDep, ResponderDep, StoreDep, require_viewer
from api.incident_updates import IncidentNotFound, TemporalUnavailable, UpdateRefused
from api.metrics import API_ERRORS
from vigil import incident_list
from vigil.incident_list import IncidentLocation
from vigil.integrations.models import AcknowledgeRequest
from vigil.models import (
    ApprovalOutcome,
    ApprovalRequest,
    IncidentDetail,
    IncidentState,
    IncidentStatus,
    IncidentSummary,
    PendingApproval,
    RemediationProposal,
    ResolveRequest,
    Severity,
)
from vigil.store.database import STORE_UNAVAILABLE, store_unavailable

M = TypeVar("M", bound=BaseModel)
router = APIRouter(
    prefix="/api/v1/incidents", tags=["incidents"], dependencies=[Depends(require_viewer)], responses=AUTH_RESPONSES
)

IncidentId = Annotated[str, Path(pattern=incident_list.INCIDENT_ID_PATTERN, description="Incident id.")]
ServiceFilter = Annotated[str | None, Query(pattern=incident_list.SERVICE_PATTERN)]


@router.get("", response_model=list[IncidentSummary], summary="List incidents, newest first")
async def list_incidents(
    client: ClientDep,
    status_filter: Annotated[IncidentStatus | None, Query(alias="status")] = None,
    service: ServiceFilter = None,
    severity: Severity | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[IncidentSummary]:
    return await incident_list.list_incidents(
        client, status=status_filter, service=service, severity=severity, limit=limit
    )


async def _locate(client: Client, incident_id: str) -> IncidentLocation:
    try:
        return await incident_updates.locate(client, incident_id)
    except TemporalUnavailable as exc:
        API_ERRORS.labels("locate", "503").inc()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers=RETRY_AFTER) from exc


@router.get(
    "/{incident_id}",
    response_model=IncidentDetail,
    responses={503: {"description": "Neither the workflow nor the store can be read now; retry later."}},
    summary="Live state and full timeline (an occurrence id, or a group id for the group's latest incident)",
)
async def get_incident(incident_id: IncidentId, client: ClientDep, store: StoreDep) -> IncidentDetail:
    location = await _locate(client, incident_id)
    state = await incident_updates.live_state(client, location.workflow_id, location.run_id)
    occurrence = state.incident_id if state is not None else location.incident_id
    try:
        record = await store.get_incident(occurrence)
        timeline = await store.timeline(occurrence)
        stored_diagnosis = await store.diagnosis(occurrence)
    except STORE_UNAVAILABLE as exc:
        if not store_unavailable(exc):
            raise
        if state is None:
            API_ERRORS.labels("get_incident", "503").inc()
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"the store is unreachable and no worker answered for {incident_id}: {exc!r}"[:300],
                headers=RETRY_AFTER,
            ) from exc
        API_ERRORS.labels("get_incident", "store_unavailable").inc()
        record, timeline, stored_diagnosis = None, [], None
    if state is None and record is None:
        API_ERRORS.labels("get_incident", "404").inc()
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
    if not timeline and state is not None:
        timeline = state.timeline
    diagnosis = state.diagnosis if state is not None and state.diagnosis is not None else stored_diagnosis
    return IncidentDetail(
        incident_id=occurrence,
        live=state is not None,
        state=state,
        record=record,
        timeline=timeline,
        diagnosis=diagnosis,
    )


async def _update(client: Client, incident_id: str, update: str, arg: BaseModel, result_type: type[M]) -> M:
    """A refusal by the workflow becomes 409, an unknown incident 404, Temporal down 503."""
    try:
        return await incident_updates.run_update(client, incident_id, update, arg, result_type)
    except UpdateRefused as exc:
        API_ERRORS.labels(update, "409").inc()
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except IncidentNotFound as exc:
        API_ERRORS.labels(update, "404").inc()
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except TemporalUnavailable as exc:
        API_ERRORS.labels(update, "503").inc()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers=RETRY_AFTER) from exc


_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "Refused by the workflow's validator; `detail` says why."}
}
_ACTOR = (
    "Needs the responder role. With a user API token the action is recorded as that user's: `{field}` is replaced "
    "by the user's name whatever the body says. With VIGIL_API_TOKEN (or an open API) `{field}` is recorded as sent."
)


@router.post(
    "/{incident_id}/remediation",
    response_model=PendingApproval,
    responses=_CONFLICT,
    summary="Propose a remediation action; the incident then awaits approval",
    description=_ACTOR.format(field="proposed_by"),
)
async def propose_remediation(
    incident_id: IncidentId, proposal: RemediationProposal, client: ClientDep, caller: ResponderDep
) -> PendingApproval:
    proposal = proposal.model_copy(update={"proposed_by": caller.actor(proposal.proposed_by)})
    return await _update(client, incident_id, "propose_remediation", proposal, PendingApproval)


@router.post(
    "/{incident_id}/approval",
    response_model=ApprovalOutcome,
    responses=_CONFLICT,
    summary="Approve or reject the remediation awaiting approval",
    description=_ACTOR.format(field="by"),
)
async def decide(
    incident_id: IncidentId, request: ApprovalRequest, client: ClientDep, caller: ResponderDep
) -> ApprovalOutcome:
    request = request.model_copy(update={"by": caller.actor(request.by)})
    return await _update(client, incident_id, "approval", request, ApprovalOutcome)


@router.post(
    "/{incident_id}/resolve",
    response_model=IncidentState,
    responses=_CONFLICT,
    summary="Resolve by hand",
    description=_ACTOR.format(field="by"),
)
async def resolve(
    incident_id: IncidentId, request: ResolveRequest, client: ClientDep, caller: ResponderDep
) -> IncidentState:
    request = request.model_copy(update={"by": caller.actor(request.by)})
    return await _update(client, incident_id, "resolve", request, IncidentState)


@router.post(
    "/{incident_id}/acknowledge",
    response_model=IncidentState,
    responses=_CONFLICT,
    summary="Acknowledge: record who is on it; an unanswered proposal escalates no further",
    description=_ACTOR.format(field="by"),
)
async def acknowledge(
    incident_id: IncidentId, request: AcknowledgeRequest, client: ClientDep, caller: ResponderDep
) -> IncidentState:
    request = request.model_copy(update={"by": caller.actor(request.by)})
    return await _update(client, incident_id, "acknowledge", request, IncidentState)
