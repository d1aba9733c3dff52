"""`IncidentWorkflow`: one durable workflow per alert group owns the incident from first alert to close.

Stages, in order (DESIGN.md, "The incident workflow"):
open -> debounce (collect the alert storm) -> triage -> monitoring, with approval and remediation branching off
monitoring and a reopen window after resolution. Triage diagnoses on the ml worker: the deterministic RCA first,
then the LLM's when one is configured; a closed incident with a diagnosis is indexed into the knowledge base.

Remediation closes the loop: after the diagnosis the workflow proposes the first catalogue action its runbooks
link (the policy may approve it at once); an approved action runs on the integrations worker, and recovery is
verified with workflow timers (the action's PromQL check, then the incident's alerts resolved). Not recovered:
the action's rollback runs, the incident is escalated and the next candidate awaits a human. Notification
plugs in at the same points.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from vigil.alerts import alert_size
    from vigil.integrations.models import (
        MAX_CHAIN_HOPS,
        AcknowledgeRequest,
        BriefDecision,
        BriefEvent,
        BriefProposal,
        CodeChange,
        CodeHostInput,
        CodeHostResult,
        CodeHostState,
        IncidentBrief,
        IntegrationKind,
        NotifyInput,
        NotifyResult,
        SyncOutcome,
        TicketInput,
        TicketResult,
    )
    from vigil.knowledge.models import ResolvedIncident
    from vigil.models import (
        Alert,
        AlertBatch,
        AlertRecord,
        AlertStatus,
        ApprovalOutcome,
        ApprovalRequest,
        Decision,
        DiagnoseInput,
        Diagnosis,
        IncidentDetail,
        IncidentInput,
        IncidentRow,
        IncidentState,
        IncidentStatus,
        LLMDiagnoseInput,
        PendingApproval,
        PersistIncidentInput,
        RemediationProposal,
        ResolveRequest,
        Severity,
        TimelineEvent,
        TimelineKind,
    )
    from vigil.mttx import mttx
    from vigil.rca.models import EvidenceItem, RootCauseAnalysis
    from vigil.remediation.models import (
        ActionOutcome,
        ActionResult,
        ActionRun,
        MeasureInput,
        Measurement,
        PlanInput,
        RemediationPlan,
        RunActionInput,
        VerificationOutcome,
    )
    from vigil.settings import INTEGRATIONS_TASK_QUEUE, ML_TASK_QUEUE
    from vigil.temporal import CATEGORY_ATTR, INCIDENT_ATTR, SERVICE_ATTR, SEVERITY_ATTR, STATUS_ATTR

RECENT_TIMELINE = 200
"""Timeline events kept in workflow state; the store keeps them all."""
RECENT_DELIVERIES = 1000
"""Delivery ids remembered to drop a re-sent signal."""
PERSIST_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
FINAL_STATUSES = (IncidentStatus.RESOLVED, IncidentStatus.CLOSED)
DIAGNOSIS_PATCH = "diagnosis-v1"
INDEX_ON_CLOSE_PATCH = "index-resolved-incident-v1"
OCCURRENCE_PATCH = "incident-occurrence-v1"
"""Each run chain (one occurrence of the group's incident) has its own incident id."""
ALERT_ORDER_PATCH = "alert-order-v1"
"""Alerts ordered by their own timestamps; repeats and re-sent deliveries are not new occurrences."""
RESUMABLE_DIAGNOSIS_PATCH = "resumable-diagnosis-v1"
"""A continue-as-new hands a running diagnosis over to the new run instead of waiting for it."""
PERSIST_BATCH_PATCH = "persist-batch-v1"
TIMINGS_PATCH = "record-timings-v1"
PERSIST_BATCH_SECONDS = 1.0
MAX_DIAGNOSIS_ALERTS = 200
MAX_FINGERPRINTS = 1000
MAX_ALERT_STATE_BYTES = 1_000_000
"""With MAX_FINGERPRINTS, keeps the state (a query result and the continue-as-new input) far below Temporal's
2 MB payload limit: past either, notifications of new fingerprints are counted, not kept."""
DIAGNOSE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=60),
    non_retryable_error_types=["AnalysisFailed"],
)
"""Store or Prometheus down: retried until DIAGNOSE_DEADLINE or the incident closes; a failing analysis is not."""
DIAGNOSE_DEADLINE = timedelta(hours=24)
INDEX_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3)
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_attempts=3, non_retryable_error_types=["LLMRejected"]
)
REMEDIATION_PATCH = "remediation-loop-v1"
"""Vigil proposes from its diagnosis; approved catalogue actions run, are verified, rolled back, escalated."""
PLAN_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5)
ACTION_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30))
"""A lost worker is noticed through the heartbeat and the action retried elsewhere: the activity's idempotency
record (incident + proposal) keeps a non-idempotent action from running twice."""
ACTION_HEARTBEAT = timedelta(seconds=10)
ACTION_DEADLINE = timedelta(hours=2)
MEASURE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
MAX_POLL_SECONDS = 15.0
MIN_POLL_SECONDS = 2.0
VIGIL = "vigil"
REDIAGNOSE_PATCH = "rediagnose-on-reopen-v1"
"""A re-opened incident is diagnosed again from the alerts firing now, with the re-opening as the onset; the
earlier diagnoses stay in the timeline."""
INTEGRATIONS_PATCH = "integrations-v1"
"""Notify stage: after triage, on every change and at close, the incident goes to its Slack message, ticket and
GitHub issue (plugins on the integrations worker), in the background: an outage there never stalls it."""
NOTIFY_BATCH_SECONDS = 1.0
"""Changes within this window go out in one sync (an alert storm is one message update, not hundreds)."""
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60))
NOTIFY_ATTEMPT = timedelta(seconds=20)
"""One sync is a few HTTP calls; a worker that died mid-sync is noticed after this and the sync retried."""
NOTIFY_DEADLINE = timedelta(minutes=10)
"""Past this, a sync is given up (a timeline note); the next change tries again."""
NOTIFIED_KINDS = frozenset(
    {
        TimelineKind.ALERT_NEW,
        TimelineKind.ALERT_REFIRED,
        TimelineKind.DIAGNOSED,
        TimelineKind.REMEDIATION_PROPOSED,
        TimelineKind.APPROVED,
        TimelineKind.REJECTED,
        TimelineKind.ESCALATED,
        TimelineKind.REMEDIATION_RUN,
        TimelineKind.VERIFIED,
        TimelineKind.NOT_RECOVERED,
        TimelineKind.RESOLVED,
        TimelineKind.REOPENED,
        TimelineKind.CLOSED,
        TimelineKind.ACKNOWLEDGED,
        TimelineKind.CODE_CHANGE,
    }
)
"""Events told in the message's thread and as ticket comments."""
MAX_TOLD_EVENTS = 50
R = TypeVar("R", NotifyResult, TicketResult, CodeHostResult)
MAX_PULL_REQUESTS = 50
RECENT_CODE_DELIVERIES = 100
MAX_COMMIT_EVIDENCE = 20


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
                incident_id=occurrence_id(data.incident_id, workflow.info().run_id)
                if workflow.patched(OCCURRENCE_PATCH)
                else data.incident_id,
                group_key=data.group_key,
                group_labels=data.group_labels,
                title=data.group_labels.get("alertname", data.group_key),
                service=data.group_labels.get("service"),
                opened_at=now,
                updated_at=now,
                generation=workflow.info().run_id,
            )
        self._unsaved_alerts: set[str] = set()
        self._unsaved_events: list[TimelineEvent] = []
        self._row_dirty = True
        self._stop_persisting = False
        self._stop_notifying = False
        self._diagnosis: asyncio.Task[None] | None = None
        self._diagnose_again = False
        self._after_close: list[AlertBatch] = []
        if data.carried is None:  # here, not in run: a signal-with-start's signal is handled before run starts
            self._record(TimelineKind.OPENED, f"Incident opened for {self._state.group_key}")
            for batch in data.opening:
                self.on_alerts(batch)

    # ---- main flow -------------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, data: IncidentInput) -> IncidentState:
        persister = asyncio.create_task(self._persist_continuously())
        notifier = asyncio.create_task(self._notify_continuously()) if workflow.patched(INTEGRATIONS_PATCH) else None
        if data.opening:  # continued from the group's previous incident: nothing of its diagnosis applies here
            workflow.upsert_search_attributes([CATEGORY_ATTR.value_unset()])
        if data.carried is None:
            await self._debounce()
            await self._triage()
        elif self._state.diagnosis_pending:
            self._diagnosis = asyncio.create_task(self._diagnose())  # handed over by the previous run
        self._publish()
        while self._state.status is not IncidentStatus.CLOSED:
            if self._continue_as_new_due():
                await self._hand_over_diagnosis()
                await self._drain(persister, notifier)
                workflow.continue_as_new(
                    IncidentInput(
                        incident_id=self._state.incident_id,
                        group_key=self._state.group_key,
                        group_labels=self._state.group_labels,
                        policy=self._policy,
                        carried=self._state,
                    )
                )
            if self._diagnose_again and (self._diagnosis is None or self._diagnosis.done()):
                self._diagnose_again = False
                self._diagnosis = asyncio.create_task(self._diagnose())
            status = self._state.status
            if status is IncidentStatus.AWAITING_APPROVAL:
                await self._await_decision()
            elif status is IncidentStatus.REMEDIATING:
                await self._remediate()
            elif status is IncidentStatus.RESOLVED:
                await self._await_reopen_or_close()
            else:
                await self._await_recovery()
        await self._drain(persister, notifier)
        if self._after_close:
            # alerts that came while this incident was closing open the group's next incident, in a new run chain
            workflow.continue_as_new(
                IncidentInput(
                    incident_id=workflow.info().workflow_id,
                    group_key=self._state.group_key,
                    group_labels=self._state.group_labels,
                    policy=self._policy,
                    opening=self._after_close,
                )
            )
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

    async def _hand_over_diagnosis(self) -> None:
        """Before a continue-as-new: the new run takes over a running diagnosis (it may be retrying while the
        store is down, for hours), where older runs waited for it."""
        diagnosis = self._diagnosis
        if diagnosis is None or diagnosis.done():
            return
        if not workflow.patched(RESUMABLE_DIAGNOSIS_PATCH):
            await diagnosis
            return
        diagnosis.cancel()
        with contextlib.suppress(asyncio.CancelledError, ActivityError):  # the cancelled activity, nothing else
            await diagnosis
        self._state.diagnosis_pending = True

    async def _diagnose(self) -> None:
        """The deterministic RCA, then the LLM's when configured. A failure is recorded, never fatal: the
        incident goes on to monitoring with whatever diagnosis it has."""
        self._state.diagnosis_pending = True
        try:
            while True:
                await self._diagnose_once()
                if self._state.diagnosis is not None and workflow.patched(REMEDIATION_PATCH):
                    await self._propose_from_diagnosis(self._state.diagnosis)
                if not self._diagnose_again:  # re-opened while this one ran: its alerts came too late for it
                    break
                self._diagnose_again = False
        finally:
            self._state.diagnosis_pending = False

    async def _diagnose_once(self) -> None:
        since = self._state.diagnosis_since
        alerts = list(self._state.alerts.values())
        if since is not None:  # re-opened: what fires now, not what an earlier episode left
            alerts = [a for a in alerts if a.status is AlertStatus.FIRING] or alerts
        data = DiagnoseInput(
            incident_id=self._state.incident_id,
            title=self._state.title,
            alerts=alerts[:MAX_DIAGNOSIS_ALERTS],
            opened_at=since or self._state.opened_at,
        )
        try:
            result = await workflow.execute_activity(
                "diagnose_incident",
                data,
                result_type=Diagnosis,
                task_queue=ML_TASK_QUEUE,
                start_to_close_timeout=timedelta(minutes=10),
                schedule_to_close_timeout=DIAGNOSE_DEADLINE,
                heartbeat_timeout=timedelta(seconds=60),
                retry_policy=DIAGNOSE_RETRY,
                summary="analyse logs and deploys, retrieve runbooks, deterministic RCA",
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
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
            if is_cancelled_exception(exc):
                raise
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

    async def _remediate(self) -> None:
        """Carry out the approved proposal: run it, verify recovery, roll back and escalate when it did not help."""
        if not workflow.patched(REMEDIATION_PATCH):
            self._remediate_by_hand(self._state.decisions[-1].action if self._state.decisions else "unknown")
            return
        run = next((r for r in reversed(self._state.actions) if r.verification is None), None)
        if run is None:
            self._set_status(IncidentStatus.MONITORING)
            return
        if run.result is None:
            run.result = await self._run_action(run, run.action, rollback=False)
            if not self._verifiable(run, run.result):
                return
            assert run.result.verification is not None  # _verifiable
            run.verify_until = workflow.now() + timedelta(seconds=run.result.verification.within_seconds)
            self._touch()
        recovered, detail = await self._verify(run)
        if recovered is None and self._state.status is IncidentStatus.REMEDIATING:
            return  # continue-as-new is due: the next run resumes this verification, at the same deadline
        if recovered is None:
            self._finish(run, VerificationOutcome.SKIPPED, detail)
        elif recovered:
            self._finish(run, VerificationOutcome.RECOVERED, detail)
            self._record(TimelineKind.VERIFIED, f"'{run.action}' verified: {detail}", data={"action": run.action})
            self._end_remediating()
        else:
            await self._not_recovered(run, detail)

    def _remediate_by_hand(self, action: str) -> None:
        """An approved action with no executor: a person carries it out; recovery is seen in the alerts."""
        self._record(
            TimelineKind.STATUS,
            f"No automated executor is installed for action '{action}': carry it out by hand; "
            "Vigil verifies recovery from the alerts.",
            data={"action": action},
        )
        self._set_status(IncidentStatus.MONITORING)

    async def _run_action(self, run: ActionRun, action: str, *, rollback: bool) -> ActionResult:
        data = RunActionInput(
            incident_id=self._state.incident_id,
            proposal_id=run.proposal_id,
            action=action,
            params={} if rollback else run.params,
            rollback=rollback,
            **self._remediation_context(),
        )
        try:
            result: ActionResult = await workflow.execute_activity(
                "run_remediation_action",
                data,
                result_type=ActionResult,
                task_queue=INTEGRATIONS_TASK_QUEUE,
                start_to_close_timeout=timedelta(hours=1, minutes=5),
                schedule_to_close_timeout=ACTION_DEADLINE,
                heartbeat_timeout=ACTION_HEARTBEAT,
                retry_policy=ACTION_RETRY,
                summary=f"{'roll back' if rollback else 'run'} {action}",
            )
        except ActivityError as exc:
            result = ActionResult(
                action=action,
                key=data.key,
                outcome=ActionOutcome.UNKNOWN,
                output=f"the integrations worker did not report a result: {_cause(exc)}",
                executed=False,
            )
        verb = "Rollback" if rollback else "Action"
        self._record(
            TimelineKind.REMEDIATION_RUN,
            f"{verb} '{action}' {result.outcome.value}"
            + (" (dry run: nothing changed)" if result.dry_run else "")
            + (f": {result.output[:300]}" if result.output else ""),
            data={
                "action": action,
                "proposal_id": run.proposal_id,
                "rollback": rollback,
                "outcome": result.outcome.value,
                "output": result.output,
                "params": result.params,
                "dry_run": result.dry_run,
                "executed": result.executed,
            },
        )
        return result

    def _verifiable(self, run: ActionRun, result: ActionResult) -> bool:
        """Whether the run goes on to verification; otherwise it is finished here, and said why."""
        if result.outcome is ActionOutcome.NOT_IN_CATALOGUE:
            self._finish(run, VerificationOutcome.SKIPPED, "not a catalogue action")
            self._remediate_by_hand(run.action)
            return False
        if result.outcome in (ActionOutcome.FAILED, ActionOutcome.REFUSED):
            self._finish(run, VerificationOutcome.NOT_RECOVERED, f"the action {result.outcome.value}")
            self._escalate(run, f"'{run.action}' {result.outcome.value}: {result.output[:300]}")
            self._end_remediating()
            return False
        if result.outcome is ActionOutcome.DRY_RUN or result.verification is None:
            why = "dry run: nothing to verify" if result.dry_run else "the action declares no verification"
            self._finish(run, VerificationOutcome.SKIPPED, why)
            self._end_remediating()
            return False
        return True

    async def _verify(self, run: ActionRun) -> tuple[bool | None, str]:
        """Recovered (True), not recovered (False), or not decided here (None: a person resolved the incident, or
        continue-as-new is due), and how it was seen.

        The action's PromQL condition must hold for its `for_seconds`, then every alert of the incident must be
        resolved, both before `verify_until`. Polls and waits are workflow timers: a worker that dies meanwhile
        loses nothing, and after a continue-as-new the next run resumes at the same deadline (the condition's
        window starts again)."""
        assert run.result is not None
        assert run.result.verification is not None
        assert run.verify_until is not None
        spec = run.result.verification
        deadline = run.verify_until
        window = f"{spec.within_seconds:g}s"
        held = ""
        if spec.promql is not None and spec.condition is not None:
            check = f"`{spec.promql}` {spec.condition}"
            poll = min(max(spec.for_seconds / 6, MIN_POLL_SECONDS), MAX_POLL_SECONDS)
            held_since: datetime | None = None
            last = Measurement(value=None, holds=False, detail="not measured")
            while True:
                if self._state.status is not IncidentStatus.REMEDIATING:
                    return None, f"verification stopped: the incident is {self._state.status.value}"
                if self._continue_as_new_due():
                    return None, "handed over to the next run"
                last = await self._measure(spec.promql, spec.condition)
                now = workflow.now()
                held_since = (held_since or now) if last.holds else None
                if held_since is not None and (now - held_since).total_seconds() >= spec.for_seconds:
                    break
                if now >= deadline:
                    return False, f"{check} did not hold for {spec.for_seconds:g}s within {window} ({_shown(last)})"
                await self._wait(
                    lambda: self._state.status is not IncidentStatus.REMEDIATING,
                    min(poll, self._seconds_until(deadline)),
                )
            held = f"{check} held for {spec.for_seconds:g}s ({_shown(last)}); "
        settled = await self._wait(
            lambda: self._all_resolved() or self._state.status is not IncidentStatus.REMEDIATING,
            self._seconds_until(deadline),
        )
        if self._state.status is not IncidentStatus.REMEDIATING:
            return None, f"verification stopped: the incident is {self._state.status.value}"
        if not self._all_resolved():
            if settled:  # woken because continue-as-new is due
                return None, "handed over to the next run"
            return False, f"{held}{self._state.firing_count} alert(s) still firing {window} after the action"
        return True, f"{held}every alert of the incident resolved"

    async def _measure(self, promql: str, condition: str) -> Measurement:
        try:
            measurement: Measurement = await workflow.execute_activity(
                "measure_recovery",
                MeasureInput(promql=promql, condition=condition),
                result_type=Measurement,
                task_queue=INTEGRATIONS_TASK_QUEUE,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=MEASURE_RETRY,
                summary="verify recovery: PromQL",
            )
        except ActivityError as exc:
            return Measurement(value=None, holds=False, detail=f"not measured: {_cause(exc)}")
        return measurement

    async def _not_recovered(self, run: ActionRun, detail: str) -> None:
        """Roll back what the action changed (when it declares a rollback), escalate, offer the next candidate."""
        self._finish(run, VerificationOutcome.NOT_RECOVERED, detail)
        self._record(
            TimelineKind.NOT_RECOVERED, f"'{run.action}' did not restore service: {detail}", data={"action": run.action}
        )
        assert run.result is not None
        rollback = run.result.rollback
        if rollback is not None and run.result.outcome is ActionOutcome.SUCCEEDED:
            run.rollback_result = await self._run_action(run, rollback, rollback=True)
        self._escalate(run, f"'{run.action}' did not restore service")
        self._end_remediating()
        await self._propose_next(after_failure=True)

    def _end_remediating(self) -> None:
        """Back to monitoring, unless someone resolved the incident while the action ran."""
        if self._state.status is IncidentStatus.REMEDIATING:
            self._set_status(IncidentStatus.MONITORING)

    def _finish(self, run: ActionRun, outcome: VerificationOutcome, detail: str) -> None:
        run.verification, run.verification_detail = outcome, detail
        self._touch()

    def _escalate(self, run: ActionRun, why: str) -> None:
        """Level: the actions of this incident that did not restore service, counted from the runs the state keeps
        whole (its timeline is cut to the recent events)."""
        level = sum(1 for r in self._state.actions if r.verification is VerificationOutcome.NOT_RECOVERED)
        self._record(
            TimelineKind.ESCALATED,
            f"{why}: escalated to the responders (level {level})",
            data={"level": level, "action": run.action, "proposal_id": run.proposal_id},
        )

    async def _propose_from_diagnosis(self, rca: RootCauseAnalysis) -> None:
        """After the first diagnosis: propose the best catalogue action the runbooks link, once per incident."""
        if self._state.vigil_proposed:
            return
        self._state.vigil_proposed = True
        self._state.remediation_candidates = list(
            dict.fromkeys(a.catalogue_action for a in rca.recommended_actions if a.catalogue_action)
        )
        if not self._state.remediation_candidates:
            self._record(
                TimelineKind.STATUS,
                "No catalogue action is linked to this incident's runbooks: remediation is up to the responders",
            )
            return
        await self._propose_next(after_failure=False)

    async def _propose_next(self, *, after_failure: bool) -> None:
        """Propose the next candidate not yet proposed in this incident, as the policy allows; after a failed
        action, never automatically."""
        tried = [d.action for d in self._state.decisions]
        if self._state.pending_approval is not None:
            tried.append(self._state.pending_approval.proposal.action)
        if not self._may_propose() or set(self._state.remediation_candidates) <= set(tried):
            return
        rca = self._state.diagnosis
        try:
            plan = await workflow.execute_activity(
                "plan_remediation",
                PlanInput(
                    incident_id=self._state.incident_id,
                    candidates=self._state.remediation_candidates,
                    exclude=tried,
                    **self._remediation_context(),
                ),
                result_type=RemediationPlan,
                task_queue=INTEGRATIONS_TASK_QUEUE,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(minutes=5),
                retry_policy=PLAN_RETRY,
                summary="choose a catalogue action under the policy",
            )
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            self._record(TimelineKind.STATUS, f"No remediation proposed: planning failed: {_cause(exc)}")
            return
        chosen = plan.chosen
        if chosen is None:
            self._record(
                TimelineKind.STATUS,
                "No catalogue action applies: " + "; ".join(plan.skipped),
                data={"skipped": plan.skipped},
            )
            return
        if not self._may_propose():  # the incident moved on while planning
            return
        linked = (
            next((a for a in rca.recommended_actions if a.catalogue_action == chosen.action), None) if rca else None
        )
        why = f"{rca.category.value} ({rca.confidence:.0%}): {rca.root_cause.summary}" if rca else "diagnosis"
        proposal = RemediationProposal(
            action=chosen.action,
            params=chosen.params,
            proposed_by=VIGIL,
            reason=(why + (f"; linked from runbook {linked.runbook}" if linked and linked.runbook else ""))[:2000],
            evidence=(linked.evidence if linked else [])[:12],
        )
        pending = self._open_proposal(
            proposal, policy_rule=chosen.rule, policy_reason=chosen.policy_reason, dry_run=chosen.dry_run
        )
        if chosen.mode == "auto" and not after_failure:
            self._decide(
                ApprovalRequest(
                    decision=Decision.APPROVE,
                    by=f"policy:{chosen.rule}",
                    reason=chosen.policy_reason,
                    proposal_id=pending.proposal_id,
                )
            )

    def _may_propose(self) -> bool:
        return (
            self._state.status not in FINAL_STATUSES
            and self._state.status is not IncidentStatus.REMEDIATING
            and self._state.pending_approval is None
        )

    def _remediation_context(self) -> dict[str, object]:
        """What binds parameters and decides the policy: labels, severity, the diagnosed component, confidence."""
        labels = dict(self._state.group_labels)
        first = min(self._state.alerts.values(), key=lambda a: a.first_seen, default=None)
        if first is not None:
            labels = {**first.labels, **labels}
        rca = self._state.diagnosis
        severity: Severity = self._state.severity
        return {
            "labels": labels,
            "severity": severity,
            "component": rca.root_cause.component if rca else None,
            "confidence": rca.confidence if rca else 0.0,
        }

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
        if self._state.integrations.acknowledged_by is not None:  # someone is on it: no more escalation
            await self._wait(lambda: self._state.status is not IncidentStatus.AWAITING_APPROVAL)
            return
        deadline = pending.requested_at + timedelta(
            seconds=self._policy.escalation_seconds * (pending.escalation_level + 1)
        )
        decided = await self._wait(
            lambda: (
                self._state.status is not IncidentStatus.AWAITING_APPROVAL
                or self._state.integrations.acknowledged_by is not None
            ),
            self._seconds_until(deadline),
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
        if workflow.patched(TIMINGS_PATCH):
            await self._record_timings()

    async def _record_timings(self) -> None:
        """MTTx of the closed incident into the store and the incidents worker's histograms."""
        state = self._state
        detail = IncidentDetail(
            incident_id=state.incident_id, live=True, state=state, record=None, timeline=state.timeline
        )
        try:
            await workflow.execute_activity(
                "record_incident_timings",
                mttx(detail),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PERSIST_RETRY,
                summary="MTTx: time to detect, acknowledge, diagnose, mitigate, resolve",
            )
        except ActivityError as exc:  # refused data only: an outage is retried
            self._record(TimelineKind.STATUS, f"MTTx not recorded: {_cause(exc)}")

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
                retry_policy=INDEX_RETRY,
                summary="index the resolved incident into the knowledge base",
            )
        except ActivityError as exc:
            self._record(TimelineKind.STATUS, f"Indexing into the knowledge base failed: {_cause(exc)}")

    # ---- notify stage: Slack, the ticket, the GitHub issue -------------------------------------------------

    async def _notify_continuously(self) -> None:
        """After triage, hand every change to the integration plugins, coalescing bursts into one sync. Runs in
        the background so that Slack or Jira being down delays nothing; `_drain` lets it tell the last changes."""
        while True:
            await workflow.wait_condition(lambda: self._notify_due() or self._stop_notifying)
            if not self._notify_due():
                return
            if not self._stop_notifying:
                await self._wait(lambda: self._stop_notifying, NOTIFY_BATCH_SECONDS)
            await self._sync_integrations()

    def _notify_due(self) -> bool:
        if self._state.status in (IncidentStatus.OPEN, IncidentStatus.TRIAGING):
            return False
        synced = self._state.integrations.synced_seq
        return any(e.seq > synced and e.kind is not TimelineKind.INTEGRATION for e in self._state.timeline)

    async def _sync_integrations(self) -> None:
        integrations = self._state.integrations
        upto = self._state.next_seq - 1
        brief = self._brief()
        await asyncio.gather(self._sync_notifier(brief), self._sync_ticket(brief), self._sync_code_host(brief))
        integrations.synced_seq = max(integrations.synced_seq, upto)
        self._set_details()

    async def _sync_notifier(self, brief: IncidentBrief) -> None:
        kind = IntegrationKind.NOTIFIER
        state = self._state.integrations.notifier
        if kind.value in self._state.integrations.off:
            return
        data = NotifyInput(brief=brief, events=self._untold(state.told_seq if state else 0), state=state)
        result = await self._run_sync("notify_incident", data, NotifyResult, kind, "notify: the incident message")
        if result is None or not self._took(kind, result.outcome, result.note) or result.state is None:
            return
        if state is None:
            self._integration_note(f"Posted to Slack: {result.state.permalink or result.state.ts}", kind)
        self._state.integrations.notifier = result.state

    async def _sync_ticket(self, brief: IncidentBrief) -> None:
        kind = IntegrationKind.TICKET
        state = self._state.integrations.ticket
        if kind.value in self._state.integrations.off:
            return
        data = TicketInput(brief=brief, events=self._untold(state.told_seq if state else 0), state=state)
        result = await self._run_sync("sync_ticket", data, TicketResult, kind, "ticket: find or create, comment")
        if result is None or not self._took(kind, result.outcome, result.note) or result.state is None:
            return
        if state is None:
            self._integration_note(f"Ticket {result.state.key}: {result.state.url}", kind)
        elif result.state.done and not state.done:
            self._integration_note(f"Ticket {result.state.key} moved to done", kind)
        self._state.integrations.ticket = result.state

    async def _sync_code_host(self, brief: IncidentBrief) -> None:
        kind = IntegrationKind.CODE_HOST
        state = self._state.integrations.code_host
        if kind.value in self._state.integrations.off:
            return
        data = CodeHostInput(brief=brief, events=self._untold(state.told_seq if state else 0), state=state)
        result = await self._run_sync("sync_code_host", data, CodeHostResult, kind, "code host: issue and commits")
        if result is None or not self._took(kind, result.outcome, result.note) or result.state is None:
            return
        if state is None:
            self._integration_note(f"GitHub issue {result.state.repository}#{result.state.number}", kind)
        if result.state.commits and (state is None or not state.commits):
            self._add_commit_evidence(result.state)
        self._state.integrations.code_host = result.state

    async def _run_sync(
        self,
        activity: str,
        data: NotifyInput | TicketInput | CodeHostInput,
        result_type: type[R],
        kind: IntegrationKind,
        summary: str,
    ) -> R | None:
        try:
            result: R = await workflow.execute_activity(
                activity,
                data,
                result_type=result_type,
                task_queue=INTEGRATIONS_TASK_QUEUE,
                start_to_close_timeout=NOTIFY_ATTEMPT,
                schedule_to_close_timeout=NOTIFY_DEADLINE,
                retry_policy=NOTIFY_RETRY,
                summary=summary,
            )
        except ActivityError as exc:
            self._integration_note(f"{kind.value} failed: {_cause(exc)}", kind, failed=True)
            return None
        return result

    def _took(self, kind: IntegrationKind, outcome: SyncOutcome, note: str) -> bool:
        """True when the plugin acted; an unconfigured one is switched off for this incident, and said so once."""
        if outcome is SyncOutcome.UNCONFIGURED:
            self._state.integrations.off[kind.value] = note
            self._integration_note(f"{kind.value} skipped: {note}", kind)
            return False
        return outcome is SyncOutcome.DONE

    def _integration_note(self, message: str, kind: IntegrationKind, *, failed: bool = False) -> None:
        self._record(TimelineKind.INTEGRATION, message, data={"integration": kind.value, "failed": failed})

    def _untold(self, told_seq: int) -> list[BriefEvent]:
        events = [
            BriefEvent(seq=e.seq, at=e.at, kind=e.kind.value, message=e.message, actor=e.actor)
            for e in self._state.timeline
            if e.seq > told_seq and e.kind in NOTIFIED_KINDS
        ]
        return events[-MAX_TOLD_EVENTS:]

    def _add_commit_evidence(self, code: CodeHostState) -> None:
        """The suspect deploy's commits become evidence (`commit:<sha>`) of the diagnosis."""
        rca = self._state.diagnosis
        commits = code.commits[:MAX_COMMIT_EVIDENCE]
        if rca is not None:
            known = {item.id for item in rca.evidence}
            rca.evidence.extend(
                EvidenceItem(
                    id=f"commit:{c.sha[:12]}",
                    kind="commit",
                    title=c.message.splitlines()[0][:200] if c.message else c.sha,
                    detail=" ".join(part for part in (c.author, c.url) if part),
                )
                for c in commits
                if f"commit:{c.sha[:12]}" not in known
            )
        self._integration_note(
            f"{len(commits)} commit(s) in the suspect deploy of {code.repository}: "
            + ", ".join(c.sha[:12] for c in commits),
            IntegrationKind.CODE_HOST,
        )

    def _brief(self) -> IncidentBrief:
        state = self._state
        rca = state.diagnosis
        integrations = state.integrations
        evidence: list[EvidenceItem] = []
        runbooks: list[str] = []
        first = min(state.alerts.values(), key=lambda a: a.first_seen, default=None)
        if first is not None and (url := first.annotations.get("runbook_url")):
            runbooks.append(url)
        if rca is not None:
            by_id = {item.id: item for item in rca.evidence}
            evidence = [by_id[i] for i in rca.root_cause.evidence if i in by_id][:3]
            runbooks.extend(hit.source for hit in rca.runbooks if hit.source not in runbooks)
        pending = state.pending_approval
        return IncidentBrief(
            incident_id=state.incident_id,
            workflow_id=workflow.info().workflow_id,
            title=state.title,
            status=state.status.value,
            severity=state.severity,
            service=state.service,
            category=state.category,
            confidence=rca.confidence if rca else None,
            root_cause=rca.root_cause.summary if rca else None,
            component=rca.root_cause.component if rca else None,
            code_related=rca.code_related if rca else False,
            chain=rca.root_cause.chain[:MAX_CHAIN_HOPS] if rca else [],
            evidence=evidence,
            runbooks=runbooks[:3],
            firing=state.firing_count,
            alerts=state.alert_occurrences,
            opened_at=state.opened_at,
            resolved_at=state.resolved_at,
            closed_at=state.closed_at,
            pending=None
            if pending is None
            else BriefProposal(
                proposal_id=pending.proposal_id,
                action=pending.proposal.action,
                params=pending.proposal.params,
                proposed_by=pending.proposal.proposed_by,
                reason=pending.proposal.reason,
                policy_reason=pending.policy_reason,
                dry_run=pending.dry_run,
                escalation_level=pending.escalation_level,
            ),
            acknowledged_by=integrations.acknowledged_by,
            acknowledged_at=integrations.acknowledged_at,
            decisions=[
                BriefDecision(decision=d.decision.value, by=d.by, action=d.action, reason=d.reason, at=d.decided_at)
                for d in state.decisions[-5:]
            ],
            pull_requests=integrations.pull_requests,
        )

    # ---- signals, updates, queries ------------------------------------------------------------------------

    @workflow.signal(name="alerts")
    def on_alerts(self, batch: AlertBatch) -> None:
        """Alerts of this group from one delivery. A re-sent delivery only says its alerts are still there; a
        notification is placed by the alert's own timestamps, not by when it arrived, so a late, older one
        changes no status; repeats are counted apart from firing episodes."""
        ordered = workflow.patched(ALERT_ORDER_PATCH)
        if ordered and self._state.status is IncidentStatus.CLOSED:
            self._after_close.append(batch)  # never absorbed by a closed incident: they open the next one
            return
        if batch.delivery_id in self._state.seen_deliveries:
            if ordered:
                self._still_there(batch.alerts)
            return
        self._state.seen_deliveries = [
            *self._state.seen_deliveries[-(RECENT_DELIVERIES - 1) :],
            batch.delivery_id,
        ]
        started_firing = False
        for alert in batch.alerts:
            record = self._state.alerts.get(alert.fingerprint)
            if record is None:
                if ordered and not self._room_for(alert):
                    continue
                record = self._add_alert(alert)
                started_firing |= alert.status is AlertStatus.FIRING
            elif ordered:
                started_firing |= self._apply_in_order(record, alert)
            else:
                started_firing |= self._apply_by_arrival(record, alert)
            self._unsaved_alerts.add(alert.fingerprint)
            if alert.severity.rank < self._state.severity.rank and record.status is AlertStatus.FIRING:
                self._state.severity = alert.severity
        if self._state.status is IncidentStatus.RESOLVED and started_firing:
            self._record(TimelineKind.REOPENED, "A resolved alert fired again: incident re-opened")
            self._state.resolved_at = None
            self._set_status(IncidentStatus.MONITORING)
            if workflow.patched(REDIAGNOSE_PATCH):
                self._state.diagnosis_since = workflow.now()
                self._state.diagnosis_pending = True  # a continue-as-new before it starts hands it over
                self._diagnose_again = True
                self._record(TimelineKind.STATUS, "Diagnosing again from the alerts firing now")
        self._touch()

    def _add_alert(self, alert: Alert) -> AlertRecord:
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
            ends_at=_ended_at(alert),
            source=alert.source,
            generator_url=alert.generator_url,
        )
        self._state.alerts[alert.fingerprint] = record
        self._state.alert_bytes += alert_size(alert)
        self._record(
            TimelineKind.ALERT_NEW,
            f"{alert.status.value}: {alert.summary}",
            data={"fingerprint": alert.fingerprint, "severity": alert.severity.value},
        )
        if len(self._state.alerts) == 1:
            self._state.title = alert.summary
            self._state.service = alert.service or self._state.service
        return record

    def _room_for(self, alert: Alert) -> bool:
        """The overflow rule: past MAX_FINGERPRINTS or MAX_ALERT_STATE_BYTES, a new fingerprint is counted in
        `overflow_alerts` (and said once in the timeline), never kept, so the state stays within Temporal's limits."""
        if (
            len(self._state.alerts) < MAX_FINGERPRINTS
            and self._state.alert_bytes + alert_size(alert) <= MAX_ALERT_STATE_BYTES
        ):
            return True
        self._state.overflow_alerts += 1
        if self._state.overflow_alerts == 1:
            self._record(
                TimelineKind.ALERTS_OVERFLOWED,
                f"More than {len(self._state.alerts)} distinct alerts: further new ones are counted, not kept",
                data={"fingerprints": len(self._state.alerts), "bytes": self._state.alert_bytes},
            )
        return False

    def _apply_in_order(self, record: AlertRecord, alert: Alert) -> bool:
        """Apply one notification of a known alert by its own timestamps; True when a resolved alert fired again.

        Firing while firing is a repeat (Alertmanager's re-notification, a sender's retry). A firing that started
        no later than the known resolution, or a resolution of an episode older than the known one, arrived out
        of order: counted as a repeat, it changes nothing."""
        record.last_seen = max(record.last_seen, alert.received_at)
        if alert.status is AlertStatus.FIRING:
            resolved_at = record.ends_at or record.starts_at
            if record.status is AlertStatus.RESOLVED and alert.starts_at > resolved_at:
                self._track_status_change(record, alert.status, alert.summary)
                record.status, record.starts_at, record.ends_at = AlertStatus.FIRING, alert.starts_at, None
                record.count += 1
                record.annotations = alert.annotations
                return True
        elif record.status is AlertStatus.FIRING and alert.starts_at >= record.starts_at:
            self._track_status_change(record, alert.status, alert.summary)
            record.status, record.ends_at = AlertStatus.RESOLVED, _ended_at(alert)
            record.annotations = alert.annotations
            return False
        record.repeats += 1
        return False

    def _apply_by_arrival(self, record: AlertRecord, alert: Alert) -> bool:
        """How runs started before ALERT_ORDER_PATCH applied a notification (kept so their histories replay)."""
        started_firing = record.status is AlertStatus.RESOLVED and alert.status is AlertStatus.FIRING
        self._track_status_change(record, alert.status, alert.summary)
        record.count += 1
        record.last_seen = max(record.last_seen, alert.received_at)
        record.status = alert.status
        record.ends_at = alert.ends_at
        record.annotations = alert.annotations
        return started_firing

    def _still_there(self, alerts: list[Alert]) -> None:
        """A delivery seen before (a retry or a re-notification): known alerts were seen again, nothing more."""
        for alert in alerts:
            record = self._state.alerts.get(alert.fingerprint)
            if record is not None and alert.received_at > record.last_seen:
                record.last_seen = alert.received_at
                self._unsaved_alerts.add(alert.fingerprint)

    def _track_status_change(self, record: AlertRecord, status: AlertStatus, summary: str) -> None:
        if record.status is status:
            return
        kind = TimelineKind.ALERT_RESOLVED if status is AlertStatus.RESOLVED else TimelineKind.ALERT_REFIRED
        self._record(kind, f"{status.value}: {summary}", data={"fingerprint": record.fingerprint})

    @workflow.update(name="propose_remediation")
    def propose_remediation(self, proposal: RemediationProposal) -> PendingApproval:
        if self._state.status in FINAL_STATUSES:
            self._refuse(
                "propose", proposal.proposed_by, f"incident is {self._state.status.value}: nothing to remediate"
            )
        if self._state.pending_approval is not None:
            action = self._state.pending_approval.proposal.action
            self._refuse(
                "propose", proposal.proposed_by, f"'{action}' already awaits approval: approve or reject it first"
            )
        if self._state.status is IncidentStatus.REMEDIATING and workflow.patched(REMEDIATION_PATCH):
            self._refuse("propose", proposal.proposed_by, "an action is running or being verified: wait for it")
        return self._open_proposal(proposal)

    def _open_proposal(
        self,
        proposal: RemediationProposal,
        *,
        policy_rule: str | None = None,
        policy_reason: str = "",
        dry_run: bool = False,
    ) -> PendingApproval:
        pending = PendingApproval(
            proposal=proposal,
            requested_at=workflow.now(),
            proposal_id=self._state.next_seq,
            policy_rule=policy_rule,
            policy_reason=policy_reason,
            dry_run=dry_run,
        )
        self._state.pending_approval = pending
        self._record(
            TimelineKind.REMEDIATION_PROPOSED,
            f"{proposal.proposed_by} proposes '{proposal.action}'"
            + (" (dry run)" if dry_run else "")
            + (f" because {proposal.reason}" if proposal.proposed_by == VIGIL and proposal.reason else "")
            + ": awaiting approval",
            actor=proposal.proposed_by,
            data={
                "action": proposal.action,
                "params": proposal.params,
                "reason": proposal.reason,
                "proposal_id": pending.proposal_id,
                "evidence": proposal.evidence,
                "policy": policy_reason,
                "dry_run": dry_run,
            },
        )
        self._set_status(IncidentStatus.AWAITING_APPROVAL)
        return pending

    @workflow.update(name="approval")
    def approval(self, request: ApprovalRequest) -> ApprovalOutcome:
        pending = self._state.pending_approval
        if self._state.status is not IncidentStatus.AWAITING_APPROVAL or pending is None:
            self._refuse(
                request.decision.value, request.by, f"nothing awaits approval: incident is {self._state.status.value}"
            )
        if request.proposal_id is not None and request.proposal_id != pending.proposal_id:
            self._refuse(
                request.decision.value,
                request.by,
                f"proposal {request.proposal_id} was already decided; '{pending.proposal.action}' "
                f"(proposal {pending.proposal_id}) awaits approval now",
            )
        return self._decide(request)

    def _decide(self, request: ApprovalRequest) -> ApprovalOutcome:
        pending = self._state.pending_approval
        assert pending is not None
        approved = request.decision is Decision.APPROVE
        self._state.pending_approval = None
        self._record(
            TimelineKind.APPROVED if approved else TimelineKind.REJECTED,
            f"{request.by} {'approved' if approved else 'rejected'} '{pending.proposal.action}'"
            + (f": {request.reason}" if request.reason else ""),
            actor=request.by,
            data={"action": pending.proposal.action, "reason": request.reason, "proposal_id": pending.proposal_id},
        )
        if approved and workflow.patched(REMEDIATION_PATCH):
            self._state.actions.append(
                ActionRun(
                    proposal_id=pending.proposal_id,
                    action=pending.proposal.action,
                    params=pending.proposal.params,
                    approved_by=request.by,
                    approved_at=workflow.now(),
                )
            )
        self._set_status(IncidentStatus.REMEDIATING if approved else IncidentStatus.MONITORING)
        outcome = ApprovalOutcome(
            decision=request.decision,
            by=request.by,
            reason=request.reason,
            action=pending.proposal.action,
            status=self._state.status,
            decided_at=workflow.now(),
            proposal_id=pending.proposal_id,
        )
        self._state.decisions.append(outcome)
        return outcome

    @workflow.update(name="resolve")
    def resolve(self, request: ResolveRequest) -> IncidentState:
        if self._state.status in FINAL_STATUSES:
            self._refuse("resolve", request.by, f"incident is already {self._state.status.value}")
        self._resolve(request.by, request.reason or "resolved by hand")
        return self._state

    def _refuse(self, attempt: str, actor: str, why: str) -> NoReturn:
        """Refuse an update and keep the attempt in the timeline (who tried what, and why it was refused): the
        checks run in the handler, not a validator, because a validator's rejection leaves no trace."""
        self._record(
            TimelineKind.REFUSED, f"{actor} tried to {attempt}: refused, {why}", actor=actor, data={"attempt": attempt}
        )
        raise ApplicationError(why, type="Refused", non_retryable=True)

    @workflow.update(name="acknowledge")
    def acknowledge(self, request: AcknowledgeRequest) -> IncidentState:
        """Someone is on it: recorded with who and when, and an unanswered proposal escalates no further."""
        if self._state.status in FINAL_STATUSES:
            self._refuse("acknowledge", request.by, f"incident is already {self._state.status.value}")
        integrations = self._state.integrations
        if integrations.acknowledged_by is not None:
            self._refuse("acknowledge", request.by, f"already acknowledged by {integrations.acknowledged_by}")
        integrations.acknowledged_by = request.by
        integrations.acknowledged_at = workflow.now()
        self._record(
            TimelineKind.ACKNOWLEDGED,
            f"{request.by} acknowledged" + (f": {request.note}" if request.note else ""),
            actor=request.by,
        )
        self._set_details()
        return self._state

    @workflow.signal(name="code_change")
    def on_code_change(self, change: CodeChange) -> None:
        """A pull request naming the incident was merged: recorded once, whatever the webhook re-delivers."""
        integrations = self._state.integrations
        pr = change.pull_request
        if change.delivery_id in integrations.seen_deliveries or any(
            p.repository == pr.repository and p.number == pr.number for p in integrations.pull_requests
        ):
            return
        integrations.seen_deliveries = [
            *integrations.seen_deliveries[-(RECENT_DELIVERIES // 10 - 1) :],
            change.delivery_id,
        ]
        if len(integrations.pull_requests) >= MAX_PULL_REQUESTS:
            return
        integrations.pull_requests.append(pr)
        self._record(
            TimelineKind.CODE_CHANGE,
            f"Pull request {pr.repository}#{pr.number} merged"
            + (f" by {pr.merged_by}" if pr.merged_by else "")
            + f": {pr.title}",
            actor=pr.merged_by or "github",
            data={"repository": pr.repository, "number": pr.number, "url": pr.url},
        )

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
        attributes = [
            STATUS_ATTR.value_set(self._state.status.value),
            SEVERITY_ATTR.value_set(self._state.severity.value),
            SERVICE_ATTR.value_set(self._state.service or ""),
        ]
        if self._state.incident_id != workflow.info().workflow_id:  # not in runs started before OCCURRENCE_PATCH
            attributes.append(INCIDENT_ATTR.value_set(self._state.incident_id))
        workflow.upsert_search_attributes(attributes)
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
        lines.extend(_integration_lines(state))
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

        Changes with a timeline event (a new alert, a status change, a decision) are written at once. Changes
        without one (repeats of known alerts, "last seen") wait up to PERSIST_BATCH_SECONDS for more: under an
        alert storm that is one store write a second instead of one per signal, which leaves Temporal the time to
        take the signals themselves. Never cancelled mid-write: `_drain` asks it to stop once everything is saved."""
        while True:
            await workflow.wait_condition(lambda: self._has_unsaved() or self._stop_persisting)
            if not self._has_unsaved():
                return
            if not self._unsaved_events and not self._stop_persisting and workflow.patched(PERSIST_BATCH_PATCH):
                await self._wait(lambda: bool(self._unsaved_events) or self._stop_persisting, PERSIST_BATCH_SECONDS)
            await self._flush()

    async def _drain(self, persister: asyncio.Task[None], notifier: asyncio.Task[None] | None) -> None:
        """Before completing or continuing as new: let handlers finish, the plugins hear of the last changes (the
        close moves the ticket) and every change reach the store."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        if notifier is not None:
            self._stop_notifying = True
            await self._drain_notifier(notifier)
        self._stop_persisting = True
        await persister

    async def _drain_notifier(self, notifier: asyncio.Task[None]) -> None:
        """Let the plugins hear of the last changes, for at most the policy's drain time: with no integrations
        worker (or Slack down for long) the incident still closes, and the timeline says what was not told. A
        continue-as-new loses nothing: the next run tells what this one did not."""
        try:
            await workflow.wait_condition(notifier.done, timeout=timedelta(seconds=self._policy.notify_drain_seconds))
        except TimeoutError:
            notifier.cancel()
            with contextlib.suppress(asyncio.CancelledError, ActivityError):
                await notifier
            self._record(
                TimelineKind.INTEGRATION,
                f"Notifications still in flight after {self._policy.notify_drain_seconds:g}s were abandoned: "
                "is a vigil-integrations worker running?",
                data={"failed": True},
            )
            return
        await notifier

    def _has_unsaved(self) -> bool:
        return self._row_dirty or bool(self._unsaved_alerts) or bool(self._unsaved_events)

    async def _flush(self) -> None:
        alerts = [self._state.alerts[fp].model_copy() for fp in sorted(self._unsaved_alerts)]
        events = self._unsaved_events
        self._unsaved_alerts, self._unsaved_events, self._row_dirty = set(), [], False
        data = PersistIncidentInput(
            incident=self._row(), alerts=alerts, events=events, generation=self._state.generation
        )
        try:
            await workflow.execute_activity(
                "persist_incident",
                data,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PERSIST_RETRY,
                summary=f"store: {self._state.status.value}, {len(alerts)} alert(s), {len(events)} event(s)",
            )
        except ActivityError as exc:  # refused data (never an outage: that is retried); the workflow goes on
            self._record(TimelineKind.STATUS, f"The store refused a write: {_cause(exc)}")

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
            alert_count=state.alert_occurrences,
            fingerprint_count=len(state.alerts),
        )

    # ---- continue-as-new -------------------------------------------------------------------------------------

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested() or info.get_current_history_length() > self._policy.max_history_events
        )


def _integration_lines(state: IncidentState) -> list[str]:
    integrations = state.integrations
    lines = []
    if integrations.acknowledged_by:
        lines.append(f"acknowledged by {integrations.acknowledged_by}")
    if integrations.notifier is not None:
        lines.append(f"Slack: {integrations.notifier.permalink or integrations.notifier.ts}")
    if integrations.ticket is not None:
        lines.append(f"ticket: [{integrations.ticket.key}]({integrations.ticket.url})")
    if integrations.code_host is not None:
        code = integrations.code_host
        lines.append(f"GitHub: [{code.repository}#{code.number}]({code.url})")
    return lines


def _cause(exc: ActivityError) -> str:
    cause = exc.cause
    while cause is not None and cause.__cause__ is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    return str(cause or exc)[:500]


def occurrence_id(group_id: str, opening_run_id: str) -> str:
    """The incident id of one occurrence of a group's incident: the group's workflow id plus a tag of the run
    that opened it, so an incident that closed keeps its id, record and timeline when the group fires again."""
    return f"{group_id}-{opening_run_id.replace('-', '')[:8]}"


def _shown(measurement: Measurement) -> str:
    return f"last value {measurement.value:g}" if measurement.value is not None else measurement.detail


def _ended_at(alert: Alert) -> datetime | None:
    """When a resolved alert ended: its own endsAt, else when the resolution arrived."""
    if alert.status is AlertStatus.RESOLVED:
        return alert.ends_at or alert.received_at
    return alert.ends_at
