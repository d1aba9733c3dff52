"""Record workflow histories for the replay test: `python -m tests.record_histories`.

Runs a real incident (diagnosis, Vigil's proposal of the action its runbook links, escalation, approval, the
action run and verified, resolution, close, indexing) on a private dev server and embedded PostgreSQL with the
three workers, and writes its history to
tests/histories/<NAME>.json. Record new ones when the workflow changes on purpose, under a new name; keep the old
ones, which stand for incidents still running on the previous version (`incident_lifecycle.json`: before
diagnosis existed; `incident_lifecycle_diagnosis.json`: before per-occurrence ids and alert ordering;
`incident_lifecycle_occurrences.json`: before the remediation loop; `incident_lifecycle_remediation.json`:
before the integrations). Slack and Jira are the local fakes of tests/fakes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.intake import GroupSignaller
from tests.fakes.jira_api import FakeJira
from tests.fakes.slack_api import FakeSlack
from tests.support import VENV_BIN, am_alert, am_webhook, eventually
from vigil.alerts import parse_alertmanager
from vigil.integrations.models import AcknowledgeRequest, CodeChange, PullRequestRef
from vigil.models import Alert, ApprovalRequest, Decision, IncidentState
from vigil.settings import Settings
from vigil.stack.postgres import start_embedded_postgres
from vigil.store.database import migrate_database
from vigil.temporal import SEARCH_ATTRIBUTES
from workers.main import build_worker

OUT = Path(__file__).parent / "histories"
NAME = "incident_lifecycle_integrations"
FIXTURE_RUNBOOKS = Path(__file__).parent / "fixtures" / "runbooks"
LINKED_RUNBOOK = "pod-crashloop.md"
ACTION = """\
name: recorded-step
description: A harmless step the recorded incident runs.
executor:
  type: script
  path: step.sh
timeout_seconds: 30
idempotent: true
verification:
  alerts_resolved: true
  within_seconds: 60
"""


def remediation_files(root: Path) -> dict[str, Path]:
    """A runbook folder whose crash-loop runbook links `recorded-step`, the action, its script, a real policy."""
    runbooks, actions, scripts = root / "runbooks", root / "actions", root / "scripts"
    shutil.copytree(FIXTURE_RUNBOOKS, runbooks)
    with (runbooks / LINKED_RUNBOOK).open("a") as runbook:
        runbook.write("\nVigil action: `recorded-step`\n")
    actions.mkdir()
    (actions / "recorded-step.yml").write_text(ACTION)
    scripts.mkdir()
    (scripts / "step.sh").write_text("#!/bin/sh\necho step done\n")
    (scripts / "step.sh").chmod(0o755)
    (root / "policy.yml").write_text("dry_run: false\n")
    return {"runbooks": runbooks, "actions": actions, "scripts": scripts, "policy": root / "policy.yml"}


async def record() -> None:
    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as slack, FakeJira() as jira:
        pg = start_embedded_postgres(Path(tmp))
        await migrate_database(pg.url)
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(VENV_BIN / "temporal"),
            search_attributes=SEARCH_ATTRIBUTES,
            data_converter=pydantic_data_converter,
        )
        files = remediation_files(Path(tmp))
        settings = Settings(
            state_dir=Path(tmp) / "state",
            runbooks_dir=files["runbooks"],
            actions_dirs=[files["actions"]],
            shipped_actions=False,
            remediation_scripts_dir=files["scripts"],
            remediation_policy_path=files["policy"],
            database_url=SecretStr(pg.url),
            debounce_seconds=0.2,
            quiet_period_seconds=0.3,
            escalation_seconds=0.5,
            close_after_seconds=0.3,
            slack_bot_token=SecretStr(slack.bot_token),
            slack_channel="C0VIGIL",
            slack_api_url=slack.url,
            jira_url=jira.url,
            jira_user=jira.user,
            jira_api_token=SecretStr(jira.token),
            jira_project=jira.project,
        )
        try:
            async with AsyncExitStack() as stack:
                for role in ("incidents", "ml", "integrations"):
                    worker = await build_worker(role, env.client, stack, settings, warm_knowledge=True)
                    await stack.enter_async_context(worker)

                def alerts(status: str, *instances: str) -> list[Alert]:
                    sent = [am_alert("RecordedLifecycle", service="shop", instance=i, status=status) for i in instances]
                    for alert in sent:
                        alert["annotations"]["runbook_url"] = f"https://runbooks.example/{LINKED_RUNBOOK}"
                    body = am_webhook(sent)
                    return parse_alertmanager(body, group_by=settings.group_by, received_at=datetime.now(UTC))

                signaller = GroupSignaller(env.client, settings)
                (ref,) = await signaller.deliver(alerts("firing", "i1", "i2"))
                handle = env.client.get_workflow_handle(ref.incident_id, result_type=IncidentState)
                proposed = await eventually(  # the debounce, the diagnosis on the ml worker, Vigil's proposal
                    lambda: handle.query("state", result_type=IncidentState), lambda s: s.pending_approval is not None
                )
                assert proposed.pending_approval is not None
                assert proposed.pending_approval.proposal.action == "recorded-step"
                await asyncio.sleep(1.2)  # lets the escalation timer fire twice
                await handle.execute_update("approval", ApprovalRequest(decision=Decision.APPROVE, by="ana"))
                await handle.execute_update("acknowledge", AcknowledgeRequest(by="ana"))
                merged = PullRequestRef(repository="acme/shop", number=7, title="Fix", url="https://github.test/7")
                await handle.signal("code_change", CodeChange(delivery_id="d-1", pull_request=merged))
                await eventually(  # the action ran: its verification waits for the alerts
                    lambda: handle.query("state", result_type=IncidentState),
                    lambda s: bool(s.actions) and s.actions[0].result is not None,
                )
                await signaller.deliver(alerts("resolved", "i1", "i2"))
                state = await handle.result()
                assert state.status.value == "closed", state.status
                assert [run.verification for run in state.actions] == ["recovered"], state.actions
                assert state.integrations.notifier is not None, state.integrations
                assert state.integrations.ticket is not None, state.integrations
                assert state.integrations.ticket.done, state.integrations
                history = await handle.fetch_history()
                (OUT / f"{NAME}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1))
                print(f"recorded {ref.incident_id}: {len(history.events)} events")
        finally:
            await env.shutdown()
            pg.stop()


if __name__ == "__main__":
    asyncio.run(record())
