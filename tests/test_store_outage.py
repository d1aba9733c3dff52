"""A PostgreSQL outage during triage delays the diagnosis; it never loses it (issue 10, defect 4). The workers
of this test have a Temporal server and an embedded PostgreSQL of their own, which the test kills and restarts."""

from __future__ import annotations

import os
import signal
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from api.intake import signal_group
from tests.conftest import FIXTURES, make_settings
from tests.support import am_alert, am_webhook, eventually
from vigil.alerts import incident_id_for, parse_alertmanager
from vigil.models import IncidentState, TimelineKind
from vigil.stack.postgres import EmbeddedPostgres, EmbeddedPostgresError, start_embedded_postgres
from vigil.store.database import migrate_database
from workers.main import build_worker


async def _attempts(handle: WorkflowHandle[object, object], activity: str) -> int:
    described = await handle.describe()
    return max(
        (p.attempt for p in described.raw_description.pending_activities if p.activity_type.name == activity),
        default=0,
    )


async def _restart(server: EmbeddedPostgres) -> bool:
    try:
        server.restart()
    except EmbeddedPostgresError:
        return False  # the dead server's backends are still exiting
    return True


async def test_diagnosis_waits_out_a_database_outage(
    private_temporal: WorkflowEnvironment, tmp_path: Path, unique: str
) -> None:
    client = private_temporal.client
    server = start_embedded_postgres(tmp_path / "pg")
    try:
        await migrate_database(server.url)
        settings = make_settings(
            server.url,
            client,
            state_dir=tmp_path / "state",
            runbooks_dir=FIXTURES / "runbooks",
            debounce_seconds=0.2,
            diagnosis_wait_seconds=1.0,
            quiet_period_seconds=3600,
        )
        async with AsyncExitStack() as stack:
            for role in ("incidents", "ml"):
                await stack.enter_async_context(await build_worker(role, client, stack, settings))
            os.kill(server.pid, signal.SIGKILL)

            async def running() -> bool:
                return server.is_running()

            await eventually(running, lambda up: not up)

            alerts = parse_alertmanager(
                am_webhook([am_alert(unique, service="db", instance="pg1")]),
                group_by=settings.group_by,
                received_at=datetime.now(UTC),
            )
            key = alerts[0].group_key
            await signal_group(client, settings, key, alerts, "outage-1")
            handle = client.get_workflow_handle(incident_id_for(key))
            # beyond the three attempts that used to end in "Diagnosis failed: ConnectionRefusedError"
            await eventually(lambda: _attempts(handle, "diagnose_incident"), lambda n: n >= 4, timeout=90, every=0.5)

            await eventually(lambda: _restart(server), lambda ok: ok, timeout=60, every=0.5)

            async def state() -> IncidentState:
                result: IncidentState = await handle.query("state", result_type=IncidentState)
                return result

            diagnosed = await eventually(state, lambda s: s.diagnosis is not None, timeout=120, every=0.5)
            messages = [e.message for e in diagnosed.timeline]
            assert not any(m.startswith("Diagnosis failed") for m in messages), messages
            assert TimelineKind.DIAGNOSED in [e.kind for e in diagnosed.timeline]
            assert not diagnosed.diagnosis_pending
    finally:
        server.stop()
