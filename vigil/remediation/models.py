"""Messages between the incident workflow and the remediation activities on the integrations worker.

The workflow never reads action files: it names an action and its parameters, and the activities look the action
up in the catalogue loaded at worker start, validate the parameters against its schema and apply the policy
again. Parameters the workflow does not give are bound from the alert labels and the diagnosed component."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from vigil.severity import Severity

Mode = Literal["auto", "approval", "never"]
MAX_OUTPUT_CHARS = 4000


class PlanInput(BaseModel):
    """What the workflow knows after triage; candidates are catalogue action names, best first."""

    incident_id: str
    labels: dict[str, str] = Field(description="The group's labels over the first alert's labels.")
    severity: Severity
    component: str | None = None
    confidence: float = Field(ge=0, le=1)
    candidates: list[str] = Field(default_factory=list, description="From the diagnosis's recommended actions.")
    exclude: list[str] = Field(default_factory=list, description="Actions already tried in this incident.")


class ProposedAction(BaseModel):
    action: str
    description: str
    params: dict[str, str]
    mode: Mode
    rule: str | None = Field(description="The policy rule that decided; None when no rule matched.")
    policy_reason: str
    dry_run: bool


class RemediationPlan(BaseModel):
    chosen: ProposedAction | None
    skipped: list[str] = Field(default_factory=list, description="'action: why' for each candidate passed over.")


class RunActionInput(BaseModel):
    incident_id: str
    proposal_id: int = Field(description="Sequence number of the proposal in the incident's timeline.")
    action: str
    params: dict[str, str] = Field(default_factory=dict, description="Validated again; missing ones are bound.")
    labels: dict[str, str]
    severity: Severity
    component: str | None = None
    confidence: float = Field(ge=0, le=1)
    rollback: bool = Field(default=False, description="This runs the rollback of the proposal's action.")

    @property
    def key(self) -> str:
        """The idempotency key: one run per incident, proposal (and rollback)."""
        return f"{self.incident_id}/{self.proposal_id}" + ("/rollback" if self.rollback else "")


class ActionOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    """An earlier attempt started a non-idempotent action and never reported: not run again."""
    DRY_RUN = "dry_run"
    REFUSED = "refused"
    """Not in the catalogue's terms: unknown parameter, value outside the schema, or the policy says never."""
    NOT_IN_CATALOGUE = "not_in_catalogue"


class VerificationSpec(BaseModel):
    """The action's verification with its parameters substituted: a PromQL condition that must hold for
    `for_seconds`, and/or the incident's alerts resolved, both within `within_seconds` of the action."""

    promql: str | None = None
    condition: str | None = None
    for_seconds: float = 0
    within_seconds: float


class ActionResult(BaseModel):
    action: str
    key: str
    outcome: ActionOutcome
    output: str = Field(default="", max_length=MAX_OUTPUT_CHARS, description="Secrets redacted.")
    params: dict[str, str] = Field(default_factory=dict, description="The parameters it ran with.")
    dry_run: bool = False
    idempotent: bool = False
    executed: bool = Field(description="This attempt ran the executor (False: an earlier attempt's result).")
    started_at: datetime | None = None
    finished_at: datetime | None = None
    verification: VerificationSpec | None = None
    rollback: str | None = Field(default=None, description="The catalogue action that undoes this one.")


class MeasureInput(BaseModel):
    promql: str
    condition: str


class Measurement(BaseModel):
    value: float | None = Field(description="The query's value; None when it returned nothing or failed.")
    holds: bool
    detail: str = ""


class VerificationOutcome(StrEnum):
    RECOVERED = "recovered"
    NOT_RECOVERED = "not_recovered"
    SKIPPED = "skipped"
    """Nothing to verify: a dry run, a manual action, or the incident was resolved by hand meanwhile."""


class ActionRun(BaseModel):
    """One approved proposal as the incident workflow carries it out: the run, then its verification. Kept in the
    workflow state, so that a continue-as-new resumes a verification instead of running the action again."""

    proposal_id: int
    action: str
    params: dict[str, str] = Field(default_factory=dict)
    approved_by: str
    approved_at: datetime
    result: ActionResult | None = None
    rollback_result: ActionResult | None = None
    verify_until: datetime | None = None
    verification: VerificationOutcome | None = None
    verification_detail: str = ""
