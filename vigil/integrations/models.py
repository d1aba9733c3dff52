"""Messages between the incident workflow and the integration plugins on `vigil-integrations`, and the
integration state an incident carries (its Slack message, its ticket, its GitHub issue, who acknowledged).

The workflow tells each plugin the incident as an `IncidentBrief` plus the timeline events it has not been told
yet; the plugin answers with its own state, which the workflow keeps and hands back next time. So a plugin holds
nothing between calls, and a retried or re-run activity finds its message or ticket from that state, or from
the remote system itself (Slack message metadata, a Jira label) when the worker died before answering.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from vigil.analysis.models import ChainHop
from vigil.rca.models import EvidenceItem
from vigil.severity import Severity

INCIDENT_LABEL_PREFIX = "vigil-"
"""Jira labels and GitHub issue labels name the incident: `vigil-<incident id>`."""
MAX_CHAIN_HOPS = 8  # hops a brief carries (the workflow cuts there); the console shows the chain whole


class IntegrationKind(StrEnum):
    NOTIFIER = "notifier"
    TICKET = "ticket"
    CODE_HOST = "code_host"


class BriefDecision(BaseModel):
    decision: str
    by: str
    action: str
    reason: str = ""
    at: datetime


class BriefProposal(BaseModel):
    """The remediation awaiting a decision: what buttons decide (`proposal_id`)."""

    proposal_id: int
    action: str
    params: dict[str, str] = Field(default_factory=dict)
    proposed_by: str
    reason: str = ""
    policy_reason: str = ""
    dry_run: bool = False
    escalation_level: int = 0


class IncidentBrief(BaseModel):
    """What a notifier, ticket tracker or code host is told about an incident. Built from the workflow state:
    no secret is in it, and log text appears only as evidence titles (shown, never acted on)."""

    incident_id: str
    workflow_id: str
    title: str
    status: str
    severity: Severity
    service: str | None = None
    category: str | None = None
    confidence: float | None = None
    root_cause: str | None = None
    component: str | None = None
    code_related: bool = False
    chain: list[ChainHop] = Field(
        default_factory=list, description="The path from the alerting service to the component, each hop cited."
    )
    evidence: list[EvidenceItem] = Field(default_factory=list, description="Top evidence the root cause cites.")
    runbooks: list[str] = Field(default_factory=list, description="Runbook URLs or paths, best first.")
    firing: int = 0
    alerts: int = 0
    opened_at: datetime
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    pending: BriefProposal | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    decisions: list[BriefDecision] = Field(default_factory=list, description="The latest decisions, oldest first.")
    pull_requests: list[PullRequestRef] = Field(default_factory=list)


class BriefEvent(BaseModel):
    """A timeline event the plugin has not been told yet (a thread reply, a ticket comment)."""

    seq: int
    at: datetime
    kind: str
    message: str
    actor: str = "vigil"


class NotifierState(BaseModel):
    """The incident's one top-level message."""

    channel: str
    ts: str = Field(description="The message's timestamp: Slack's id of it.")
    permalink: str | None = None
    told_seq: int = Field(default=0, description="Timeline events up to this one are in the thread.")


class TicketState(BaseModel):
    key: str
    url: str
    assignee: str | None = None
    told_seq: int = Field(default=0, description="Timeline events up to this one are commented.")
    done: bool = False
    merged_seen: int = Field(default=0, description="Merged pull requests already moved the ticket for.")


class CommitRef(BaseModel):
    sha: str
    message: str
    author: str | None = None
    url: str | None = None


class CodeHostState(BaseModel):
    repository: str
    number: int
    url: str
    commits: list[CommitRef] = Field(default_factory=list, description="Commits of the suspect deploy.")
    told_seq: int = 0
    closed: bool = False


class PullRequestRef(BaseModel):
    repository: str
    number: int
    title: str
    url: str
    merged_by: str | None = None
    merged_at: datetime | None = None


class NotifyInput(BaseModel):
    brief: IncidentBrief
    events: list[BriefEvent] = Field(default_factory=list)
    state: NotifierState | None = None


class TicketInput(BaseModel):
    brief: IncidentBrief
    events: list[BriefEvent] = Field(default_factory=list)
    postmortem: str | None = Field(
        default=None, description="The postmortem draft (Markdown), added by the activity when the incident closes."
    )
    state: TicketState | None = None


class CodeHostInput(BaseModel):
    brief: IncidentBrief
    events: list[BriefEvent] = Field(default_factory=list)
    postmortem: str | None = Field(
        default=None, description="The postmortem draft (Markdown), added by the activity when the incident closes."
    )
    state: CodeHostState | None = None


class SyncOutcome(StrEnum):
    DONE = "done"
    UNCONFIGURED = "unconfigured"
    NOT_NEEDED = "not_needed"
    """Configured, but this incident does not call for it (a warning without code: no ticket)."""


class NotifyResult(BaseModel):
    outcome: SyncOutcome
    note: str = ""
    state: NotifierState | None = None


class TicketResult(BaseModel):
    outcome: SyncOutcome
    note: str = ""
    state: TicketState | None = None


class CodeHostResult(BaseModel):
    outcome: SyncOutcome
    note: str = ""
    state: CodeHostState | None = None


class IntegrationsState(BaseModel):
    """Carried in `IncidentState.integrations`: shown by the API, the console and the Temporal Web UI."""

    notifier: NotifierState | None = None
    ticket: TicketState | None = None
    code_host: CodeHostState | None = None
    off: dict[str, str] = Field(
        default_factory=dict, description="Integration kind -> why it does not run for this incident."
    )
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    pull_requests: list[PullRequestRef] = Field(default_factory=list)
    seen_deliveries: list[str] = Field(default_factory=list, description="Code-host webhook deliveries taken.")
    synced_seq: int = Field(default=0, description="Timeline events up to this one have been handed to the plugins.")


Actor = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class AcknowledgeRequest(BaseModel):
    """Update argument for `acknowledge`, and the REST body of POST /incidents/{id}/acknowledge."""

    model_config = ConfigDict(extra="forbid")

    by: Actor
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""


class CodeChange(BaseModel):
    """Signal `code_change`: a pull request naming the incident was merged (GitHub webhook)."""

    delivery_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    pull_request: PullRequestRef


IncidentBrief.model_rebuild()
