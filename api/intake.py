"""Alert intake: normalised alerts grouped by group key and signalled into their incident workflows.

A webhook is answered 202 only after Temporal has durably accepted every group's signal (signal-with-start),
so an accepted alert is never lost, whatever process dies next.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from api.metrics import SIGNALS_SENT
from vigil.alerts import group_labels, incident_id_for
from vigil.models import Alert, AlertBatch, IncidentInput, IncidentPolicy, IncidentRef, IncidentStatus
from vigil.settings import INCIDENTS_TASK_QUEUE, Settings
from vigil.temporal import SERVICE_ATTR, SEVERITY_ATTR, STATUS_ATTR
from workflows.incident import IncidentWorkflow


def incident_policy(settings: Settings) -> IncidentPolicy:
    return IncidentPolicy(
        debounce_seconds=settings.debounce_seconds,
        quiet_period_seconds=settings.quiet_period_seconds,
        escalation_seconds=settings.escalation_seconds,
        close_after_seconds=settings.close_after_seconds,
        llm_timeout_seconds=settings.llm_timeout_seconds,
        diagnosis_wait_seconds=settings.diagnosis_wait_seconds,
    )


def _static_details(first: Alert, labels: dict[str, str]) -> str:
    label_lines = "\n".join(f"- `{key}` = `{value}`" for key, value in sorted(labels.items()))
    return f"**{first.summary}**\n\nsource: {first.source.value}, severity: {first.severity.value}\n\n{label_lines}"


async def signal_group(client: Client, settings: Settings, key: str, alerts: list[Alert], delivery_id: str) -> None:
    """Signal-with-start of the group's incident: starts it when no run is open, else signals the open one."""
    first = alerts[0]
    incident_id = incident_id_for(key)
    labels = group_labels(first.labels, settings.group_by)
    await client.start_workflow(
        IncidentWorkflow.run,
        IncidentInput(incident_id=incident_id, group_key=key, group_labels=labels, policy=incident_policy(settings)),
        id=incident_id,
        task_queue=INCIDENTS_TASK_QUEUE,
        start_signal="alerts",
        start_signal_args=[AlertBatch(delivery_id=delivery_id, alerts=alerts)],
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(STATUS_ATTR, IncidentStatus.OPEN.value),
                SearchAttributePair(SEVERITY_ATTR, first.severity.value),
                SearchAttributePair(SERVICE_ATTR, first.service or ""),
            ]
        ),
        memo={"title": first.summary, "group_key": key},
        static_summary=f"{first.labels.get('alertname', first.summary)} · {first.service or '-'}"[:200],
        static_details=_static_details(first, labels),
    )


MAX_ALERTS_PER_SIGNAL = 500
"""Keeps each signal payload far below Temporal's 2 MB payload limit."""


@dataclass
class _Pending:
    alerts: list[Alert] = field(default_factory=list)
    sent: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupSignaller:
    """Group commit for alert signals: per group key at most one signal-with-start is in flight; alerts that
    arrive meanwhile ride together on the next one. Under a storm this cuts Temporal round-trips and workflow
    tasks by the concurrency per group; when idle it adds no delay. Each caller awaits the signal that carried
    its alerts, so an answer still means durably accepted."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._queues: dict[str, deque[_Pending]] = defaultdict(deque)
        self._senders: dict[str, asyncio.Task[None]] = {}

    async def submit(self, key: str, alerts: list[Alert]) -> IncidentRef:
        queue = self._queues[key]
        if not queue or len(queue[-1].alerts) >= MAX_ALERTS_PER_SIGNAL:
            queue.append(_Pending())
        pending = queue[-1]
        pending.alerts.extend(alerts)
        if key not in self._senders:
            self._senders[key] = asyncio.create_task(self._send(key))
        await asyncio.shield(pending.sent)
        return IncidentRef(incident_id=incident_id_for(key), group_key=key, alerts=len(alerts))

    async def _send(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                pending = queue.popleft()
                try:
                    await signal_group(self._client, self._settings, key, pending.alerts, uuid.uuid4().hex)
                except Exception as exc:
                    pending.sent.set_exception(exc)
                else:
                    pending.sent.set_result(None)
                    SIGNALS_SENT.inc()
        finally:
            del self._senders[key]
            if not queue:
                del self._queues[key]

    async def deliver(self, alerts: list[Alert]) -> list[IncidentRef]:
        groups: dict[str, list[Alert]] = defaultdict(list)
        for alert in alerts:
            groups[alert.group_key].append(alert)
        return list(await asyncio.gather(*(self.submit(key, group) for key, group in groups.items())))
