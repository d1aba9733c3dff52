"""`KnowledgeSearchWorkflow`: the console's Knowledge search, run by the ml worker, which owns the knowledge base
(Qdrant local mode allows one process per path; see workflows/docqa.py)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from vigil.knowledge.models import KnowledgeSearchQuery, KnowledgeSearchResult
    from vigil.settings import ML_TASK_QUEUE


@workflow.defn
class KnowledgeSearchWorkflow:
    @workflow.run
    async def run(self, query: KnowledgeSearchQuery) -> KnowledgeSearchResult:
        result: KnowledgeSearchResult = await workflow.execute_activity(
            "search_knowledge",
            query,
            result_type=KnowledgeSearchResult,
            task_queue=ML_TASK_QUEUE,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_attempts=2),
            summary=f"search: {query.query[:80]}",
        )
        return result
