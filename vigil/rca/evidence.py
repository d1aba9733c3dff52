"""Numbered evidence items for the RCA: the analysis report's evidence plus retrieved runbooks and incidents.

Items keep the analysis engine's stable ids (`detector:…`, `error:…`, `deploy:…`, `metric:…`, …); runbook
passages become `runbook:<n>` and past incidents `incident:<id>`, so that actions can cite the runbook they
follow. Order is relevance: ranked suspects and the relations that name them (`localise`), detector findings, errors,
deploys, anomalies and metrics, templates, alerts, then knowledge. When a limit (items, prompt tokens) bites, it is
shared between kinds (`share_by_kind`), so many suspects or deploys never crowd the log templates out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TypeVar

from vigil.analysis.fingerprints import truncate
from vigil.analysis.models import Evidence
from vigil.analysis.report import AnalysisReport
from vigil.knowledge.models import KnowledgeHit
from vigil.rca.models import EvidenceItem

MAX_ITEMS = 40
DETAIL_CHARS = 600
KNOWLEDGE_CHARS = 900
T = TypeVar("T")
_DETAIL_KEYS = (
    "category",
    "severity",
    "frame",
    "minutes_before_onset",
    "author",
    "description",
    "score",
    "cites",
    "measures",
)
_KIND_ORDER = {
    "suspect": 0,
    "relation": 1,
    "detector": 2,
    "error": 3,
    "deploy": 4,
    "anomaly": 5,
    "metric": 6,
    "log-template": 7,
    "alert": 8,
}


def _detail(item: Evidence) -> str:
    parts: list[str] = []
    if item.count is not None:
        parts.append(f"count={item.count}")
    if item.first_seen is not None:
        parts.append(f"first_seen={item.first_seen.isoformat()}")
    if item.services:
        parts.append("services=" + ",".join(item.services[:5]))
    for key in _DETAIL_KEYS:
        value = item.data.get(key)
        if value not in (None, "", []):
            parts.append(f"{key}={value}")
    samples = item.data.get("samples") or ([item.data["sample"]] if item.data.get("sample") else [])
    text = " ".join(parts)
    if samples:
        text += "\nsamples:\n" + "\n".join(truncate(str(s), 240) for s in samples[:3])
    return truncate(text, DETAIL_CHARS)


def share_by_kind(items: Sequence[T], kind_of: Callable[[T], str], fits: Callable[[T], bool]) -> list[T]:
    """The items `fits` accepts, offered one kind at a time (the first of each kind, then the second of each, …)
    and returned in their given order. `fits` keeps the limit's state: it accepts an item by counting it in."""
    queues: dict[str, deque[int]] = {}
    for index, item in enumerate(items):
        queues.setdefault(kind_of(item), deque()).append(index)
    chosen: set[int] = set()
    while queues:
        for kind in list(queues):
            index = queues[kind].popleft()
            if fits(items[index]):
                chosen.add(index)
            if not queues[kind]:
                del queues[kind]
    return [item for index, item in enumerate(items) if index in chosen]


def knowledge_id(hit: KnowledgeHit, index: int) -> str:
    if hit.collection == "incidents":
        return f"incident:{hit.source}"
    return f"runbook:{index}"


def evidence_items(
    report: AnalysisReport,
    runbooks: Sequence[KnowledgeHit] = (),
    incidents: Sequence[KnowledgeHit] = (),
    limit: int = MAX_ITEMS,
) -> list[EvidenceItem]:
    ordered = sorted(report.evidence, key=lambda e: _KIND_ORDER.get(e.kind, len(_KIND_ORDER)))
    room = [max(limit - len(runbooks) - len(incidents), 0)]

    def counted(_: Evidence) -> bool:
        room[0] -= 1
        return room[0] >= 0

    items = [
        EvidenceItem(id=e.id, kind=e.kind, title=truncate(e.title, 300), detail=_detail(e))
        for e in share_by_kind(ordered, lambda e: e.kind, counted)
    ]
    for n, hit in enumerate(runbooks, start=1):
        items.append(
            EvidenceItem(
                id=knowledge_id(hit, n),
                kind="runbook",
                title=truncate(f"{hit.title} ({hit.source})", 300),
                detail=truncate(hit.text, KNOWLEDGE_CHARS),
            )
        )
    for hit in incidents:
        items.append(
            EvidenceItem(
                id=knowledge_id(hit, 0),
                kind="incident",
                title=truncate(hit.title, 300),
                detail=truncate(hit.text, KNOWLEDGE_CHARS),
            )
        )
    return items


def estimate_tokens(text: str) -> int:
    """A conservative token estimate (about 3.5 characters per token for English and log text); the budget
    only has to keep the prompt inside the model's context, not to be exact."""
    return int(len(text) / 3.5) + 1
