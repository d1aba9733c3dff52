"""`IncidentWorkflow`: one durable workflow per alert group owns the incident from first alert to close.

Stages, in order (DESIGN.md, "The incident workflow"):
open -> debounce (collect the alert storm) -> triage -> monitoring, with approval and remediation branching off
monitoring and a reopen window after resolution. Analysis, retrieval, diagnosis, notification and automated
remediation belong to later work; they plug in at `_triage` and `_remediate`, and until then the workflow does
not pretend to run them. Triage diagnoses on the ml worker: the deterministic RCA first, then the LLM's when one
is configured; a closed incident with a diagnosis is indexed into the knowledge base.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from vigil.knowledge.models import ResolvedIncident
    from vigil.models import (
        AlertBatch,
        AlertRecord,
        AlertStatus,
        ApprovalOutcome,
        ApprovalRequest,
        Decision,
        DiagnoseInput,
        Diagnosis,
        IncidentInput,
        IncidentRow,
        IncidentState,
        IncidentStatus,
        LLMDiagnoseInput,
        PendingApproval,
        PersistIncidentInput,
        RemediationProposal,
        ResolveRequest,
        TimelineEvent,
        TimelineKind,
    )
    from vigil.rca.models import RootCauseAnalysis
    from vigil.settings import ML_TASK_QUEUE
    from vigil.temporal import CATEGORY_ATTR, SERVICE_ATTR, SEVERITY_ATTR, STATUS_ATTR

RECENT_TIMELINE = 200
"""Timeline events kept in workflow state; the store keeps them all."""
RECENT_DELIVERIES = 1000
"""Delivery ids remembered to drop a re-sent signal."""
PERSIST_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
FINAL_STATUSES = (IncidentStatus.RESOLVED, IncidentStatus.CLOSED)
DIAGNOSIS_PATCH = "diagnosis-v1"
INDEX_ON_CLOSE_PATCH = "index-resolved-incident-v1"
MAX_DIAGNOSIS_ALERTS = 200
DIAGNOSE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3)
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_attempts=3, non_retryable_error_types=["LLMRejected"]
)


@workflow.defn
class IncidentWorkflow:
    @workflow.init
    def __init__(self, data: IncidentInput) -> None:
        self._policy = data.policy
        if data.carried is not None:
            self._state = data.carried
        else:
            now = workflow.now()
            self._state = IncidentState(
                incident_id=data.incident_id,
                group_key=data.group_key,
                group_labels=data.group_labels,
                title=data.group_labels.get("alertname", data.group_key),
                service=data.group_labels.get("service"),
                opened_at=now,
                updated_at=now,
                generation=workflow.info().first_execution_run_id,
            )
        self._unsaved_alerts: set[str] = set()
        self._unsaved_events: list[TimelineEvent] = []
        self._row_dirty = True
        self._stop_persisting = False
        self._diagnosis: asyncio.Task[None] | None = None
        if data.carried is None:  # here, not in run: a signal-with-start's signal is handled before run starts
            self._record(TimelineKind.OPENED, f"Incident opened for {self._state.group_key}")

    # ---- main flow -------------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, data: IncidentInput) -> IncidentState:
        persister = asyncio.create_task(self._persist_continuously())
        if data.carried is None:
            await self._debounce()
            await self._triage()
        self._publish()
        while self._state.status is not IncidentStatus.CLOSED:
            if self._continue_as_new_due():
                if self._diagnosis is not None:
                    await self._diagnosis  # its activities are bounded; a new run would not know of it
                await self._drain(persister)
                workflow.continue_as_new(
                    IncidentInput(
                        incident_id=self._state.incident_id,
                        group_key=self._state.group_key,
                        group_labels=self._state.group_labels,
                        policy=self._policy,
                        carried=self._state,
                    )
                )
            status = self._state.status
            if status is IncidentStatus.AWAITING_APPROVAL:
                await self._await_decision()
            elif status is IncidentStatus.REMEDIATING:
                self._remediate()
            elif status is IncidentStatus.RESOLVED:
                await self._await_reopen_or_close()
            else:
                await self._await_recovery()
        await self._drain(persister)
        return self._state

    async def _debounce(self) -> None:
        """Collect the rest of an alert storm before triage; a manual resolve cuts it short."""
        self._publish()
        await self._wait(lambda: self._state.status is not IncidentStatus.OPEN, self._policy.debounce_seconds)

    async def _triage(self) -> None:
        if self._state.status in FINAL_STATUSES:
            return
        if self._state.status is IncidentStatus.OPEN:
            self._set_status(IncidentStatus.TRIAGING)
        # Gather, analyse, retrieve and diagnose (DESIGN.md stages 2-5); notification (stage 6) plugs in after.
        if self._state.status is IncidentStatus.TRIAGING and workflow.patched(DIAGNOSIS_PATCH):
            # In the background: with no ml worker (or a slow one) the incident still moves on to monitoring
            # after the wait, and the diagnosis lands whenever it is ready.
            self._diagnosis = asyncio.create_task(self._diagnose())
            diagnosis = self._diagnosis
            await self._wait(
                lambda: diagnosis.done() or self._state.status is not IncidentStatus.TRIAGING,
                self._policy.diagnosis_wait_seconds,
            )
        if self._state.status is IncidentStatus.TRIAGING:
            self._set_status(IncidentStatus.MONITORING)

    async def _diagnose(self) -> None:
        """The deterministic RCA, then the LLM's when configured. A failure is recorded, never fatal: the
        incident goes on to monitoring with whatever diagnosis it has."""
        data = DiagnoseInput(
            incident_id=self._state.incident_id,
            title=self._state.title,
            alerts=list(self._state.alerts.values())[:MAX_DIAGNOSIS_ALERTS],
            opened_at=self._state.opened_at,
        )
        try:
            result = await workflow.execute_activity(
                "diagnose_incident",
                data,
                result_type=Diagnosis,
                task_queue=ML_TASK_QUEUE,
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=60),
                retry_policy=DIAGNOSE_RETRY,
                summary="analyse logs and deploys, retrieve runbooks, deterministic RCA",
            )
        except ActivityError as exc:
            self._record(TimelineKind.STATUS, f"Diagnosis failed: {_cause(exc)}")
            return
        self._apply_diagnosis(result.rca, f"{result.log_lines} log lines analysed")
        if not result.llm_configured:
            return
        try:
            rca = await workflow.execute_activity(
                "llm_diagnose",
                LLMDiagnoseInput(incident_id=data.incident_id, title=data.title, diagnosis=result.rca),
                result_type=RootCauseAnalysis,
                task_queue=ML_TASK_QUEUE,
                start_to_close_timeout=timedelta(seconds=2 * self._policy.llm_timeout_seconds),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=LLM_RETRY,
                summary="LLM root-cause analysis over the numbered evidence",
            )
        except ActivityError as exc:
            self._record(TimelineKind.STATUS, f"LLM RCA failed; the deterministic diagnosis stands: {_cause(exc)}")
            return
        self._apply_diagnosis(rca, "")

    def _apply_diagnosis(self, rca: RootCauseAnalysis, note: str) -> None:
        self._state.diagnosis = rca
        self._state.category = rca.category.value
        workflow.upsert_search_attributes([CATEGORY_ATTR.value_set(rca.category.value)])
        note = note or (rca.llm_error or "")
        self._record(
            TimelineKind.DIAGNOSED,
            f"{rca.source} RCA: {rca.category.value} ({rca.confidence:.0%}) - {rca.root_cause.summary}"
            + (f" [{note}]" if note else ""),
            data={
                "source": rca.source,
                "category": rca.category.value,
                "confidence": rca.confidence,
                "component": rca.root_cause.component,
                "evidence": rca.root_cause.evidence,
                "dropped_claims": len(rca.dropped),
            },
        )
        self._set_details()

    def _remediate(self) -> None:
        """Act on an approved proposal. No remediation executor is installed yet, so a person carries it out;
        the workflow says so in the timeline and goes on to verify recovery from the alerts."""
        action = self._state.decisions[-1].action if self._state.decisions else "unknown"
        self._record(
            TimelineKind.STATUS,
            f"No automated executor is installed for action '{action}': carry it out by hand; "
            "Vigil verifies recovery from the alerts.",
            data={"action": action},
        )
        self._set_status(IncidentStatus.MONITORING)

    async def _await_recovery(self) -> None:
        """Monitoring: resolve once every alert has stayed resolved for the quiet period."""
        watching = self._state.status
        await self._wait(lambda: self._all_resolved() or self._state.status is not watching)
        if self._state.status is not watching or not self._all_resolved():
            return
        self._set_details()
        broke_quiet = await self._wait(
            lambda: not self._all_resolved() or self._state.status is not watching,
            self._policy.quiet_period_seconds,
        )
        if not broke_quiet:
            self._resolve("vigil", f"all alerts resolved for {self._policy.quiet_period_seconds:g}s")

    async def _await_decision(self) -> None:
        """Awaiting approval: escalate each time the escalation period passes without a decision."""
        pending = self._state.pending_approval
        if pending is None:
            return
        deadline = pending.requested_at + timedelta(
            seconds=self._policy.escalation_seconds * (pending.escalation_level + 1)
        )
        decided = await self._wait(
            lambda: self._state.status is not IncidentStatus.AWAITING_APPROVAL, self._seconds_until(deadline)
        )
        if decided:
            return
        pending.escalation_level += 1
        self._record(
            TimelineKind.ESCALATED,
            f"No decision on '{pending.proposal.action}' after "
            f"{pending.escalation_level * self._policy.escalation_seconds:g}s: escalated to level "
            f"{pending.escalation_level}",
            data={"level": pending.escalation_level},
        )
        self._set_details()

    async def _await_reopen_or_close(self) -> None:
        resolved_at = self._state.resolved_at or workflow.now()
        deadline = resolved_at + timedelta(seconds=self._policy.close_after_seconds)
        reopened = await self._wait(
            lambda: self._state.status is not IncidentStatus.RESOLVED, self._seconds_until(deadline)
        )
        if reopened:
            return
        if self._state.diagnosis is not None and workflow.patched(INDEX_ON_CLOSE_PATCH):
            await self._index_resolved(self._state.diagnosis)
            if self._state.status is not IncidentStatus.RESOLVED:  # reopened while indexing
                return
        self._state.closed_at = workflow.now()
        self._record(TimelineKind.CLOSED, "Incident closed")
        self._set_status(IncidentStatus.CLOSED)

    async def _index_resolved(self, rca: RootCauseAnalysis) -> None:
        """Teach the knowledge base: later incidents find this one, its root cause and how it ended."""
        state = self._state
        resolution = next((e.message for e in reversed(state.timeline) if e.kind is TimelineKind.RESOLVED), "resolved")
        decisions = "; ".join(f"{d.decision.value} '{d.action}' by {d.by}" for d in state.decisions)
        incident = ResolvedIncident(
            incident_id=state.incident_id,
            title=state.title,
            summary=f"{state.title} on {state.service or state.group_key}: {len(state.alerts)} alert(s)",
            root_cause=f"{rca.root_cause.summary} (component {rca.root_cause.component})",
            resolution=f"{resolution}. {decisions}".strip(" ."),
            category=rca.category.value,
            services=sorted({s for a in state.alerts.values() if (s := a.labels.get("service"))}),
            resolved_at=state.resolved_at or workflow.now(),
        )
        try:
            await workflow.execute_activity(
                "index_resolved_incident",
                incident,
                task_queue=ML_TASK_QUEUE,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=DIAGNOSE_RETRY,
                summary="index the resolved incident into the knowledge base",
            )
        except ActivityError as exc:
            self._record(TimelineKind.STATUS, f"Indexing into the knowledge base failed: {_cause(exc)}")

    # ---- signals, updates, queries ------------------------------------------------------------------------

    @workflow.signal(name="alerts")
    def on_alerts(self, batch: AlertBatch) -> None:
        """Alerts of this group from one delivery. Repeats are counted per fingerprint, never duplicated."""
        if batch.delivery_id in self._state.seen_deliveries:
            return
        self._state.seen_deliveries = [
            *self._state.seen_deliveries[-(RECENT_DELIVERIES - 1) :],
            batch.delivery_id,
        ]
        started_firing = False
        for alert in batch.alerts:
            record = self._state.alerts.get(alert.fingerprint)
            if record is None:
                record = AlertRecord(
                    fingerprint=alert.fingerprint,
                    status=alert.status,
                    labels=alert.labels,
                    annotations=alert.annotations,
                    severity=alert.severity,
                    summary=alert.summary,
                    first_seen=alert.received_at,
                    last_seen=alert.received_at,
                    starts_at=alert.starts_at,
                    ends_at=alert.ends_at,
                    source=alert.source,
                    generator_url=alert.generator_url,
                )
                self._state.alerts[alert.fingerprint] = record
                started_firing |= alert.status is AlertStatus.FIRING
                self._record(
                    TimelineKind.ALERT_NEW,
                    f"{alert.status.value}: {alert.summary}",
                    data={"fingerprint": alert.fingerprint, "severity": alert.severity.value},
                )
                if len(self._state.alerts) == 1:
                    self._state.title = alert.summary
                    self._state.service = alert.service or self._state.service
            else:
                started_firing |= record.status is AlertStatus.RESOLVED and alert.status is AlertStatus.FIRING
                self._track_status_change(record, alert.status, alert.summary)
                record.count += 1
                record.last_seen = max(record.last_seen, alert.received_at)
                record.status = alert.status
                record.ends_at = alert.ends_at
                record.annotations = alert.annotations
            self._unsaved_alerts.add(alert.fingerprint)
            if alert.severity.rank < self._state.severity.rank and alert.status is AlertStatus.FIRING:
                self._state.severity = alert.severity
        if self._state.status is IncidentStatus.RESOLVED and started_firing:
            self._record(TimelineKind.REOPENED, "A resolved alert fired again: incident re-opened")
            self._state.resolved_at = None
            self._set_status(IncidentStatus.MONITORING)
        self._touch()

    def _track_status_change(self, record: AlertRecord, status: AlertStatus, summary: str) -> None:
        if record.status is status:
            return
        kind = TimelineKind.ALERT_RESOLVED if status is AlertStatus.RESOLVED else TimelineKind.ALERT_REFIRED
        self._record(kind, f"{status.value}: {summary}", data={"fingerprint": record.fingerprint})

    @workflow.update(name="propose_remediation")
    def propose_remediation(self, proposal: RemediationProposal) -> PendingApproval:
        pending = PendingApproval(proposal=proposal, requested_at=workflow.now())
        self._state.pending_approval = pending
        self._record(
            TimelineKind.REMEDIATION_PROPOSED,
            f"{proposal.proposed_by} proposes '{proposal.action}': awaiting approval",
            actor=proposal.proposed_by,
            data={"action": proposal.action, "params": proposal.params, "reason": proposal.reason},
        )
        self._set_status(IncidentStatus.AWAITING_APPROVAL)
        return pending

    @propose_remediation.validator
    def _validate_proposal(self, proposal: RemediationProposal) -> None:
        if self._state.status in FINAL_STATUSES:
            raise ValueError(f"incident is {self._state.status.value}: nothing to remediate")
        if self._state.pending_approval is not None:
            action = self._state.pending_approval.proposal.action
            raise ValueError(f"'{action}' already awaits approval: approve or reject it first")

    @workflow.update(name="approval")
    def approval(self, request: ApprovalRequest) -> ApprovalOutcome:
        pending = self._state.pending_approval
        if pending is None:  # the validator has refused this already; keeps the type checker honest
            raise ApplicationError("nothing awaits approval", non_retryable=True)
        approved = request.decision is Decision.APPROVE
        self._state.pending_approval = None
        self._record(
            TimelineKind.APPROVED if approved else TimelineKind.REJECTED,
            f"{request.by} {'approved' if approved else 'rejected'} '{pending.proposal.action}'"
            + (f": {request.reason}" if request.reason else ""),
            actor=request.by,
            data={"action": pending.proposal.action, "reason": request.reason},
        )
        self._set_status(IncidentStatus.REMEDIATING if approved else IncidentStatus.MONITORING)
        outcome = ApprovalOutcome(
            decision=request.decision,
            by=request.by,
            reason=request.reason,
            action=pending.proposal.action,
            status=self._state.status,
            decided_at=workflow.now(),
        )
        self._state.decisions.append(outcome)
        return outcome

    @approval.validator
    def _validate_approval(self, request: ApprovalRequest) -> None:
        if self._state.status is not IncidentStatus.AWAITING_APPROVAL or self._state.pending_approval is None:
            raise ValueError(f"nothing awaits approval: incident is {self._state.status.value}")

    @workflow.update(name="resolve")
    def resolve(self, request: ResolveRequest) -> IncidentState:
        self._resolve(request.by, request.reason or "resolved by hand")
        return self._state

    @resolve.validator
    def _validate_resolve(self, request: ResolveRequest) -> None:
        if self._state.status in FINAL_STATUSES:
            raise ValueError(f"incident is already {self._state.status.value}")

    @workflow.query(name="state")
    def state(self) -> IncidentState:
        return self._state

    # ---- state helpers ---------------------------------------------------------------------------------------

    def _resolve(self, actor: str, reason: str) -> None:
        if self._state.pending_approval is not None:
            self._record(
                TimelineKind.STATUS,
                f"Proposal '{self._state.pending_approval.proposal.action}' withdrawn: incident resolved",
            )
            self._state.pending_approval = None
        self._state.resolved_at = workflow.now()
        self._record(TimelineKind.RESOLVED, f"Resolved: {reason}", actor=actor)
        self._set_status(IncidentStatus.RESOLVED)

    def _all_resolved(self) -> bool:
        return bool(self._state.alerts) and self._state.firing_count == 0

    def _set_status(self, status: IncidentStatus) -> None:
        if self._state.status is status:
            return
        previous = self._state.status
        self._state.status = status
        self._record(TimelineKind.STATUS, f"{previous.value} -> {status.value}", data={"from": previous.value})
        self._publish()

    def _record(
        self, kind: TimelineKind, message: str, *, actor: str = "vigil", data: dict[str, object] | None = None
    ) -> None:
        event = TimelineEvent(
            seq=self._state.next_seq,
            at=workflow.now(),
            kind=kind,
            message=message,
            actor=actor,
            data=data or {},
        )
        self._state.next_seq += 1
        self._state.timeline = [*self._state.timeline[-(RECENT_TIMELINE - 1) :], event]
        self._unsaved_events.append(event)
        self._touch()

    def _touch(self) -> None:
        self._state.updated_at = workflow.now()
        self._row_dirty = True

    def _publish(self) -> None:
        """Search attributes and memo for lists (no worker needed), current details for the Web UI."""
        workflow.upsert_search_attributes(
            [
                STATUS_ATTR.value_set(self._state.status.value),
                SEVERITY_ATTR.value_set(self._state.severity.value),
                SERVICE_ATTR.value_set(self._state.service or ""),
            ]
        )
        workflow.upsert_memo({"title": self._state.title, "group_key": self._state.group_key})
        self._set_details()

    def _set_details(self) -> None:
        state = self._state
        lines = [
            f"**{state.status.value}** · severity {state.severity.value} · service {state.service or '-'}",
            f"alerts: {state.firing_count} firing of {len(state.alerts)} ({state.alert_receipts} received)",
        ]
        if state.pending_approval is not None:
            pending = state.pending_approval
            lines.append(
                f"awaiting approval of `{pending.proposal.action}` (escalation level {pending.escalation_level})"
            )
        lines.extend(f"- {e.at:%H:%M:%S} {e.message}" for e in state.timeline[-5:])
        workflow.set_current_details("\n".join(lines))

    async def _wait(self, condition: Callable[[], bool], seconds: float | None = None) -> bool:
        """Wait until `condition` holds or continue-as-new is due (True), or `seconds` pass (False).
        Callers re-check state after waking, and timers are deadlines, so a continue-as-new loses no time."""
        try:
            await workflow.wait_condition(
                lambda: condition() or self._continue_as_new_due(),
                timeout=None if seconds is None else timedelta(seconds=seconds),
            )
        except TimeoutError:
            return False
        return True

    @staticmethod
    def _seconds_until(deadline: datetime) -> float:
        return max(0.0, (deadline - workflow.now()).total_seconds())

    # ---- persistence ---------------------------------------------------------------------------------------

    async def _persist_continuously(self) -> None:
        """Write changes to the store as they come, coalescing bursts of signals into one activity.
        Never cancelled mid-write: `_drain` asks it to stop once everything is saved."""
        while True:
            await workflow.wait_condition(lambda: self._has_unsaved() or self._stop_persisting)
            if not self._has_unsaved():
                return
            await self._flush()

    async def _drain(self, persister: asyncio.Task[None]) -> None:
        """Before completing or continuing as new: let handlers finish and every change reach the store."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._stop_persisting = True
        await persister

    def _has_unsaved(self) -> bool:
        return self._row_dirty or bool(self._unsaved_alerts) or bool(self._unsaved_events)

    async def _flush(self) -> None:
        alerts = [self._state.alerts[fp].model_copy() for fp in sorted(self._unsaved_alerts)]
        events = self._unsaved_events
        self._unsaved_alerts, self._unsaved_events, self._row_dirty = set(), [], False
        data = PersistIncidentInput(
            incident=self._row(), alerts=alerts, events=events, generation=self._state.generation
        )
        await workflow.execute_activity(
            "persist_incident",
            data,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=PERSIST_RETRY,
            summary=f"store: {self._state.status.value}, {len(alerts)} alert(s), {len(events)} event(s)",
        )

    def _row(self) -> IncidentRow:
        state = self._state
        return IncidentRow(
            incident_id=state.incident_id,
            group_key=state.group_key,
            title=state.title,
            service=state.service,
            severity=state.severity,
            category=state.category,
            status=state.status,
            opened_at=state.opened_at,
            updated_at=state.updated_at,
            resolved_at=state.resolved_at,
            closed_at=state.closed_at,
            alert_count=state.alert_receipts,
            fingerprint_count=len(state.alerts),
        )

    # ---- continue-as-new -------------------------------------------------------------------------------------

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested() or info.get_current_history_length() > self._policy.max_history_events
        )


def _cause(exc: ActivityError) -> str:
    cause = exc.cause
    while cause is not None and cause.__cause__ is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    return str(cause or exc)[:500]
