"""Which action to propose: the first of the diagnosis's candidates that the catalogue has, whose parameters bind
from the alert's labels and the diagnosed component, and that the policy does not forbid. Pure."""

from __future__ import annotations

from vigil.remediation.catalogue import Catalogue
from vigil.remediation.errors import BindingError
from vigil.remediation.models import PlanInput, ProposedAction, RemediationPlan
from vigil.remediation.parameters import bind
from vigil.remediation.policy import Policy, decide


def plan(catalogue: Catalogue, policy: Policy, data: PlanInput) -> RemediationPlan:
    """Walk `data.candidates` in order, each once; every candidate passed over before the chosen one is listed in
    `skipped` as 'action: why' (already tried, not in the catalogue, parameters do not bind, policy says never).
    No candidate passes: `chosen` is None."""
    skipped: list[str] = []
    seen: set[str] = set()
    excluded = set(data.exclude)
    for name in data.candidates:
        if name in seen:
            continue
        seen.add(name)
        if name in excluded:
            skipped.append(f"{name}: already tried in this incident")
            continue
        action = catalogue.actions.get(name)
        if action is None:
            skipped.append(f"{name}: not in the catalogue")
            continue
        try:
            params = bind(action, data.labels, data.component)
        except BindingError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        decision = decide(policy, action, data.labels, data.severity, data.confidence)
        if decision.mode == "never":
            skipped.append(f"{name}: {decision.reason}")
            continue
        chosen = ProposedAction(
            action=name,
            description=action.description,
            params=params,
            mode=decision.mode,
            rule=decision.rule_name,
            policy_reason=decision.reason,
            dry_run=decision.dry_run,
        )
        return RemediationPlan(chosen=chosen, skipped=skipped)
    return RemediationPlan(chosen=None, skipped=skipped)
