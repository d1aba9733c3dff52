"""Incident lists from Temporal visibility: search attributes and memo only, so no worker is needed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from temporalio.client import Client, WorkflowExecution

from vigil.models import IncidentStatus, IncidentSummary, Severity
from vigil.temporal import CATEGORY_ATTR, SERVICE_ATTR, SEVERITY_ATTR, STATUS_ATTR

SERVICE_PATTERN = r"^[A-Za-z0-9_.:/-]{1,200}$"


def incident_summary(execution: WorkflowExecution, memo: Mapping[str, Any]) -> IncidentSummary:
    attrs = execution.typed_search_attributes
    status_value = attrs.get(STATUS_ATTR)
    severity_value = attrs.get(SEVERITY_ATTR)
    return IncidentSummary(
        incident_id=execution.id,
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
    clauses = ["WorkflowType = 'IncidentWorkflow'"]
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
