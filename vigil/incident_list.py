"""Incident lists from Temporal visibility: search attributes and memo only, so no worker is needed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowExecution

from vigil.models import IncidentStatus, IncidentSummary, Severity
from vigil.temporal import CATEGORY_ATTR, INCIDENT_ATTR, SERVICE_ATTR, SEVERITY_ATTR, STATUS_ATTR

SERVICE_PATTERN = r"^[A-Za-z0-9_.:/-]{1,200}$"
INCIDENT_ID_PATTERN = r"^incident-[a-z0-9-]{1,120}$"
INCIDENT_RUNS = (
    "WorkflowType = 'IncidentWorkflow' "
    f"AND (ExecutionStatus != 'ContinuedAsNew' OR {STATUS_ATTR.name} = '{IncidentStatus.CLOSED.value}')"
)
"""The last run of each incident: one row per incident, whatever continue-as-new did. A run continues as new
either with its own incident (history grew: never once closed) or, once closed, into the group's next incident;
so a run that continued as new ends an incident exactly when it was closed."""
_GROUP_RUNS_SCANNED = 20


@dataclass(frozen=True)
class IncidentLocation:
    """Where an incident id leads: the occurrence's own id, and the run chain in Temporal that holds it."""

    incident_id: str
    workflow_id: str
    run_id: str | None


async def locate(client: Client, incident_id: str) -> IncidentLocation | None:
    """An occurrence id names one incident; a group id (the workflow id, what the webhooks answer) names the
    group's latest incident. None when visibility knows neither (a run that has only just started)."""
    if not re.fullmatch(INCIDENT_ID_PATTERN, incident_id):
        raise ValueError(f"incident id must match {INCIDENT_ID_PATTERN}")
    async for execution in client.list_workflows(
        f"{INCIDENT_RUNS} AND {INCIDENT_ATTR.name} = '{incident_id}'", limit=1
    ):
        return _location(execution)
    latest: WorkflowExecution | None = None
    group_runs = f"{INCIDENT_RUNS} AND WorkflowId = '{incident_id}'"
    async for execution in client.list_workflows(group_runs, limit=_GROUP_RUNS_SCANNED):
        if latest is None or execution.start_time > latest.start_time:
            latest = execution
    return None if latest is None else _location(latest)


def _location(execution: WorkflowExecution) -> IncidentLocation:
    occurrence = execution.typed_search_attributes.get(INCIDENT_ATTR) or execution.id
    return IncidentLocation(incident_id=occurrence, workflow_id=execution.id, run_id=execution.run_id)


def incident_summary(execution: WorkflowExecution, memo: Mapping[str, Any]) -> IncidentSummary:
    attrs = execution.typed_search_attributes
    status_value = attrs.get(STATUS_ATTR)
    severity_value = attrs.get(SEVERITY_ATTR)
    return IncidentSummary(
        incident_id=attrs.get(INCIDENT_ATTR) or execution.id,
        group_id=execution.id,
        run_id=execution.run_id,
        title=memo.get("title"),
        group_key=memo.get("group_key"),
        status=IncidentStatus(status_value) if status_value else None,
        severity=Severity(severity_value) if severity_value else None,
        service=attrs.get(SERVICE_ATTR) or None,
        category=attrs.get(CATEGORY_ATTR) or None,
        started_at=execution.start_time,
        closed_at=execution.close_time,
    )


async def list_incidents(
    client: Client,
    *,
    status: IncidentStatus | None = None,
    service: str | None = None,
    severity: Severity | None = None,
    limit: int = 100,
) -> list[IncidentSummary]:
    """Newest first. `service` must match SERVICE_PATTERN (no quotes), so it cannot break out of the query."""
    clauses = [INCIDENT_RUNS]
    if status is not None:
        clauses.append(f"{STATUS_ATTR.name} = '{status.value}'")
    if severity is not None:
        clauses.append(f"{SEVERITY_ATTR.name} = '{severity.value}'")
    if service is not None:
        if not re.fullmatch(SERVICE_PATTERN, service):
            raise ValueError(f"service must match {SERVICE_PATTERN}")
        clauses.append(f"{SERVICE_ATTR.name} = '{service}'")
    rows: list[IncidentSummary] = []
    async for execution in client.list_workflows(" AND ".join(clauses), limit=limit):
        rows.append(incident_summary(execution, await execution.memo()))
    return rows
