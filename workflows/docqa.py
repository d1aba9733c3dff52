"""`DocQAWorkflow`: one question answered by the ml worker, which owns the knowledge base (Qdrant local mode
allows one process per path, so the API never opens it itself)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from vigil.rca.models import ChatAnswer, ChatQuery
    from vigil.settings import ML_TASK_QUEUE


@workflow.defn
class DocQAWorkflow:
    @workflow.run
    async def run(self, query: ChatQuery) -> ChatAnswer:
        answer: ChatAnswer = await workflow.execute_activity(
            "answer_question",
            query,
            result_type=ChatAnswer,
            task_queue=ML_TASK_QUEUE,
            start_to_close_timeout=timedelta(minutes=3),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=2),
            summary=f"answer: {query.question[:80]}",
        )
        return answer
