"""Stack health: prove that Temporal answers and that a worker polls each task queue."""

from __future__ import annotations

import uuid
from datetime import timedelta

from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from vigil.models import WorkerInfo
from vigil.settings import INCIDENTS_TASK_QUEUE, Settings
from vigil.temporal import connect
from workflows.probe import StackProbeWorkflow


async def probe_workers(client: Client, timeout: float) -> list[WorkerInfo]:
    """Run `StackProbeWorkflow`; raises when any worker does not answer within `timeout` seconds."""
    return await client.execute_workflow(
        StackProbeWorkflow.run,
        timeout,
        id=f"vigil-probe-{uuid.uuid4().hex[:12]}",
        task_queue=INCIDENTS_TASK_QUEUE,
        execution_timeout=timedelta(seconds=timeout + 5),
        static_summary="Vigil stack probe",
    )


async def probe_stack(settings: Settings) -> int:
    """`vigil status`: print each worker's answer; exit code 0 when all answer, 1 otherwise."""
    console = Console()
    try:
        client = await connect(settings)
        workers = await probe_workers(client, timeout=10)
    except Exception as exc:
        console.print(f"[red]not healthy[/red]: {exc}")
        return 1
    table = Table("task queue", "pid", "version", "started")
    for info in workers:
        table.add_row(info.task_queue, str(info.pid), info.version, info.started_at.isoformat(timespec="seconds"))
    console.print(f"Temporal at {settings.temporal_target}: ok")
    console.print(table)
    return 0
