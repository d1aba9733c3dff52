"""Stack health: prove that Temporal answers and that a worker polls each task queue."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from vigil.integrations.base import IntegrationConfigError
from vigil.integrations.registry import configured_integrations
from vigil.models import StoredDeployEvent, WorkerInfo
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
    return await print_integrations(settings, console)


async def _no_deploys(service: str, at: datetime) -> list[StoredDeployEvent]:
    return []


async def print_integrations(settings: Settings, console: Console) -> int:
    """The integrations the settings configure, each checked against its service (the worker's start check)."""
    try:
        integrations = configured_integrations(settings, _no_deploys)
        try:
            identities = await integrations.check()
        finally:
            await integrations.close()
    except IntegrationConfigError as exc:
        console.print(f"[red]integrations misconfigured[/red] (the integrations worker will not start): {exc}")
        return 1
    table = Table("integration", "state")
    for kind, identity in identities.items():
        table.add_row(kind, identity)
    console.print(table)
    return 0
