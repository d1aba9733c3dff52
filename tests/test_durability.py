"""Durability: a worker process killed mid-incident loses nothing; histories replay deterministically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from api.app import create_app
from tests.conftest import ApiFactory, make_settings
from tests.support import am_alert, am_webhook, eventually, free_port
from vigil.health import probe_workers
from vigil.models import IncidentDetail, IncidentState, IncidentStatus, TimelineKind
from vigil.settings import INCIDENTS_TASK_QUEUE, INTEGRATIONS_TASK_QUEUE, ML_TASK_QUEUE
from vigil.store.database import Store
from workflows.incident import IncidentWorkflow
from workflows.probe import StackProbeWorkflow

HISTORIES = Path(__file__).parent / "histories"


def start_worker_process(address: str, database_url: str, state_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "DATABASE_URL": database_url,
        "VIGIL_STATE_DIR": str(state_dir),
        "VIGIL_INCIDENTS_WORKER_METRICS_PORT": str(free_port()),
    }
    return subprocess.Popen([sys.executable, "-m", "vigil", "worker", "incidents"], env=env)


async def test_worker_killed_mid_incident_then_restarted_completes_it(
    private_temporal: WorkflowEnvironment, store: Store, database_url: str, tmp_path: Path, unique: str
) -> None:
    client = private_temporal.client
    settings = make_settings(
        database_url, client, debounce_seconds=1.0, quiet_period_seconds=0.5, close_after_seconds=0.5
    )
    app = create_app(settings, client=client, store=store)
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test")
    address = client.service_client.config.target_host
    worker = start_worker_process(address, database_url, tmp_path)
    try:
        response = await api.post(
            "/api/v1/alerts/alertmanager", json=am_webhook([am_alert(unique, service="db", instance="pg1")])
        )
        assert response.status_code == 202
        incident_id = response.json()["incidents"][0]["incident_id"]

        async def fetch() -> IncidentDetail:
            got = await api.get(f"/api/v1/incidents/{incident_id}")
            return IncidentDetail.model_validate(got.json())

        # the worker has started the incident and written it: now it is mid-debounce, a timer pending
        written = await eventually(fetch, lambda d: d.record is not None, timeout=30)
        worker.kill()
        worker.wait(timeout=10)

        # with no worker alive, the resolved alert is still accepted durably
        resolved = am_webhook([am_alert(unique, service="db", instance="pg1", status="resolved")])
        assert (await api.post("/api/v1/alerts/alertmanager", json=resolved)).status_code == 202
        row = await store.get_incident(written.incident_id)
        assert row is not None
        assert row.status not in (IncidentStatus.RESOLVED, IncidentStatus.CLOSED)

        worker = start_worker_process(address, database_url, tmp_path)

        done = await eventually(
            fetch, lambda d: d.record is not None and d.record.status is IncidentStatus.CLOSED, timeout=60
        )
        kinds = [event.kind for event in done.timeline]
        assert kinds[0] is TimelineKind.OPENED
        assert {TimelineKind.ALERT_RESOLVED, TimelineKind.RESOLVED, TimelineKind.CLOSED} <= set(kinds)
        assert done.record is not None
        assert done.record.alert_count == 1  # one firing episode: its resolution is no new occurrence
        result = await client.get_workflow_handle(incident_id, result_type=IncidentState).result()
        assert result.status is IncidentStatus.CLOSED
    finally:
        worker.kill()
        worker.wait(timeout=10)
        await api.aclose()


async def test_probe_reaches_every_task_queue(temporal_client: Client, workers: list[Worker]) -> None:
    infos = await probe_workers(temporal_client, timeout=10)
    assert sorted(info.task_queue for info in infos) == sorted(
        [INCIDENTS_TASK_QUEUE, ML_TASK_QUEUE, INTEGRATIONS_TASK_QUEUE]
    )
    assert all(info.pid == os.getpid() for info in infos)


async def test_recorded_histories_replay(
    temporal_client: Client, workers: list[Worker], api: ApiFactory, unique: str
) -> None:
    """Histories recorded from earlier versions (tests/histories) and one made now replay without
    non-determinism: a code change that breaks running incidents fails here."""
    client = api(quiet_period_seconds=0.2, close_after_seconds=0.2)
    response = await client.post("/api/v1/alerts", json={"name": unique, "service": "replay"})
    incident_id = response.json()["incidents"][0]["incident_id"]
    await client.post("/api/v1/alerts", json={"name": unique, "service": "replay", "status": "resolved"})
    await temporal_client.get_workflow_handle(incident_id).result()
    fresh = await temporal_client.get_workflow_handle(incident_id).fetch_history()

    recorded = [
        WorkflowHistory.from_json(path.stem, json.loads(path.read_text())) for path in sorted(HISTORIES.glob("*.json"))
    ]
    assert recorded, "no recorded histories in tests/histories"
    replayer = Replayer(workflows=[IncidentWorkflow, StackProbeWorkflow], data_converter=pydantic_data_converter)
    for history in [*recorded, fresh]:
        await replayer.replay_workflow(history)
