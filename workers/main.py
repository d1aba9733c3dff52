"""Worker processes: `vigil worker incidents|ml|integrations`.

Each process serves one task queue and exposes the Temporal SDK's Prometheus metrics on its own port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.analysis import analyze_bundle
from activities.diagnosis import DiagnosisActivities
from activities.integrations import IntegrationActivities
from activities.knowledge_search import KnowledgeSearchActivities
from activities.remediation import RemediationActivities
from activities.retention import RetentionActivities
from activities.store import StoreActivities
from activities.worker_info import worker_info
from vigil.integrations.base import IntegrationConfigError
from vigil.integrations.github_host import store_deploy_lookup
from vigil.integrations.registry import configured_integrations
from vigil.mttx import HISTOGRAM_BUCKETS
from vigil.rca.retrieval import IncidentKnowledge
from vigil.remediation.catalogue import load_configured_catalogue
from vigil.remediation.errors import RemediationConfigError
from vigil.remediation.policy import load_configured_policy
from vigil.settings import INCIDENTS_TASK_QUEUE, INTEGRATIONS_TASK_QUEUE, ML_TASK_QUEUE, Settings
from vigil.store.database import Store, database_url
from vigil.temporal import connect
from workflows.docqa import DocQAWorkflow
from workflows.incident import IncidentWorkflow
from workflows.knowledge_search import KnowledgeSearchWorkflow
from workflows.probe import StackProbeWorkflow
from workflows.retention import LogRetentionWorkflow, ensure_retention_schedule

log = logging.getLogger("vigil.worker")

TASK_QUEUES = {"incidents": INCIDENTS_TASK_QUEUE, "ml": ML_TASK_QUEUE, "integrations": INTEGRATIONS_TASK_QUEUE}


def metrics_port(role: str, settings: Settings) -> int:
    ports = {
        "incidents": settings.incidents_worker_metrics_port,
        "ml": settings.ml_worker_metrics_port,
        "integrations": settings.integrations_worker_metrics_port,
    }
    return ports[role]


async def build_worker(
    role: str, client: Client, stack: AsyncExitStack, settings: Settings, *, warm_knowledge: bool = False
) -> Worker:
    """The worker of one role, its resources registered on `stack`. Tests build workers with this too.

    The ml worker loads the embedding model and indexes the runbooks in the background (seconds; the first
    retrieval waits for it), or before returning with `warm_knowledge`."""
    workflows: Sequence[type] = []
    activities: list[Callable[..., Any]] = [worker_info]
    if role == "incidents":
        store = await Store.open(database_url(settings))
        stack.push_async_callback(store.close)
        workflows = [IncidentWorkflow, StackProbeWorkflow, LogRetentionWorkflow, DocQAWorkflow, KnowledgeSearchWorkflow]
        store_activities = StoreActivities(store)
        activities += [
            store_activities.persist_incident,
            store_activities.record_incident_timings,
            RetentionActivities(store, settings).delete_old_logs,
        ]
    elif role == "ml":
        store = await Store.open(database_url(settings), max_size=4)
        stack.push_async_callback(store.close)
        knowledge = IncidentKnowledge(settings)
        stack.callback(knowledge.close)
        warming = asyncio.ensure_future(asyncio.to_thread(knowledge.base))
        if warm_knowledge:
            await warming
        else:
            warming.add_done_callback(_log_warm_up)
            stack.push_async_callback(_cancel, warming)
        diagnosis = DiagnosisActivities(store, knowledge, settings)
        activities += [
            analyze_bundle,
            diagnosis.diagnose_incident,
            diagnosis.llm_diagnose,
            diagnosis.answer_question,
            diagnosis.index_resolved_incident,
            KnowledgeSearchActivities(knowledge, store).search_knowledge,
        ]
    elif role == "integrations":
        # An invalid catalogue or policy raises RemediationConfigError (every problem listed): no worker starts.
        catalogue = load_configured_catalogue(settings)
        policy = load_configured_policy(settings, catalogue)
        store = await Store.open(database_url(settings), max_size=4)
        stack.push_async_callback(store.close)
        remediation = RemediationActivities(store, catalogue, policy, settings)
        activities += [remediation.plan_remediation, remediation.run_remediation_action, remediation.measure_recovery]
        log.info("remediation: %d action(s), %d policy rule(s)", len(catalogue.actions), len(policy.rules))
        # A half-configured integration or a token its service refuses raises IntegrationConfigError: no worker.
        integrations = configured_integrations(settings, store_deploy_lookup(store))
        stack.push_async_callback(integrations.close)
        for kind, identity in (await integrations.check()).items():
            log.info("integration %s: %s", kind, identity)
        plugins = IntegrationActivities(integrations, store)
        activities += [plugins.notify_incident, plugins.sync_ticket, plugins.sync_code_host]
    return Worker(client, task_queue=TASK_QUEUES[role], workflows=workflows, activities=activities)


def _log_warm_up(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("knowledge base not ready (retried on first use): %s", task.exception())


async def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


async def run_worker(role: str, settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"{settings.listen_host}:{metrics_port(role, settings)}",
                histogram_bucket_overrides=HISTOGRAM_BUCKETS,
            )
        )
    )
    client = await connect(settings, runtime=runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncExitStack() as stack:
        try:
            worker = await build_worker(role, client, stack, settings)
        except (RemediationConfigError, IntegrationConfigError) as exc:
            log.error("worker %s cannot start: %s", role, exc)
            raise SystemExit(1) from None
        if role == "incidents":
            await ensure_retention_schedule(client)
        async with worker:
            log.info("worker %s polling %s", role, TASK_QUEUES[role])
            await stop.wait()
            log.info("worker %s stopping", role)
