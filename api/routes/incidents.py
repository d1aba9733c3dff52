"""Incidents: list (from Temporal visibility, no worker needed), detail, approval, remediation, resolve."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import ClientDep, StoreDep, require_token
from api.metrics import API_ERRORS
from vigil import incident_list
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

_QUERY_TIMEOUT = timedelta(seconds=5)
M = TypeVar("M", bound=BaseModel)
router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"], dependencies=[Depends(require_token)])

IncidentId = Annotated[str, Path(pattern=r"^incident-[a-z0-9-]{1,120}$", description="Incident id.")]
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


async def _live_state(client: ClientDep, incident_id: str) -> IncidentState | None:
    try:
        state: IncidentState = await client.get_workflow_handle(incident_id).query(
            "state", result_type=IncidentState, rpc_timeout=_QUERY_TIMEOUT
        )
    except RPCError:
        return None
    return state


@router.get("/{incident_id}", response_model=IncidentDetail, summary="Live state and full timeline")
async def get_incident(incident_id: IncidentId, client: ClientDep, store: StoreDep) -> IncidentDetail:
    state = await _live_state(client, incident_id)
    record = await store.get_incident(incident_id)
    if state is None and record is None:
        API_ERRORS.labels("get_incident", "404").inc()
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
    timeline = await store.timeline(incident_id)
    if not timeline and state is not None:
        timeline = state.timeline
    diagnosis = state.diagnosis if state is not None and state.diagnosis is not None else None
    if diagnosis is None:
        diagnosis = await store.diagnosis(incident_id)
    return IncidentDetail(
        incident_id=incident_id,
        live=state is not None,
        state=state,
        record=record,
        timeline=timeline,
        diagnosis=diagnosis,
    )


async def _update(client: Client, incident_id: str, update: str, arg: BaseModel, result_type: type[M]) -> M:
    """Run a workflow update; a validator's refusal becomes 409, an unknown incident 404, Temporal down 503."""
    try:
        result: M = await client.get_workflow_handle(incident_id).execute_update(update, arg, result_type=result_type)
    except WorkflowUpdateFailedError as exc:
        API_ERRORS.labels(update, "409").inc()
        cause = exc.cause
        raise HTTPException(status.HTTP_409_CONFLICT, getattr(cause, "message", None) or str(cause)) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            API_ERRORS.labels(update, "404").inc()
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no open incident {incident_id}") from exc
        if exc.status == RPCStatusCode.FAILED_PRECONDITION:
            API_ERRORS.labels(update, "409").inc()
            raise HTTPException(status.HTTP_409_CONFLICT, f"incident {incident_id} is closed") from exc
        API_ERRORS.labels(update, "503").inc()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"Temporal: {exc.message}") from exc
    return result


_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "Refused by the workflow's validator; `detail` says why."}
}


@router.post(
    "/{incident_id}/remediation",
    response_model=PendingApproval,
    responses=_CONFLICT,
    summary="Propose a remediation action; the incident then awaits approval",
)
async def propose_remediation(
    incident_id: IncidentId, proposal: RemediationProposal, client: ClientDep
) -> PendingApproval:
    return await _update(client, incident_id, "propose_remediation", proposal, PendingApproval)


@router.post(
    "/{incident_id}/approval",
    response_model=ApprovalOutcome,
    responses=_CONFLICT,
    summary="Approve or reject the remediation awaiting approval",
)
async def decide(incident_id: IncidentId, request: ApprovalRequest, client: ClientDep) -> ApprovalOutcome:
    return await _update(client, incident_id, "approval", request, ApprovalOutcome)


@router.post("/{incident_id}/resolve", response_model=IncidentState, responses=_CONFLICT, summary="Resolve by hand")
async def resolve(incident_id: IncidentId, request: ResolveRequest, client: ClientDep) -> IncidentState:
    return await _update(client, incident_id, "resolve", request, IncidentState)
