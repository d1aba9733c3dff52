"""Diagnosis: the deterministic RCA from the analysis report and retrieval, and the LLM RCA built on it.

The deterministic RCA always exists first; the LLM one replaces it only when the model answered in the schema
and its root cause cites evidence that exists. Otherwise the deterministic one stands, with `llm_error` saying
why.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from vigil.analysis.fingerprints import truncate
from vigil.analysis.models import Category
from vigil.analysis.report import AnalysisReport
from vigil.knowledge.models import KnowledgeHit
from vigil.rca.confidence import detector_support, evidence_confidence, llm_confidence
from vigil.rca.evidence import evidence_items, knowledge_id
from vigil.rca.llm import LLMError, ask_structured
from vigil.rca.models import Claim, Hypothesis, LLMAnswer, RCAAction, RCARootCause, RootCauseAnalysis
from vigil.rca.prompt import answer_schema, build_messages
from vigil.rca.verify import verify_answer
from vigil.remediation.links import runbook_for_url, runbook_links
from vigil.settings import Settings

MAX_HYPOTHESES = 4
MAX_CLAIMS = 6
NO_LLM = "no LLM configured (LLM_BASE_URL is unset)"
LINKED_RUNBOOKS = 3
"""Retrieved runbooks, by rank, whose linked catalogue actions are recommended."""


class AlertLike(Protocol):
    """What linking needs of an alert: an `AlertRecord` of the incident, or an alert of an analysis bundle."""

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def annotations(self) -> Mapping[str, str]: ...


def _hypotheses(report: AnalysisReport, support: dict[str, float]) -> list[Hypothesis]:
    top = Hypothesis(
        summary=report.root_cause.summary,
        component=report.root_cause.component,
        category=report.category,
        score=evidence_confidence(report.category.value, report.probabilities, support),
        evidence=list(dict.fromkeys(e for a in report.recommended_actions for e in a.evidence))[:6]
        or [f.id for f in report.findings[:3]],
    )
    others: list[Hypothesis] = []
    for category in Category:
        if category is report.category:
            continue
        mine = [f for f in report.findings if f.category is category]
        if not mine:
            continue
        lead = mine[0]
        component = (lead.services or report.services or ["unknown"])[0]
        others.append(
            Hypothesis(
                summary=truncate(f"{category.value}: {lead.title} ({lead.count} events) in {component}", 400),
                component=component,
                category=category,
                score=evidence_confidence(category.value, report.probabilities, support),
                evidence=[f.id for f in mine[:4]],
            )
        )
    others.sort(key=lambda h: -h.score)
    ranked: dict[tuple[str, Category], Hypothesis] = {}
    for hypothesis in [top, *_other_suspects(report, top.score), *others]:
        ranked.setdefault((hypothesis.component.split("/")[0], hypothesis.category), hypothesis)
    return list(ranked.values())[:MAX_HYPOTHESES]


def _other_suspects(report: AnalysisReport, top_score: float) -> list[Hypothesis]:
    """The runner-up suspects of the localisation, scored relative to the top one."""
    if len(report.suspects) < 2 or report.suspects[0].score <= 0:
        return []
    known = {e.id for e in report.evidence}
    out = []
    for suspect in report.suspects[1:3]:
        cites = [e for e in suspect.evidence if e in known][:6]
        if not cites:
            continue
        out.append(
            Hypothesis(
                summary=truncate(f"{suspect.component}: {'; '.join(suspect.reasons)}", 400),
                component=suspect.component,
                category=suspect.category or report.category,
                score=round(top_score * min(suspect.score / report.suspects[0].score, 1.0), 4),
                evidence=cites,
            )
        )
    return out


def deterministic_rca(
    report: AnalysisReport,
    runbooks: Sequence[KnowledgeHit] = (),
    incidents: Sequence[KnowledgeHit] = (),
    *,
    llm_error: str | None = NO_LLM,
) -> RootCauseAnalysis:
    """Ranked hypotheses from detectors, anomalies, the classifier and retrieval, each citing evidence."""
    support = detector_support(report.findings)
    items = evidence_items(report, runbooks, incidents)
    hypotheses = _hypotheses(report, support)
    top = hypotheses[0]
    claims = [
        Claim(
            statement=truncate(f"{f.title}: {f.count} events in {', '.join(f.services) or 'the window'}", 300),
            evidence=[f.id],
        )
        for f in report.findings[:MAX_CLAIMS]
    ]
    known = {i.id for i in items}
    actions = [
        RCAAction(action=a.action, evidence=[e for e in a.evidence if e in known]) for a in report.recommended_actions
    ]
    for n, hit in enumerate(runbooks[:2], start=1):
        actions.append(
            RCAAction(action=f"Follow the runbook '{hit.title}'", evidence=[knowledge_id(hit, n)], runbook=hit.source)
        )
    return RootCauseAnalysis(
        source="deterministic",
        llm_error=llm_error,
        category=report.category,
        confidence=top.score,
        severity=report.severity,
        code_related=report.code_related,
        root_cause=RCARootCause(
            summary=top.summary, component=top.component, evidence=top.evidence, chain=report.root_cause.chain
        ),
        hypotheses=hypotheses,
        claims=claims,
        recommended_actions=[a for a in actions if a.evidence],
        evidence=items,
        runbooks=list(runbooks),
        similar_incidents=list(incidents),
        probabilities=report.probabilities,
        support=support,
    )


def link_catalogue_actions(
    rca: RootCauseAnalysis,
    alerts: Sequence[AlertLike],
    folder: Path,
    *,
    known_actions: Collection[str] | None = None,
) -> RootCauseAnalysis:
    """`rca` with the catalogue actions that runbooks link put first among its recommended actions: those linked
    from the runbooks of the alerts' `runbook_url` annotations (the operator's explicit choice), then those linked
    from the retrieved runbooks in rank order (top `LINKED_RUNBOOKS`); each action once. Links come only from the
    runbook files in `folder`, never from log, alert or model text. With `known_actions`, links to actions that
    are not in the catalogue are left out.

    Each one cites evidence the RCA has: the alert's evidence item (`alert:<name>`) for the alert's runbook, else
    the runbook's `runbook:<n>` item when it was retrieved; a linked action with neither is kept without
    evidence."""
    links = runbook_links(folder)
    known = {item.id for item in rca.evidence}
    retrieved: dict[str, str] = {}
    for n, hit in enumerate(rca.runbooks, start=1):
        if hit.collection == "runbooks" and knowledge_id(hit, n) in known:
            retrieved.setdefault(hit.source, knowledge_id(hit, n))
    linked: dict[str, RCAAction] = {}

    def add(source: str, evidence: list[str], why: str) -> None:
        for name in links.get(source, []):
            if name in linked or (known_actions is not None and name not in known_actions):
                continue
            linked[name] = RCAAction(
                action=f"Run catalogue action `{name}` (linked from runbook {source}{why})",
                evidence=evidence,
                runbook=source,
                catalogue_action=name,
            )

    for alert in alerts:
        url = alert.annotations.get("runbook_url")
        source = runbook_for_url(url, folder) if url else None
        if source is None:
            continue
        name = alert.labels.get("alertname", "alert")
        alert_id = f"alert:{name}"
        evidence = [alert_id] if alert_id in known else [retrieved[source]] if source in retrieved else []
        add(source, evidence, f", the runbook of alert {name}")
    for hit in rca.runbooks[:LINKED_RUNBOOKS]:
        if hit.source in retrieved:
            add(hit.source, [retrieved[hit.source]], "")
    if not linked:
        return rca
    earlier = [a for a in rca.recommended_actions if a.catalogue_action and a.catalogue_action not in linked]
    others = [a for a in rca.recommended_actions if not a.catalogue_action]
    return rca.model_copy(update={"recommended_actions": [*linked.values(), *earlier, *others]})


def catalogue_actions(rca: RootCauseAnalysis) -> list[RCAAction]:
    """The recommended actions of `rca` that name a catalogue action (set by `link_catalogue_actions` only)."""
    return [a for a in rca.recommended_actions if a.catalogue_action]


def _hint(det: RootCauseAnalysis) -> str:
    ranked = sorted(det.probabilities.items(), key=lambda kv: -kv[1])[:3]
    probs = ", ".join(f"{c} {p:.2f}" for c, p in ranked)
    hint = f"category {det.category.value} (classifier: {probs}); top hypothesis: {det.root_cause.summary}"
    if det.root_cause.chain:
        hint += "; chain from the alert: " + " -> ".join(h.component for h in det.root_cause.chain)
    suspects = [h.component for h in det.hypotheses]
    if suspects:
        hint += "; suspects in order: " + ", ".join(dict.fromkeys(suspects))
    return hint


async def llm_rca(
    settings: Settings, det: RootCauseAnalysis, incident: str, *, constrain_ids: bool = True
) -> RootCauseAnalysis:
    """Ask the LLM for the RCA over the deterministic one's evidence; raises `LLMError` when there is no usable
    answer. Claims citing unknown ids are dropped and listed in `dropped`."""
    budget = settings.llm_context_tokens - settings.llm_max_tokens
    messages, kept = build_messages(det.evidence, incident=incident, analysis_hint=_hint(det), budget_tokens=budget)
    if not kept:
        raise LLMError(f"no evidence item fits a prompt budget of {budget} tokens", retryable=False)
    ids = [i.id for i in kept]
    schema = answer_schema(ids if constrain_ids else None)
    answer = await ask_structured(settings, messages, LLMAnswer, schema, name="vigil_rca")
    runbook_sources = {knowledge_id(hit, n): hit.source for n, hit in enumerate(det.runbooks, start=1)}
    verified = verify_answer(answer, set(ids), runbook_sources)
    if verified.root_cause is None:
        return det.model_copy(
            update={
                "llm_error": "the LLM's root cause cited no evidence that exists; deterministic RCA kept",
                "dropped": verified.dropped,
                "model": settings.llm_model,
            }
        )
    category = answer.root_cause.category
    root_cause = verified.root_cause
    if not root_cause.chain and root_cause.component == det.root_cause.component:
        root_cause = root_cause.model_copy(update={"chain": det.root_cause.chain})  # the same suspect: its chain
    return RootCauseAnalysis(
        source="llm",
        model=settings.llm_model,
        category=category,
        confidence=llm_confidence(
            category.value,
            det.probabilities,
            det.support,
            kept_fraction=verified.kept_fraction,
            self_reported=answer.confidence / 100,
        ),
        severity=det.severity,
        code_related=det.code_related,
        root_cause=root_cause,
        hypotheses=det.hypotheses,
        claims=verified.claims,
        # The runbook-linked catalogue actions stay first; the model's own actions never name one (the verifier
        # builds them without `catalogue_action`), whatever their text says.
        recommended_actions=[*catalogue_actions(det), *verified.actions],
        dropped=verified.dropped,
        evidence=det.evidence,
        runbooks=det.runbooks,
        similar_incidents=det.similar_incidents,
        probabilities=det.probabilities,
        support=det.support,
    )
