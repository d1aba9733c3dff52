"""Record workflow histories for the replay test: `python -m tests.record_histories`.

Runs a real incident (diagnosis, proposal, escalation, approval, resolution, close, indexing) on a private dev
server and embedded PostgreSQL with the incidents and ml workers, and writes its history to
tests/histories/<NAME>.json. Record new ones when the workflow changes on purpose, under a new name; keep the old
ones, which stand for incidents still running on the previous version (`incident_lifecycle.json`: before
diagnosis existed; `incident_lifecycle_diagnosis.json`: before per-occurrence ids and alert ordering).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.intake import GroupSignaller
from tests.support import VENV_BIN, am_alert, am_webhook, eventually
from vigil.alerts import parse_alertmanager
from vigil.models import Alert, ApprovalRequest, Decision, IncidentState, RemediationProposal
from vigil.settings import Settings
from vigil.stack.postgres import start_embedded_postgres
from vigil.store.database import migrate_database
from vigil.temporal import SEARCH_ATTRIBUTES
from workers.main import build_worker

OUT = Path(__file__).parent / "histories"
NAME = "incident_lifecycle_occurrences"


async def record() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pg = start_embedded_postgres(Path(tmp))
        await migrate_database(pg.url)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(VENV_BIN / "temporal"),
            search_attributes=SEARCH_ATTRIBUTES,
            data_converter=pydantic_data_converter,
        )
        settings = Settings(
            state_dir=Path(tmp) / "state",
            runbooks_dir=Path(__file__).parent / "fixtures" / "runbooks",
            database_url=SecretStr(pg.url),
            debounce_seconds=0.2,
            quiet_period_seconds=0.3,
            escalation_seconds=0.5,
            close_after_seconds=0.3,
        )
        try:
            async with AsyncExitStack() as stack:
                for role in ("incidents", "ml"):
                    worker = await build_worker(role, env.client, stack, settings, warm_knowledge=True)
                    await stack.enter_async_context(worker)

                def alerts(status: str, *instances: str) -> list[Alert]:
                    body = am_webhook(
                        [am_alert("RecordedLifecycle", service="shop", instance=i, status=status) for i in instances]
                    )
                    return parse_alertmanager(body, group_by=settings.group_by, received_at=datetime.now(UTC))

                signaller = GroupSignaller(env.client, settings)
                (ref,) = await signaller.deliver(alerts("firing", "i1", "i2"))
                handle = env.client.get_workflow_handle(ref.incident_id, result_type=IncidentState)
                await eventually(  # the debounce, then the diagnosis on the ml worker
                    lambda: handle.query("state", result_type=IncidentState), lambda s: s.diagnosis is not None
                )
                await handle.execute_update(
                    "propose_remediation", RemediationProposal(action="restart", proposed_by="bob")
                )
                await asyncio.sleep(1.2)  # lets the escalation timer fire twice
                await handle.execute_update("approval", ApprovalRequest(decision=Decision.APPROVE, by="ana"))
                await signaller.deliver(alerts("resolved", "i1", "i2"))
                state = await handle.result()
                assert state.status.value == "closed", state.status
                history = await handle.fetch_history()
                (OUT / f"{NAME}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1))
                print(f"recorded {ref.incident_id}: {len(history.events)} events")
        finally:
            await env.shutdown()
            pg.stop()


if __name__ == "__main__":
    asyncio.run(record())
