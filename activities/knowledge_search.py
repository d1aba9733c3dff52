"""`search_knowledge` on `vigil-ml`: the hybrid search of runbooks and past incidents for the console, with past
incidents re-ranked and annotated by responders' verdicts on their diagnoses (vigil.feedback)."""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity

from vigil.feedback import rerank_similar
from vigil.knowledge.models import INCIDENTS, KnowledgeHit, KnowledgeSearchQuery, KnowledgeSearchResult
from vigil.rca.retrieval import IncidentKnowledge
from vigil.store.database import Store

log = logging.getLogger("vigil.knowledge.search")


class KnowledgeSearchActivities:
    def __init__(self, knowledge: IncidentKnowledge, store: Store) -> None:
        self._knowledge = knowledge
        self._store = store

    def _search(self, query: KnowledgeSearchQuery) -> list[list[KnowledgeHit]]:
        kb = self._knowledge.base()
        return [kb.search(query.query, k=query.k, collection=collection) for collection in query.collections]

    @activity.defn(name="search_knowledge")
    async def search_knowledge(self, query: KnowledgeSearchQuery) -> KnowledgeSearchResult:
        hits: list[KnowledgeHit] = []
        for collection, found in zip(query.collections, await asyncio.to_thread(self._search, query), strict=True):
            if collection == INCIDENTS and found:
                try:
                    latest = await self._store.latest_feedback([hit.source for hit in found])
                except Exception as exc:  # verdicts are an aid: without the store, the search order stands
                    log.warning("incident hits not re-ranked by feedback: %s", exc)
                    latest = {}
                found = rerank_similar(found, latest)
            hits += found
        activity.metric_meter().create_counter(
            "vigil_knowledge_searches_total", "Knowledge searches answered for the console."
        ).add(1)
        return KnowledgeSearchResult(hits=hits)
