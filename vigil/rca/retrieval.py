"""Retrieval for an incident: runbook passages and similar resolved incidents, from the alerts and the top
evidence.

Two runbook queries run in one batch, one from the alert (its name split from CamelCase, summary, description,
where it fires) and one from what the analysis found; their hits are interleaved, alert first, one passage per
runbook, so the top three are three different runbooks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from vigil.analysis.report import AnalysisReport
from vigil.knowledge.base import SHIPPED_RUNBOOKS, KnowledgeBase
from vigil.knowledge.models import KnowledgeHit
from vigil.knowledge.query import query_for_alert
from vigil.models import AlertRecord, AlertStatus
from vigil.settings import Settings

log = logging.getLogger("vigil.retrieval")
RUNBOOK_HITS = 3
INCIDENT_HITS = 3
INCIDENT_CANDIDATES = 2 * INCIDENT_HITS
"""Similar incidents retrieved, of which responders' verdicts (vigil.feedback.rerank_similar) pick `INCIDENT_HITS`."""


def runbooks_dir(settings: Settings) -> Path:
    return settings.runbooks_dir or SHIPPED_RUNBOOKS


def alert_query(alerts: Sequence[AlertRecord]) -> str:
    firing = [a for a in alerts if a.status is AlertStatus.FIRING] or list(alerts)
    if not firing:
        return ""
    lead = firing[0]
    return query_for_alert(lead.labels, lead.annotations)


def evidence_query(report: AnalysisReport) -> str:
    titles = [f.title for f in report.findings[:3]] or [e.title for e in report.evidence if e.kind == "error"][:2]
    return f"{report.category.value} " + " ".join(titles)


def _interleave(lists: Sequence[Sequence[KnowledgeHit]], k: int) -> list[KnowledgeHit]:
    out: list[KnowledgeHit] = []
    seen: set[str] = set()
    for rank in range(max((len(hits) for hits in lists), default=0)):
        for hits in lists:
            if rank < len(hits) and hits[rank].source not in seen:
                seen.add(hits[rank].source)
                out.append(hits[rank])
    return out[:k]


class IncidentKnowledge:
    """The ml worker's knowledge base, opened on first use (the embedding model takes seconds to load) and with
    the runbooks indexed then; unchanged runbook files are skipped, so a restart costs no re-embedding."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._kb: KnowledgeBase | None = None
        self._lock = threading.Lock()

    def base(self) -> KnowledgeBase:
        with self._lock:
            if self._kb is None:
                kb = KnowledgeBase.open(self._settings)
                folder = runbooks_dir(self._settings)
                if folder.is_dir():
                    stats = kb.index_paths([folder])
                    log.info("runbooks from %s indexed: %s", folder, stats)
                else:
                    log.warning("no runbooks folder at %s: retrieval finds past incidents only", folder)
                self._kb = kb
            return self._kb

    def retrieve(
        self, alerts: Sequence[AlertRecord], report: AnalysisReport, *, incident_hits: int = INCIDENT_HITS
    ) -> tuple[list[KnowledgeHit], list[KnowledgeHit]]:
        kb = self.base()
        queries = [q for q in (alert_query(alerts), evidence_query(report)) if q.strip()]
        runbooks = _interleave(kb.search_batch(queries, k=RUNBOOK_HITS * 2), RUNBOOK_HITS) if queries else []
        incident_query = " ".join([*queries[:1], report.root_cause.summary])
        incidents = kb.search(incident_query, k=incident_hits, collection="incidents")
        return runbooks, incidents

    def close(self) -> None:
        with self._lock:
            if self._kb is not None:
                self._kb.close()
                self._kb = None
