"""The integrations worker SIGKILLed while a non-idempotent action runs: the action ran once.

A private Temporal server, the incidents worker in this process and the integrations worker as a real
`vigil worker integrations` process. The action is a script from an allowlisted folder that appends a line to a
file each time it starts, then waits for a release file. The worker is killed while the script waits; a second
worker takes the retried activity, finds the run started and not finished in the store, and does not run it
again: the timeline says the outcome is unknown, and verification (the incident's alerts resolved) decides.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from tests.conftest import make_settings
from tests.support import IntegrationsWorker, am_alert, am_webhook, eventually, free_port
from vigil.models import IncidentDetail, IncidentStatus, TimelineKind
from vigil.store.database import Store
from workers.main import build_worker

REPO_ROOT = Path(__file__).resolve().parent.parent
ACTION = """\
name: append-once
description: Append a line to a file, then wait to be released (a slow, non-idempotent action).
executor:
  type: script
  path: append-once.sh
  args: ["{counter}", "{release}"]
timeout_seconds: 120
idempotent: false
verification:
  alerts_resolved: true
  within_seconds: 120
"""
SCRIPT = """\
#!/bin/sh
echo "started $$" >> "$1"
while [ ! -e "$2" ]; do sleep 0.1; done
echo "released"
"""


@pytest.fixture
def remediation_dirs(tmp_path: Path) -> Iterator[dict[str, Path]]:
    scripts = tmp_path / "scripts"
    actions = tmp_path / "actions"
    scripts.mkdir()
    actions.mkdir()
    script = scripts / "append-once.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    counter, release = tmp_path / "runs.txt", tmp_path / "release"
    policy = tmp_path / "policy.yml"
    policy.write_text("dry_run: false\n")  # the default policy would only pretend: not toyprod
    (actions / "append-once.yml").write_text(
        ACTION.replace("{counter}", str(counter)).replace("{release}", str(release))
    )
    yield {"scripts": scripts, "actions": actions, "policy": policy, "counter": counter, "release": release}
    release.touch()  # lets an orphaned script of the killed worker finish


@pytest.fixture
async def stack(
    private_temporal: WorkflowEnvironment,
    store: Store,
    database_url: str,
    remediation_dirs: dict[str, Path],
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, IntegrationsWorker]]:
    client: Client = private_temporal.client  # `store`: the session's database, migrated
    overrides: dict[str, object] = {
        "actions_dirs": [remediation_dirs["actions"]],
        "shipped_actions": False,
        "remediation_scripts_dir": remediation_dirs["scripts"],
        "state_dir": tmp_path / "state",
        "quiet_period_seconds": 0.5,
        "close_after_seconds": 3600,
    }
    settings = make_settings(database_url, client, **overrides)
    env = {key: value for key, value in os.environ.items() if not key.startswith("VIGIL_")}
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "DATABASE_URL": database_url,
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "VIGIL_ACTIONS_DIRS": str(remediation_dirs["actions"]),
            "VIGIL_SHIPPED_ACTIONS": "false",
            "VIGIL_REMEDIATION_POLICY": str(remediation_dirs["policy"]),
            "VIGIL_REMEDIATION_SCRIPTS_DIR": str(remediation_dirs["scripts"]),
            "VIGIL_STATE_DIR": str(tmp_path / "state"),
            "VIGIL_INTEGRATIONS_WORKER_METRICS_PORT": str(free_port()),
        }
    )
    integrations = IntegrationsWorker(env, tmp_path / "integrations.log")
    async with AsyncExitStack() as stack:
        incidents = await build_worker("incidents", client, stack, settings)
        await stack.enter_async_context(incidents)
        app = create_app(settings, client=client, store=store)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test")
        stack.push_async_callback(http.aclose)
        stack.callback(integrations.kill)
        integrations.start()
        yield http, integrations


async def _detail(http: httpx.AsyncClient, incident_id: str) -> IncidentDetail:
    response = await http.get(f"/api/v1/incidents/{incident_id}")
    response.raise_for_status()
    return IncidentDetail.model_validate(response.json())


def _runs(detail: IncidentDetail) -> list[dict[str, object]]:
    return [e.data for e in detail.timeline if e.kind is TimelineKind.REMEDIATION_RUN]


@pytest.mark.timeout(240)
async def test_a_worker_killed_mid_action_runs_it_once(
    stack: tuple[httpx.AsyncClient, IntegrationsWorker], remediation_dirs: dict[str, Path], unique: str
) -> None:
    http, integrations = stack
    counter = remediation_dirs["counter"]
    alert = am_alert(unique, service="shop", instance="s1", namespace="staging")
    opened = await http.post("/api/v1/alerts/alertmanager", json=am_webhook([alert]))
    assert opened.status_code == 202, opened.text
    incident_id = opened.json()["incidents"][0]["incident_id"]
    proposed = await http.post(
        f"/api/v1/incidents/{incident_id}/remediation", json={"action": "append-once", "proposed_by": "ana"}
    )
    assert proposed.status_code == 200, proposed.text
    proposal_id = proposed.json()["proposal_id"]
    assert proposal_id > 0
    approved = await http.post(
        f"/api/v1/incidents/{incident_id}/approval",
        json={"decision": "approve", "by": "bob", "proposal_id": proposal_id},
    )
    assert approved.status_code == 200, approved.text

    try:
        await eventually(
            lambda: asyncio.to_thread(lambda: counter.read_text() if counter.exists() else ""),
            lambda text: text.count("started") == 1,
            timeout=60,
        )
    except AssertionError as exc:
        timeline = "\n".join(f"{e.kind}: {e.message}" for e in (await _detail(http, incident_id)).timeline)
        raise AssertionError(f"{exc}\n{timeline}\n{integrations.log_tail()}") from None
    integrations.kill()  # mid-action: the script is waiting for its release
    integrations.start()

    ran = await eventually(lambda: _detail(http, incident_id), lambda d: bool(_runs(d)), timeout=90)
    [run] = _runs(ran)
    assert run["outcome"] == "unknown", run
    assert run["executed"] is False
    assert "not run again" in str(run["output"]), run
    assert counter.read_text().count("started") == 1
    assert ran.state is not None
    assert ran.state.status is IncidentStatus.REMEDIATING  # verifying: the alert still fires

    resolved_alert = am_alert(unique, service="shop", instance="s1", namespace="staging", status="resolved")
    assert (await http.post("/api/v1/alerts/alertmanager", json=am_webhook([resolved_alert]))).status_code == 202
    done = await eventually(
        lambda: _detail(http, incident_id),
        lambda d: d.state is not None and d.state.status is IncidentStatus.RESOLVED,
        timeout=60,
    )
    kinds = [e.kind for e in done.timeline]
    assert TimelineKind.VERIFIED in kinds
    assert kinds.index(TimelineKind.REMEDIATION_RUN) < kinds.index(TimelineKind.VERIFIED)
    assert done.state is not None
    assert [r.verification for r in done.state.actions] == ["recovered"]
    assert counter.read_text().count("started") == 1
