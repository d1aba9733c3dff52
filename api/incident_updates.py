"""Workflow updates on one incident, for every caller: the REST API, Slack buttons and the console.

Each failure has its own exception, so that a caller answers in its own terms (an HTTP status, an ephemeral
Slack message): `UpdateRefused` carries the workflow's reason (a stale proposal, a closed incident).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from vigil import incident_list
from vigil.incident_list import IncidentLocation
from vigil.models import IncidentState

QUERY_TIMEOUT = timedelta(seconds=5)
M = TypeVar("M", bound=BaseModel)


class UpdateFailed(Exception):
    """Base of the ways an update does not happen; the message says why, for a person."""


class UpdateRefused(UpdateFailed):
    """The workflow refused it (the state does not allow it); it is in the incident's timeline."""


class IncidentNotFound(UpdateFailed):
    pass


class TemporalUnavailable(UpdateFailed):
    pass


async def locate(client: Client, incident_id: str) -> IncidentLocation:
    """Where the incident lives; a group id or a run that has only just started falls back to its own id."""
    try:
        location = await incident_list.locate(client, incident_id)
    except RPCError as exc:
        raise TemporalUnavailable(f"Temporal: {exc.message}") from exc
    return location or IncidentLocation(incident_id=incident_id, workflow_id=incident_id, run_id=None)


async def live_state(client: Client, workflow_id: str, run_id: str | None = None) -> IncidentState | None:
    try:
        state: IncidentState = await client.get_workflow_handle(workflow_id, run_id=run_id).query(
            "state", result_type=IncidentState, rpc_timeout=QUERY_TIMEOUT
        )
    except RPCError:
        return None
    return state


async def run_update(
    client: Client,
    incident_id: str,
    update: str,
    arg: BaseModel,
    result_type: type[M],
    *,
    update_id: str | None = None,
) -> M:
    """Run `update` on the incident's own run chain, never on a later incident of its group. `update_id` makes
    a re-delivered request (a Slack press sent again) the same update: Temporal runs it once."""
    location = await locate(client, incident_id)
    live = await live_state(client, location.workflow_id)
    if live is not None and incident_id not in (live.incident_id, location.workflow_id):
        raise UpdateRefused(f"incident {incident_id} is closed")
    try:
        handle = client.get_workflow_handle(location.workflow_id)
        result: M = await handle.execute_update(update, arg, id=update_id, result_type=result_type)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise UpdateRefused(getattr(cause, "message", None) or str(cause)) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise IncidentNotFound(f"no open incident {incident_id}") from exc
        if exc.status == RPCStatusCode.FAILED_PRECONDITION:
            raise UpdateRefused(f"incident {incident_id} is closed") from exc
        raise TemporalUnavailable(f"Temporal: {exc.message}") from exc
    return result
