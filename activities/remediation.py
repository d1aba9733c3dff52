"""Remediation activities of the integrations worker: plan, run one action, measure recovery.

The workflow names an action and its parameters; everything is checked again here against the catalogue and
the policy loaded at worker start. A run is keyed by incident + proposal (+ rollback) in `action_runs`, so a
retried activity never runs a non-idempotent action twice: a finished key returns its stored result, a key
left 'running' by a dead attempt is run again only when the action is idempotent, else reported UNKNOWN."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from temporalio import activity

from vigil.remediation.actions import Action
from vigil.remediation.catalogue import Catalogue
from vigil.remediation.errors import BindingError
from vigil.remediation.execution import Execution, execute, redact
from vigil.remediation.models import (
    ActionOutcome,
    ActionResult,
    MeasureInput,
    Measurement,
    PlanInput,
    RemediationPlan,
    RunActionInput,
    VerificationSpec,
)
from vigil.remediation.parameters import Parameter, bind, coerce, shown
from vigil.remediation.planning import plan
from vigil.remediation.policy import Policy, decide
from vigil.remediation.verification import measure, verification_spec
from vigil.settings import Settings
from vigil.store.database import ACTION_RUN_RUNNING, ActionRun, Store

log = logging.getLogger("vigil.remediation")

HEARTBEAT_SECONDS = 2.0
RUNS_METRIC = "vigil_remediation_runs_total"


@dataclass(frozen=True)
class _Parameters:
    parameters: Mapping[str, Parameter]


def _verification(action: Action, params: dict[str, str]) -> VerificationSpec | None:
    """None when stored parameters no longer fit the action (its file changed since the run)."""
    try:
        return verification_spec(action, params)
    except KeyError:
        return None


class Refused(Exception):
    """The request is outside the catalogue's terms; the message says why."""


class RemediationActivities:
    def __init__(self, store: Store, catalogue: Catalogue, policy: Policy, settings: Settings) -> None:
        self._store = store
        self._catalogue = catalogue
        self._policy = policy
        self._settings = settings

    @activity.defn(name="plan_remediation")
    async def plan_remediation(self, data: PlanInput) -> RemediationPlan:
        return plan(self._catalogue, self._policy, data)

    @activity.defn(name="measure_recovery")
    async def measure_recovery(self, data: MeasureInput) -> Measurement:
        base_url = self._settings.prometheus_query_url
        if base_url is None:
            return Measurement(value=None, holds=False, detail="no Prometheus configured")
        return await measure(base_url, data.promql, data.condition)

    @activity.defn(name="run_remediation_action")
    async def run_remediation_action(self, data: RunActionInput) -> ActionResult:
        """Run `data.action` (with `rollback` it is the rollback action itself) once per `data.key`. What the
        catalogue or policy refuses, and an unknown action, come back as outcomes, not exceptions; PostgreSQL
        being down raises (the activity is retried)."""
        action = self._catalogue.actions.get(data.action)
        if action is None:
            return self._counted(
                ActionResult(
                    action=data.action,
                    key=data.key,
                    outcome=ActionOutcome.NOT_IN_CATALOGUE,
                    output=redact(f"no action {data.action!r} in the catalogue", self._settings),
                    executed=False,
                )
            )
        try:
            params = self._parameters(action, data)
            decision = decide(self._policy, action, data.labels, data.severity, data.confidence)
            if decision.mode == "never":
                raise Refused(f"policy: {decision.reason}")
        except Refused as exc:
            refused = self._result(action, data, ActionOutcome.REFUSED, str(exc), {}, executed=False, verify=False)
            return self._counted(refused)
        run, claimed = await self._store.claim_action_run(
            data.key,
            incident_id=data.incident_id,
            proposal_id=data.proposal_id,
            action=action.name,
            params=params,
            dry_run=decision.dry_run,
        )
        if not claimed and run.status == ACTION_RUN_RUNNING and (action.idempotent or run.dry_run):
            restarted = await self._store.restart_action_run(data.key)  # None: another attempt just finished it
            run, claimed = (restarted, True) if restarted else (await self._store.action_run(data.key) or run, False)
        if not claimed:
            if run.status == ACTION_RUN_RUNNING:
                return self._counted(await self._unknown(action, data, run))
            log.info("remediation %s key=%s: already %s, not run again", action.name, data.key, run.status)
            return self._stored(action, data, run)
        execution = await self._execute_with_heartbeat(action, run.params, dry_run=run.dry_run)
        finished = await self._store.finish_action_run(data.key, execution.outcome.value, execution.output)
        return self._counted(self._stored(action, data, finished or run, executed=True))

    def _parameters(self, action: Action, data: RunActionInput) -> dict[str, str]:
        """The workflow's parameters checked against the schema; the others bound from labels and component."""
        problems = []
        given: dict[str, str] = {}
        for name, raw in data.params.items():
            parameter = action.parameters.get(name)
            if parameter is None:
                problems.append(f"{shown(name)}: not a parameter of {action.name}")
                continue
            try:
                given[name] = coerce(parameter, raw)
            except ValueError as exc:
                problems.append(f"{name}: {shown(raw)} refused: {exc}")
        if problems:
            raise Refused("parameters refused: " + "; ".join(problems))
        missing = _Parameters({name: p for name, p in action.parameters.items() if name not in given})
        try:
            bound = bind(missing, data.labels, data.component)
        except BindingError as exc:
            raise Refused(str(exc)) from None
        merged = {**given, **bound}
        return {name: merged[name] for name in action.parameters if name in merged}

    async def _execute_with_heartbeat(self, action: Action, params: dict[str, str], *, dry_run: bool) -> Execution:
        """The executor, heartbeating every HEARTBEAT_SECONDS meanwhile: a killed worker shows as a heartbeat
        timeout, and a cancelled activity cancels the executor (a process group is killed)."""

        async def beat() -> None:
            while True:
                activity.heartbeat(f"running {action.name}")
                await asyncio.sleep(HEARTBEAT_SECONDS)

        beating = asyncio.create_task(beat())
        try:
            return await execute(action, params, self._settings, dry_run=dry_run)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    async def _unknown(self, action: Action, data: RunActionInput, run: ActionRun) -> ActionResult:
        """A non-idempotent run an earlier attempt started and never finished: marked 'unknown', not run again."""
        output = (
            f"an earlier attempt started this non-idempotent action at {run.started_at.isoformat()} and never "
            "reported; not run again: check its effect by hand"
        )
        marked = await self._store.finish_action_run(data.key, ActionOutcome.UNKNOWN.value, output, only_running=True)
        return self._stored(action, data, marked or await self._store.action_run(data.key) or run)

    def _stored(self, action: Action, data: RunActionInput, run: ActionRun, *, executed: bool = False) -> ActionResult:
        result = self._result(action, data, ActionOutcome(run.status), run.output, run.params, executed=executed)
        return result.model_copy(
            update={"dry_run": run.dry_run, "started_at": run.started_at, "finished_at": run.finished_at}
        )

    def _result(
        self,
        action: Action,
        data: RunActionInput,
        outcome: ActionOutcome,
        output: str,
        params: dict[str, str],
        *,
        executed: bool,
        verify: bool = True,
    ) -> ActionResult:
        return ActionResult(
            action=action.name,
            key=data.key,
            outcome=outcome,
            output=redact(output, self._settings),
            params=params,
            idempotent=action.idempotent,
            executed=executed,
            verification=_verification(action, params) if verify else None,
            rollback=action.rollback,
        )

    def _counted(self, result: ActionResult) -> ActionResult:
        """Log the run in one line (parameters are schema-confined, outputs redacted; no secret) and count it."""
        log.info(
            "remediation %s key=%s outcome=%s executed=%s dry_run=%s params=%s",
            result.action,
            result.key,
            result.outcome.value,
            result.executed,
            result.dry_run,
            result.params,
        )
        counter = activity.metric_meter().create_counter(RUNS_METRIC, "Remediation action runs by outcome.")
        counter.add(1, {"action": result.action, "outcome": result.outcome.value})
        return result
