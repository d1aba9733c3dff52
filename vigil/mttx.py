"""MTTx of one incident: times to detect, acknowledge, diagnose, mitigate and resolve, from its detail.

Detection and resolution are measured from the start of impact (the earliest alert's `starts_at`): they are what
the users of the service lived through. Acknowledgement, diagnosis and mitigation are measured from the opening of
the incident: they are how fast the responders (people and Vigil) answered once it existed. A figure is `None`
when its moment did not happen (or is not known), and never negative: a sender's clock ahead of ours counts as 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, Field
from temporalio.common import MetricMeter

from vigil.models import AlertRecord, IncidentDetail, TimelineEvent, TimelineKind

SYSTEM_ACTOR = "vigil"
HUMAN_ACTION_KINDS = frozenset(
    {TimelineKind.REMEDIATION_PROPOSED, TimelineKind.APPROVED, TimelineKind.REJECTED, TimelineKind.RESOLVED}
)
ACKNOWLEDGED = "acknowledged"
"""An explicit acknowledgement event kind, counted whoever wrote it, once the timeline has one."""
MITIGATION_KINDS = frozenset({TimelineKind.APPROVED.value, "remediation_run"})
"""An approval, or a remediation executor's run event once executors record one."""

BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
"""From a second to a week."""


class IncidentTimings(BaseModel):
    """GET /api/v1/incidents/{id}/timings: the moments of an incident and the MTTx figures in seconds."""

    incident_id: str
    impact_started_at: datetime | None = Field(description="The earliest alert's start; null when no alert is known.")
    opened_at: datetime
    acknowledged_at: datetime | None = Field(description="The first human action, or an acknowledgement.")
    diagnosed_at: datetime | None = Field(description="The first diagnosis.")
    mitigated_at: datetime | None = Field(description="The first approved remediation (or remediation run).")
    resolved_at: datetime | None
    time_to_detect_seconds: float | None = Field(description="Impact start to incident opened.")
    time_to_acknowledge_seconds: float | None = Field(description="Incident opened to acknowledged.")
    time_to_diagnose_seconds: float | None = Field(description="Incident opened to diagnosed.")
    time_to_mitigate_seconds: float | None = Field(description="Incident opened to mitigated.")
    time_to_resolve_seconds: float | None = Field(
        description="Impact start (incident opened when no alert is known) to resolved."
    )


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def _first_at(events: Iterable[TimelineEvent], kinds: Iterable[str], *, human: bool = False) -> datetime | None:
    """When the first event of one of `kinds` happened (by a person when `human`); `events` in time order."""
    wanted = set(kinds)
    for event in events:
        if event.kind.value in wanted and (not human or event.actor != SYSTEM_ACTOR):
            return event.at
    return None


def incident_alerts(detail: IncidentDetail, alerts: Sequence[AlertRecord] | None = None) -> list[AlertRecord]:
    """The incident's alerts: those given (the store's, when no worker answered), else the live state's."""
    if alerts is not None:
        return list(alerts)
    return list(detail.state.alerts.values()) if detail.state is not None else []


def mttx(detail: IncidentDetail, alerts: Sequence[AlertRecord] | None = None) -> IncidentTimings:
    """The incident's timings from its live state or stored record, its timeline and its alerts (`alerts` when
    the caller read them from the store because no worker answered)."""
    known = detail.state or detail.record
    if known is None:
        raise ValueError(f"incident {detail.incident_id} has neither state nor record")
    events = sorted(detail.timeline, key=lambda event: (event.at, event.seq))
    starts = [alert.starts_at for alert in incident_alerts(detail, alerts)]
    started = min(starts) if starts else None
    human = _first_at(events, (kind.value for kind in HUMAN_ACTION_KINDS), human=True)
    acknowledged_event = _first_at(events, [ACKNOWLEDGED])
    acknowledged = min((at for at in (human, acknowledged_event) if at is not None), default=None)
    diagnosed = _first_at(events, [TimelineKind.DIAGNOSED.value])
    mitigated = _first_at(events, MITIGATION_KINDS)
    opened = known.opened_at
    return IncidentTimings(
        incident_id=detail.incident_id,
        impact_started_at=started,
        opened_at=opened,
        acknowledged_at=acknowledged,
        diagnosed_at=diagnosed,
        mitigated_at=mitigated,
        resolved_at=known.resolved_at,
        time_to_detect_seconds=_seconds(started, opened),
        time_to_acknowledge_seconds=_seconds(opened, acknowledged),
        time_to_diagnose_seconds=_seconds(opened, diagnosed),
        time_to_mitigate_seconds=_seconds(opened, mitigated),
        time_to_resolve_seconds=_seconds(started or opened, known.resolved_at),
    )


STAGES: dict[str, str] = {
    "detect": "impact start to incident opened",
    "acknowledge": "incident opened to the first human action",
    "diagnose": "incident opened to the first diagnosis",
    "mitigate": "incident opened to the first approved remediation",
    "resolve": "impact start to resolution",
}


def histogram_name(stage: str) -> str:
    return f"vigil_incident_time_to_{stage}_seconds"


HISTOGRAM_BUCKETS: dict[str, list[float]] = {histogram_name(stage): [float(b) for b in BUCKETS] for stage in STAGES}
"""Bucket overrides for the worker's Prometheus exporter (its defaults are for milliseconds, not days)."""


def observe_mttx(timings: IncidentTimings, meter: MetricMeter) -> None:
    """Count one incident's figures into the `vigil_incident_time_to_*_seconds` histograms of the worker's
    Prometheus endpoint (through Temporal's metric meter, at the incident's close); a figure that is `None` is
    not observed."""
    for stage, what in STAGES.items():
        value: float | None = getattr(timings, f"time_to_{stage}_seconds")
        if value is not None:
            meter.create_histogram_float(histogram_name(stage), f"Incidents: {what}.", unit="s").record(value)
