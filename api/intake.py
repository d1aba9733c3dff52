"""Alert intake: normalised alerts grouped by group key and signalled into their incident workflows.

A webhook is answered 202 only after Temporal has durably accepted every group's signal (signal-with-start),
so an accepted alert is never lost, whatever process dies next.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import defaultdict, deque
from dataclasses import dataclass, field

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from api.metrics import SIGNALS_SENT
from vigil.alerts import alert_size, group_labels, incident_id_for
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
        notify_drain_seconds=settings.notify_drain_seconds,
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
MAX_SIGNAL_BYTES = 1_000_000
"""With MAX_ALERTS_PER_SIGNAL, keeps each signal payload below half of Temporal's 2 MB payload limit."""


def delivery_id(key: str, alerts: list[Alert]) -> str:
    """Identity of a notification from its content, so a sender's retry of it is recognised and dropped: the
    group, and each alert's fingerprint, status and own timestamps (never the time it arrived)."""
    parts = sorted(
        (
            alert.fingerprint,
            alert.status.value,
            alert.starts_at.isoformat(),
            alert.ends_at.isoformat() if alert.ends_at else "",
        )
        for alert in alerts
    )
    canonical = json.dumps([key, parts], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass
class _Pending:
    alerts: list[Alert] = field(default_factory=list)
    size: int = 0
    sent: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def fits(self, alerts: list[Alert], size: int) -> bool:
        return len(self.alerts) + len(alerts) <= MAX_ALERTS_PER_SIGNAL and self.size + size <= MAX_SIGNAL_BYTES


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
        """Queue the alerts of one group and wait until a signal carrying them was accepted. A large payload is
        cut into chunks that each fit one signal."""
        queue = self._queues[key]
        waits: list[asyncio.Future[None]] = []
        for chunk, size in _chunks(alerts):
            if not queue or not queue[-1].fits(chunk, size):
                queue.append(_Pending())
            pending = queue[-1]
            pending.alerts.extend(chunk)
            pending.size += size
            if not waits or waits[-1] is not pending.sent:
                waits.append(pending.sent)
        if key not in self._senders:
            self._senders[key] = asyncio.create_task(self._send(key))
        for sent in waits:
            await asyncio.shield(sent)
        return IncidentRef(incident_id=incident_id_for(key), group_key=key, alerts=len(alerts))

    async def _send(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                pending = queue.popleft()
                try:
                    await signal_group(
                        self._client, self._settings, key, pending.alerts, delivery_id(key, pending.alerts)
                    )
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


def _chunks(alerts: list[Alert]) -> list[tuple[list[Alert], int]]:
    """Consecutive runs of alerts that each fit one signal by count and by estimated size, with their size."""
    chunks: list[tuple[list[Alert], int]] = []
    for alert in alerts:
        alert_bytes = alert_size(alert)
        if chunks:
            current, size = chunks[-1]
            if len(current) < MAX_ALERTS_PER_SIGNAL and size + alert_bytes <= MAX_SIGNAL_BYTES:
                current.append(alert)
                chunks[-1] = (current, size + alert_bytes)
                continue
        chunks.append(([alert], alert_bytes))
    return chunks
