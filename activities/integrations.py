"""Integration activities on `vigil-integrations`: the incident's Slack message, ticket and GitHub issue.

Each asks its plugin to bring the remote system up to date with the incident and returns the plugin's new state
for the workflow to keep. An unconfigured plugin answers `unconfigured` (the workflow notes it and stops
asking); an outage is retried by Temporal with backoff, after the service's Retry-After when it gave one; a
refusal is final for this attempt and noted in the timeline. When the incident closes, the ticket and the
issue get the postmortem draft, built here from the store (the whole timeline, not the workflow's recent part).
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from vigil.integrations.base import IntegrationConfigError, IntegrationRejected, IntegrationUnavailable
from vigil.integrations.models import (
    CodeHostInput,
    CodeHostResult,
    IncidentBrief,
    IntegrationKind,
    NotifyInput,
    NotifyResult,
    SyncOutcome,
    TicketInput,
    TicketResult,
)
from vigil.integrations.registry import UNCONFIGURED, Integrations
from vigil.integrations.text import is_closed
from vigil.models import IncidentDetail
from vigil.postmortem import postmortem_markdown
from vigil.store.database import Store

NOTIFICATIONS_METRIC = "vigil_notifications_total"
T = TypeVar("T")


class IntegrationActivities:
    def __init__(self, integrations: Integrations, store: Store) -> None:
        self._integrations = integrations
        self._store = store

    async def _postmortem(self, brief: IncidentBrief, told: bool) -> str | None:
        """The postmortem draft for the ticket or issue, once the incident is closed and it has not been told."""
        if told or not is_closed(brief):
            return None
        record = await self._store.get_incident(brief.incident_id)
        if record is None:
            return None
        detail = IncidentDetail(
            incident_id=brief.incident_id,
            live=False,
            state=None,
            record=record,
            timeline=await self._store.timeline(brief.incident_id),
            diagnosis=await self._store.diagnosis(brief.incident_id),
        )
        return postmortem_markdown(detail, await self._store.alerts(brief.incident_id))

    @activity.defn(name="notify_incident")
    async def notify_incident(self, data: NotifyInput) -> NotifyResult:
        notifier = self._integrations.notifier
        if notifier is None:
            _count(IntegrationKind.NOTIFIER, SyncOutcome.UNCONFIGURED.value)
            return NotifyResult(outcome=SyncOutcome.UNCONFIGURED, note=UNCONFIGURED[IntegrationKind.NOTIFIER])
        state = await _guarded(IntegrationKind.NOTIFIER, notifier.name, notifier.sync(data))
        return NotifyResult(outcome=SyncOutcome.DONE, state=state)

    @activity.defn(name="sync_ticket")
    async def sync_ticket(self, data: TicketInput) -> TicketResult:
        tracker = self._integrations.tracker
        if tracker is None:
            _count(IntegrationKind.TICKET, SyncOutcome.UNCONFIGURED.value)
            return TicketResult(outcome=SyncOutcome.UNCONFIGURED, note=UNCONFIGURED[IntegrationKind.TICKET])
        if data.state is not None:
            data = data.model_copy(update={"postmortem": await self._postmortem(data.brief, data.state.done)})
        state = await _guarded(IntegrationKind.TICKET, tracker.name, tracker.sync(data))
        if state is None:
            return TicketResult(outcome=SyncOutcome.NOT_NEEDED, note="no ticket needed for this incident")
        return TicketResult(outcome=SyncOutcome.DONE, state=state)

    @activity.defn(name="sync_code_host")
    async def sync_code_host(self, data: CodeHostInput) -> CodeHostResult:
        code_host = self._integrations.code_host
        if code_host is None:
            _count(IntegrationKind.CODE_HOST, SyncOutcome.UNCONFIGURED.value)
            return CodeHostResult(outcome=SyncOutcome.UNCONFIGURED, note=UNCONFIGURED[IntegrationKind.CODE_HOST])
        if data.state is not None:
            data = data.model_copy(update={"postmortem": await self._postmortem(data.brief, data.state.closed)})
        state = await _guarded(IntegrationKind.CODE_HOST, code_host.name, code_host.sync(data))
        if state is None:
            return CodeHostResult(outcome=SyncOutcome.NOT_NEEDED, note="not code-related, or no repository known")
        return CodeHostResult(outcome=SyncOutcome.DONE, state=state)


async def _guarded(kind: IntegrationKind, name: str, call: Awaitable[T]) -> T:
    """The plugin's errors as Temporal sees them: an outage retried (after Retry-After), a refusal final."""
    try:
        result = await call
    except IntegrationUnavailable as exc:
        _count(kind, "unavailable")
        delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
        raise ApplicationError(f"{name}: {exc}", type="IntegrationUnavailable", next_retry_delay=delay) from None
    except (IntegrationRejected, IntegrationConfigError) as exc:
        _count(kind, "rejected")
        raise ApplicationError(f"{name}: {exc}", type="IntegrationRejected", non_retryable=True) from None
    _count(kind, SyncOutcome.DONE.value if result is not None else SyncOutcome.NOT_NEEDED.value)
    return result


def _count(kind: IntegrationKind, outcome: str) -> None:
    counter = activity.metric_meter().create_counter(
        NOTIFICATIONS_METRIC, "Integration syncs (Slack message, ticket, GitHub issue) by kind and outcome."
    )
    counter.add(1, {"kind": kind.value, "outcome": outcome})
