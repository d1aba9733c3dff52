"""`LogRetentionWorkflow`, run every 15 minutes by the Temporal Schedule `vigil-log-retention`.

A Schedule rather than a timer loop in the API or a worker: it survives restarts of every process, never runs
twice at once (overlap: skip), and its runs are visible in the Temporal Web UI like every other step.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from vigil.settings import INCIDENTS_TASK_QUEUE

RETENTION_SCHEDULE_ID = "vigil-log-retention"
RETENTION_INTERVAL = timedelta(minutes=15)


@workflow.defn
class LogRetentionWorkflow:
    @workflow.run
    async def run(self) -> int:
        """Deletes log lines past the retention period; returns how many."""
        deleted: int = await workflow.execute_activity(
            "delete_old_logs",
            result_type=int,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary="delete log lines older than the retention period",
        )
        return deleted


def retention_schedule() -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            LogRetentionWorkflow.run,
            id=RETENTION_SCHEDULE_ID,
            task_queue=INCIDENTS_TASK_QUEUE,
            execution_timeout=RETENTION_INTERVAL,
            static_summary="log retention",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=RETENTION_INTERVAL)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_retention_schedule(client: Client) -> None:
    """Create the schedule, or bring an existing one up to date; a pause set by an operator is kept."""
    try:
        await client.create_schedule(RETENTION_SCHEDULE_ID, retention_schedule())
    except ScheduleAlreadyRunningError:

        async def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
            wanted = retention_schedule()
            wanted.state = current.description.schedule.state
            return ScheduleUpdate(schedule=wanted)

        await client.get_schedule_handle(RETENTION_SCHEDULE_ID).update(update)
