"""The citation verifier: every statement must cite evidence that exists, or it is dropped and recorded."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from vigil.analysis.models import ChainHop
from vigil.rca.models import Claim, DroppedClaim, LLMAnswer, RCAAction, RCARootCause


@dataclass
class Verified:
    root_cause: RCARootCause | None
    claims: list[Claim] = field(default_factory=list)
    actions: list[RCAAction] = field(default_factory=list)
    dropped: list[DroppedClaim] = field(default_factory=list)
    checked: int = 0

    @property
    def kept_fraction(self) -> float:
        kept = len(self.claims) + len(self.actions) + (1 if self.root_cause else 0)
        return kept / self.checked if self.checked else 0.0


def _unknown(ids: Iterable[str], known: set[str]) -> list[str]:
    return [i for i in dict.fromkeys(ids) if i not in known]


def verify_answer(answer: LLMAnswer, known: set[str], runbook_sources: dict[str, str]) -> Verified:
    """Keep what cites only known ids (and cites something); the root cause keeps its valid citations and is
    rejected only when none is valid. `runbook_sources` maps `runbook:<n>` ids to their files, so an action
    citing a runbook links to it."""
    out = Verified(root_cause=None, checked=1 + len(answer.claims) + len(answer.recommended_actions))
    rc = answer.root_cause
    bad = _unknown(rc.evidence, known)
    good = [i for i in dict.fromkeys(rc.evidence) if i in known]
    if bad or not good:
        out.dropped.append(DroppedClaim(where="root_cause", text=rc.summary, unknown_ids=bad))
    if good:
        chain = []
        for hop in rc.chain:
            hop_bad = _unknown(hop.evidence, known)
            if hop_bad:
                out.dropped.append(
                    DroppedClaim(where="chain", text=f"{hop.component}: {hop.relation}", unknown_ids=hop_bad)
                )
                continue
            chain.append(
                ChainHop(component=hop.component, relation=hop.relation, evidence=list(dict.fromkeys(hop.evidence)))
            )
        out.root_cause = RCARootCause(summary=rc.summary, component=rc.component, evidence=good, chain=chain)
    for claim in answer.claims:
        bad = _unknown(claim.evidence, known)
        if bad or not claim.evidence:
            out.dropped.append(DroppedClaim(where="claim", text=claim.statement, unknown_ids=bad))
        else:
            out.claims.append(Claim(statement=claim.statement, evidence=list(dict.fromkeys(claim.evidence))))
    for action in answer.recommended_actions:
        bad = _unknown(action.evidence, known)
        if bad or not action.evidence:
            out.dropped.append(DroppedClaim(where="action", text=action.action, unknown_ids=bad))
            continue
        cites = list(dict.fromkeys(action.evidence))
        runbook = next((runbook_sources[c] for c in cites if c in runbook_sources), None)
        out.actions.append(RCAAction(action=action.action, evidence=cites, runbook=runbook))
    return out
