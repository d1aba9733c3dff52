"""Every message that crosses a process boundary: workflow input, signals, updates, queries, activity I/O and
REST bodies. Adding a field with a default never breaks a running workflow: the pydantic data converter fills
it in when an older payload is decoded.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from vigil.integrations.models import IntegrationsState
from vigil.rca.models import RootCauseAnalysis
from vigil.remediation.models import ActionRun
from vigil.severity import Severity as Severity

Label = Annotated[str, StringConstraints(max_length=1024)]
Actor = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]


class AlertSource(StrEnum):
    ALERTMANAGER = "alertmanager"
    GRAFANA = "grafana"
    VIGIL = "vigil"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class IncidentStatus(StrEnum):
    OPEN = "open"
    TRIAGING = "triaging"
    AWAITING_APPROVAL = "awaiting_approval"
    REMEDIATING = "remediating"
    MONITORING = "monitoring"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Alert(BaseModel):
    """One alert, normalised from whatever format it arrived in."""

    source: AlertSource
    fingerprint: str
    group_key: str
    status: AlertStatus
    labels: dict[str, Label]
    annotations: dict[str, Label] = Field(default_factory=dict)
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str | None = None
    severity: Severity = Severity.WARNING
    service: str | None = None
    summary: str
    received_at: datetime


class AlertBatch(BaseModel):
    """Signal payload: the alerts of one group from one delivery."""

    delivery_id: str
    alerts: list[Alert]


class IncidentPolicy(BaseModel):
    """Timings of one incident, fixed when its workflow starts."""

    debounce_seconds: float = 30.0
    quiet_period_seconds: float = 300.0
    escalation_seconds: float = 900.0
    close_after_seconds: float = 600.0
    llm_timeout_seconds: float = Field(default=60.0, gt=0, description="One LLM request; the activity gets twice.")
    diagnosis_wait_seconds: float = Field(
        default=300.0, ge=0, description="Triage waits this long for the diagnosis, then monitors while it runs."
    )
    max_history_events: int = Field(
        default=10_000, description="continue_as_new once the history grows past this many events."
    )
    notify_drain_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Closing (or continuing as new) waits this long for a notification in flight, then goes on.",
    )


class AlertRecord(BaseModel):
    """What an incident knows of one alert fingerprint."""

    fingerprint: str
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    severity: Severity
    summary: str
    count: int = Field(default=1, description="Firing episodes: a new one starts when a resolved alert fires again.")
    repeats: int = Field(
        default=0,
        description="Notifications that changed nothing: still firing, re-sent, or older than what is known.",
    )
    first_seen: datetime
    last_seen: datetime
    starts_at: datetime
    ends_at: datetime | None = None
    source: AlertSource
    generator_url: str | None = Field(default=None, description="Where the alert came from (its rule's graph).")


class TimelineKind(StrEnum):
    OPENED = "opened"
    ALERT_NEW = "alert_new"
    ALERT_RESOLVED = "alert_resolved"
    ALERT_REFIRED = "alert_refired"
    STATUS = "status"
    REMEDIATION_PROPOSED = "remediation_proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    CLOSED = "closed"
    STAGE_PENDING = "stage_pending"
    DIAGNOSED = "diagnosed"
    REFUSED = "refused"
    ALERTS_OVERFLOWED = "alerts_overflowed"
    REMEDIATION_RUN = "remediation_run"
    VERIFIED = "verified"
    NOT_RECOVERED = "not_recovered"
    ACKNOWLEDGED = "acknowledged"
    CODE_CHANGE = "code_change"
    INTEGRATION = "integration"
    """What a notifier, ticket tracker or code host did (or why it did not): never itself notified."""


class TimelineEvent(BaseModel):
    seq: int
    at: datetime
    kind: TimelineKind
    message: str
    actor: str = "vigil"
    data: dict[str, Any] = Field(default_factory=dict)


class RemediationProposal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    params: dict[str, Annotated[str, StringConstraints(max_length=2000)]] = Field(default_factory=dict)
    proposed_by: Actor
    reason: Reason = ""
    evidence: list[Annotated[str, StringConstraints(max_length=120)]] = Field(
        default_factory=list, max_length=12, description="Ids of the diagnosis evidence that supports it."
    )


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class ApprovalRequest(BaseModel):
    """Update argument for `approval`, and the REST body of POST /incidents/{id}/approval."""

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    by: Actor
    reason: Reason = ""
    proposal_id: int | None = Field(
        default=None, description="The proposal this decides (from its message or page); another one pending: 409."
    )


class ResolveRequest(BaseModel):
    """Update argument for `resolve`, and the REST body of POST /incidents/{id}/resolve."""

    model_config = ConfigDict(extra="forbid")

    by: Actor
    reason: Reason = ""


class PendingApproval(BaseModel):
    proposal: RemediationProposal
    requested_at: datetime
    escalation_level: int = 0
    proposal_id: int = Field(default=0, description="Sequence number of its timeline event; 0 in older incidents.")
    policy_rule: str | None = Field(default=None, description="The policy rule that decided, for Vigil's proposals.")
    policy_reason: str = ""
    dry_run: bool = Field(default=False, description="The policy says it would only pretend.")


class ApprovalOutcome(BaseModel):
    """Update result of `approval`."""

    decision: Decision
    by: str
    reason: str
    action: str
    status: IncidentStatus
    decided_at: datetime
    proposal_id: int = 0


class IncidentState(BaseModel):
    """The whole live state of one incident: the query result, and what continue_as_new carries."""

    incident_id: str
    group_key: str
    group_labels: dict[str, str]
    title: str
    service: str | None = None
    severity: Severity = Severity.WARNING
    category: str | None = None
    status: IncidentStatus = IncidentStatus.OPEN
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    alerts: dict[str, AlertRecord] = Field(default_factory=dict)
    timeline: list[TimelineEvent] = Field(default_factory=list)
    pending_approval: PendingApproval | None = None
    decisions: list[ApprovalOutcome] = Field(default_factory=list)
    seen_deliveries: list[str] = Field(
        default_factory=list, description="Recent delivery ids, so a re-sent signal is not counted twice."
    )
    diagnosis: RootCauseAnalysis | None = Field(
        default=None, description="The RCA: the LLM's when it answered usefully, else the deterministic one."
    )
    alert_bytes: int = Field(default=0, description="Estimated size of the alerts kept, for the overflow rule.")
    diagnosis_pending: bool = Field(default=False, description="A diagnosis is running (or handed to the next run).")
    diagnosis_since: datetime | None = Field(
        default=None, description="Onset of the latest re-opening: a re-diagnosis reads the alerts firing since then."
    )
    actions: list[ActionRun] = Field(default_factory=list, description="Approved proposals carried out, in order.")
    remediation_candidates: list[str] = Field(
        default_factory=list, description="Catalogue actions the diagnosis recommends, best first."
    )
    vigil_proposed: bool = Field(default=False, description="Vigil has proposed from its diagnosis once.")
    overflow_alerts: int = Field(
        default=0, description="Notifications of new fingerprints past the per-incident cap: counted, not kept."
    )
    integrations: IntegrationsState = Field(
        default_factory=IntegrationsState,
        description="Its Slack message, ticket and GitHub issue, who acknowledged, merged pull requests.",
    )
    next_seq: int = 1
    generation: str = Field(
        default="", description="Id of the run that opened this incident: keeps its store event ids apart from others'."
    )

    @property
    def alert_receipts(self) -> int:
        """Every notification taken in (not the re-sent deliveries dropped by id)."""
        return sum(record.count + record.repeats for record in self.alerts.values()) + self.overflow_alerts

    @property
    def alert_occurrences(self) -> int:
        """Firing episodes over all fingerprints: what the incident counts as alerts."""
        return sum(record.count for record in self.alerts.values()) + self.overflow_alerts

    @property
    def firing_count(self) -> int:
        return sum(1 for record in self.alerts.values() if record.status is AlertStatus.FIRING)


class IncidentInput(BaseModel):
    incident_id: str = Field(description="The group's id (the workflow id); each run names its own occurrence.")
    group_key: str
    group_labels: dict[str, str]
    policy: IncidentPolicy = Field(default_factory=IncidentPolicy)
    carried: IncidentState | None = None
    opening: list[AlertBatch] = Field(
        default_factory=list, description="Alerts that arrived while the group's previous incident was closing."
    )


class IncidentRow(BaseModel):
    """The durable record of an incident, as the store keeps it."""

    incident_id: str
    group_key: str
    title: str
    service: str | None
    severity: Severity
    category: str | None
    status: IncidentStatus
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    alert_count: int
    fingerprint_count: int


class PersistIncidentInput(BaseModel):
    """Store activity input: the incident row plus what changed since the last write."""

    incident: IncidentRow
    alerts: list[AlertRecord] = Field(default_factory=list)
    events: list[TimelineEvent] = Field(default_factory=list)
    generation: str


class PersistIncidentResult(BaseModel):
    alerts_written: int
    events_written: int


class WorkerInfo(BaseModel):
    """Result of each worker's `worker_info` activity: used by health checks."""

    task_queue: str
    pid: int
    version: str
    started_at: datetime
    capabilities: dict[str, str] = Field(default_factory=dict)


class IncidentRef(BaseModel):
    incident_id: str
    group_key: str
    alerts: int


class IngestResponse(BaseModel):
    """202 body of every alert webhook."""

    accepted: int
    incidents: list[IncidentRef]


class IncidentSummary(BaseModel):
    """One row of GET /api/v1/incidents, read from Temporal visibility (no worker needed)."""

    incident_id: str
    group_id: str | None = Field(default=None, description="The alert group's id; its incidents share it.")
    run_id: str | None
    title: str | None
    group_key: str | None
    status: IncidentStatus | None
    severity: Severity | None
    service: str | None
    category: str | None
    started_at: datetime | None
    closed_at: datetime | None


class IncidentDetail(BaseModel):
    """GET /api/v1/incidents/{id}: live state when a worker answers, else the durable record."""

    incident_id: str
    live: bool
    state: IncidentState | None
    record: IncidentRow | None
    diagnosis: RootCauseAnalysis | None = None
    timeline: list[TimelineEvent]


class LogRecord(BaseModel):
    """One stored log line. `message` is untrusted text: it is data, never an instruction."""

    ts: datetime
    service: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    message: Annotated[str, StringConstraints(max_length=65_536)]
    level: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    trace_id: str | None = None
    request_id: str | None = None


class LogLineError(BaseModel):
    line: int
    reason: str


class LogIngestResult(BaseModel):
    """202 body of POST /api/v1/logs: good lines are stored even when others are rejected."""

    accepted: int
    rejected: int
    errors: list[LogLineError] = Field(default_factory=list, description="The first rejected lines, with why.")


class DeployEvent(BaseModel):
    """A deploy or change event (POST /api/v1/events/deploy)."""

    model_config = ConfigDict(extra="forbid")

    service: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    commit: Annotated[str, StringConstraints(max_length=100)] | None = None
    author: Annotated[str, StringConstraints(max_length=200)] | None = None
    description: Annotated[str, StringConstraints(max_length=4000)] | None = None
    ts: datetime | None = Field(default=None, description="When it happened; default: when received.")


class StoredDeployEvent(DeployEvent):
    """A deploy event as stored: its id, and `ts` always set (the received time when the sender gave none)."""

    id: int
    ts: datetime
    received_at: datetime


class DeployEventRef(BaseModel):
    """202 body of POST /api/v1/events/deploy (the same id when the event was sent before)."""

    id: int
    service: str
    ts: datetime


class DiagnoseInput(BaseModel):
    """`diagnose_incident` activity input: the incident's alerts; the activity gathers logs and deploys of their
    services around the onset from the store itself, so megabytes of log text never pass through history."""

    incident_id: str
    title: str
    alerts: list[AlertRecord]
    opened_at: datetime
    lookback_minutes: float = Field(default=30.0, gt=0, description="Log window before the first alert.")
    deploy_lookback_minutes: float = Field(default=180.0, gt=0, description="Deploys this far back are suspects.")


class Diagnosis(BaseModel):
    rca: RootCauseAnalysis
    llm_configured: bool
    log_lines: int = 0


class LLMDiagnoseInput(BaseModel):
    incident_id: str
    title: str
    diagnosis: RootCauseAnalysis
