"""`StackProbeWorkflow`: asks every task queue's worker for its `worker_info`, proving each one polls."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from vigil.models import WorkerInfo
    from vigil.settings import INCIDENTS_TASK_QUEUE, INTEGRATIONS_TASK_QUEUE, ML_TASK_QUEUE

PROBED_TASK_QUEUES = (INCIDENTS_TASK_QUEUE, ML_TASK_QUEUE, INTEGRATIONS_TASK_QUEUE)


@workflow.defn
class StackProbeWorkflow:
    @workflow.run
    async def run(self, timeout_seconds: float) -> list[WorkerInfo]:
        calls = [
            workflow.execute_activity(
                "worker_info",
                task_queue=queue,
                result_type=WorkerInfo,
                schedule_to_close_timeout=timedelta(seconds=timeout_seconds),
                retry_policy=RetryPolicy(maximum_attempts=1),
                summary=f"is a worker polling {queue}?",
            )
            for queue in PROBED_TASK_QUEUES
        ]
        return list(await asyncio.gather(*calls))
