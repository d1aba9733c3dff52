"""Slack, Jira and GitHub through the whole stack, against local servers speaking their HTTP APIs.

A private Temporal server; the incidents and ml workers in this process; the integrations worker as a real
`vigil worker integrations` process (so it can be SIGKILLed); the API in this process with the Slack app. The
real slack_sdk/slack-bolt, jira and PyGithub libraries talk to `tests/fakes`.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from api.app import create_app
from tests.conftest import FIXTURES, make_settings, start_temporal
from tests.fakes.github_api import FakeGitHub
from tests.fakes.jira_api import FakeJira
from tests.fakes.slack_api import FakeSlack
from tests.support import IntegrationsWorker, am_alert, am_webhook, eventually, free_port
from vigil.integrations.slack.blocks import APPROVE_ACTION, parse_button_value
from vigil.models import IncidentDetail, IncidentState, IncidentStatus, TimelineKind
from vigil.settings import Settings
from vigil.store.database import Store
from workers.main import build_worker

REPO_ROOT = Path(__file__).resolve().parent.parent
APPROVER = "U0APPROVER"
BYSTANDER = "U0BYSTANDER"
SERVICE = "shop"
REPOSITORY = "acme/shop"
WEBHOOK_SECRET = "github-webhook-test-secret"


@dataclass
class Stack:
    http: httpx.AsyncClient
    client: Client
    settings: Settings
    slack: FakeSlack
    jira: FakeJira
    github: FakeGitHub
    worker: IntegrationsWorker


@pytest.fixture(scope="module")
async def stack(store: Store, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("integrations-e2e")
    owners = tmp / "owners.yml"
    owners.write_text(f"{SERVICE}:\n  jira_assignee: alice\n  github_repo: {REPOSITORY}\n")
    async with AsyncExitStack() as exits:
        slack, jira, github = FakeSlack(), FakeJira(), FakeGitHub(repos=(REPOSITORY,))
        for fake in (slack, jira, github):
            exits.enter_context(fake)
        temporal = await start_temporal()
        exits.push_async_callback(temporal.shutdown)
        client = temporal.client
        settings = make_settings(
            database_url,
            client,
            state_dir=tmp / "state",
            runbooks_dir=FIXTURES / "runbooks",
            shipped_actions=False,
            close_after_seconds=5,
            slack_bot_token=slack.bot_token,
            slack_signing_secret=slack.signing_secret,
            slack_channel="C0VIGIL",
            slack_api_url=slack.url,
            slack_approvers=[APPROVER],
            console_url="http://console.test",
            github_webhook_secret=WEBHOOK_SECRET,
        )
        env = {key: value for key, value in os.environ.items() if not key.startswith(("VIGIL_", "SLACK_", "JIRA_"))}
        env.update(
            {
                "PYTHONPATH": str(REPO_ROOT),
                "DATABASE_URL": database_url,
                "TEMPORAL_ADDRESS": client.service_client.config.target_host,
                "VIGIL_STATE_DIR": str(tmp / "state"),
                "VIGIL_SHIPPED_ACTIONS": "false",
                "VIGIL_INTEGRATIONS_WORKER_METRICS_PORT": str(free_port()),
                "VIGIL_CONSOLE_URL": "http://console.test",
                "SLACK_BOT_TOKEN": slack.bot_token,
                "VIGIL_SLACK_CHANNEL": "C0VIGIL",
                "VIGIL_SLACK_API_URL": slack.url,
                "JIRA_URL": jira.url,
                "JIRA_USER": jira.user,
                "JIRA_API_TOKEN": jira.token,
                "VIGIL_JIRA_PROJECT": jira.project,
                "GITHUB_TOKEN": github.token,
                "VIGIL_GITHUB_URL": github.url,
                "VIGIL_SERVICE_OWNERS": str(owners),
            }
        )
        worker = IntegrationsWorker(env, tmp / "integrations.log")
        for role in ("incidents", "ml"):
            built = await build_worker(role, client, exits, settings, warm_knowledge=True)
            await exits.enter_async_context(built)
        app = create_app(settings, client=client, store=store)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test")
        exits.push_async_callback(http.aclose)
        exits.callback(worker.kill)
        worker.start()
        yield Stack(http, client, settings, slack, jira, github, worker)


async def _detail(http: httpx.AsyncClient, incident_id: str) -> IncidentDetail:
    response = await http.get(f"/api/v1/incidents/{incident_id}")
    response.raise_for_status()
    return IncidentDetail.model_validate(response.json())


async def _open(stack: Stack, alertname: str) -> tuple[str, str]:
    """The incident's occurrence id and its group's (workflow) id."""
    alert = am_alert(alertname, service=SERVICE, instance="s1", severity="critical")
    opened = await stack.http.post("/api/v1/alerts/alertmanager", json=am_webhook([alert]))
    assert opened.status_code == 202, opened.text
    group_id: str = opened.json()["incidents"][0]["incident_id"]
    detail = await eventually(lambda: _detail(stack.http, group_id), lambda d: d.state is not None)
    assert detail.state is not None
    return detail.state.incident_id, group_id


def _messages_of(slack: FakeSlack, incident_id: str) -> list[dict[str, Any]]:
    return [
        m
        for m in slack.top_level()
        if (m.get("metadata") or {}).get("event_payload", {}).get("incident_id") == incident_id
    ]


def _tickets_of(jira: FakeJira, incident_id: str) -> list[dict[str, Any]]:
    return [issue for issue in jira.issues.values() if f"vigil-{incident_id}" in issue["labels"]]


def _buttons(message: dict[str, Any]) -> dict[str, str]:
    return {
        element["action_id"]: element["value"]
        for block in message.get("blocks", [])
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    }


async def _press(stack: Stack, value: str, user: str, message_ts: str) -> httpx.Response:
    body = stack.slack.interaction_body(APPROVE_ACTION, value, user_id=user, message_ts=message_ts)
    headers = {**stack.slack.sign(body), "Content-Type": "application/x-www-form-urlencoded"}
    return await stack.http.post("/slack/events", content=body, headers=headers)


async def _settled(probe: Any) -> Any:
    return await asyncio.to_thread(probe)


def _log(stack: Stack) -> str:
    return stack.worker.log_tail()


@pytest.mark.timeout(300)
async def test_alert_to_slack_jira_approval_and_merge(stack: Stack, unique: str) -> None:
    slack, jira = stack.slack, stack.jira
    incident_id, group_id = await _open(stack, unique)

    # alert -> diagnosis -> exactly one Slack message and one Jira ticket, with the RCA and links
    try:
        diagnosed = await eventually(
            lambda: _detail(stack.http, incident_id), lambda d: d.state is not None and d.state.diagnosis is not None
        )
        assert diagnosed.state is not None
        assert diagnosed.state.diagnosis is not None
        component = diagnosed.state.diagnosis.root_cause.component
        [message] = await eventually(
            lambda: _settled(lambda: _messages_of(slack, incident_id)),
            lambda ms: len(ms) == 1 and component in json.dumps(ms[0]),
            timeout=60,
        )
        [ticket] = await eventually(
            lambda: _settled(lambda: _tickets_of(jira, incident_id)), lambda ts: len(ts) == 1, timeout=60
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_log(stack)}") from None
    chain = diagnosed.state.diagnosis.root_cause.chain
    assert chain, "the diagnosis of this incident has a root-cause chain"
    shown = json.dumps(message)
    assert "Root-cause chain" in shown
    assert all(f"`{hop.component}`" in shown for hop in chain)
    console_link = f"http://console.test/incidents/{incident_id}"
    assert console_link in json.dumps(message)
    assert console_link in json.dumps(ticket)
    assert ticket["assignee"] == "alice"

    # a proposal -> buttons -> a signed approve press delivered 3 times -> one approval, message updated
    proposed = await stack.http.post(
        f"/api/v1/incidents/{incident_id}/remediation", json={"action": "restart-shop", "proposed_by": "ana"}
    )
    assert proposed.status_code == 200, proposed.text
    proposal_id = proposed.json()["proposal_id"]
    [with_buttons] = await eventually(
        lambda: _settled(lambda: _messages_of(slack, incident_id)),
        lambda ms: len(ms) == 1 and APPROVE_ACTION in _buttons(ms[0]),
        timeout=60,
    )
    value = _buttons(with_buttons)[APPROVE_ACTION]
    assert parse_button_value(value).proposal_id == proposal_id

    refused = await _press(stack, value, BYSTANDER, with_buttons["ts"])
    assert refused.status_code == 200
    forged_body = slack.interaction_body(APPROVE_ACTION, value, user_id=APPROVER, message_ts=with_buttons["ts"])
    forged = await stack.http.post(
        "/slack/events",
        content=forged_body,
        headers={**slack.sign(forged_body + "x"), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert forged.status_code == 401
    await eventually(
        lambda: _settled(lambda: [e for e in slack.ephemerals if e.get("user") == BYSTANDER]), lambda es: len(es) == 1
    )
    assert (await _detail(stack.http, incident_id)).state.status is IncidentStatus.AWAITING_APPROVAL  # type: ignore[union-attr]

    presses = await asyncio.gather(*(_press(stack, value, APPROVER, with_buttons["ts"]) for _ in range(3)))
    assert [p.status_code for p in presses] == [200, 200, 200]
    approved = await eventually(
        lambda: _detail(stack.http, incident_id),
        lambda d: any(e.kind is TimelineKind.APPROVED for e in d.timeline),
    )
    approvals = [e for e in approved.timeline if e.kind is TimelineKind.APPROVED]
    assert len(approvals) == 1
    assert approvals[0].actor == f"slack:{APPROVER}"
    await eventually(
        lambda: _settled(lambda: _messages_of(slack, incident_id)),
        lambda ms: f"<@{APPROVER}>" in json.dumps(ms[0]) and APPROVE_ACTION not in _buttons(ms[0]),
        timeout=60,
    )
    assert len(_messages_of(slack, incident_id)) == 1

    # a merged pull request naming the incident -> recorded, the Jira ticket moves
    event = stack.github.pull_request_event(REPOSITORY, 7, f"Fix checkout ({incident_id})", "", merged=True)
    body = json.dumps(event).encode()
    merged = await stack.http.post(
        "/api/v1/webhooks/github",
        content=body,
        headers={
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": FakeGitHub.sign(body, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    )
    assert merged.status_code == 202, merged.text
    recorded = await eventually(
        lambda: _detail(stack.http, incident_id),
        lambda d: d.state is not None and [pr.number for pr in d.state.integrations.pull_requests] == [7],
    )
    assert recorded.state is not None
    assert any(e.kind is TimelineKind.CODE_CHANGE for e in recorded.state.timeline)
    await eventually(
        lambda: _settled(lambda: _tickets_of(jira, incident_id)),
        lambda ts: "In Review" in [t.lower().title() for t in ts[0]["transitions"]],
        timeout=60,
    )

    # Slack rate-limits and Jira fails: retried with backoff while the incident moves on, then told
    slack.fail("chat.update", status=429, retry_after=1, times=2)
    jira.fail("/rest/api/2/issue", status=500, times=2)
    resolved = await stack.http.post(f"/api/v1/incidents/{incident_id}/resolve", json={"by": "ana"})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == IncidentStatus.RESOLVED.value
    await eventually(
        lambda: _settled(lambda: _messages_of(slack, incident_id)),
        lambda ms: "resolved" in json.dumps(ms[0]).lower() and "vigil_resolve" not in _buttons(ms[0]),
        timeout=60,
    )
    # closed: the ticket gets the postmortem draft and moves to done; still one message, one ticket
    [done] = await eventually(
        lambda: _settled(lambda: _tickets_of(jira, incident_id)),
        lambda ts: ts[0]["status"] == "Done" and any("Postmortem draft" in c["body"] for c in ts[0]["comments"]),
        timeout=90,
    )
    assert done["key"] == ticket["key"]
    assert len(_messages_of(slack, incident_id)) == 1
    final = await stack.client.get_workflow_handle(group_id, result_type=IncidentState).result()
    assert final.status is IncidentStatus.CLOSED
    assert final.integrations.ticket is not None
    assert final.integrations.ticket.key == ticket["key"]
    assert final.integrations.ticket.done
    assert not [e for e in final.timeline if e.kind is TimelineKind.INTEGRATION and e.data.get("failed")]


@pytest.mark.timeout(240)
async def test_worker_killed_between_post_and_record_posts_once(stack: Stack, unique: str) -> None:
    slack = stack.slack
    release = slack.hold("chat.postMessage")
    incident_id, _ = await _open(stack, unique)
    try:
        await eventually(lambda: _settled(slack.held.is_set), bool, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_log(stack)}") from None
    stack.worker.kill()  # the message is posted; the worker dies before it records the answer
    release.set()
    stack.worker.start()
    detail = await eventually(
        lambda: _detail(stack.http, incident_id),
        lambda d: d.state is not None and d.state.integrations.notifier is not None,
        timeout=120,
    )
    assert detail.state is not None
    assert detail.state.integrations.notifier is not None
    messages = _messages_of(slack, incident_id)
    assert len(messages) == 1
    assert detail.state.integrations.notifier.ts == messages[0]["ts"]


async def test_unconfigured_integrations_are_skipped_and_said(workers: list[Any], api: Any, unique: str) -> None:
    """The session's workers configure no integration: the incident goes on, and its timeline says why."""
    http: httpx.AsyncClient = api()
    alert = am_alert(unique, service=SERVICE, instance="s1")
    opened = await http.post("/api/v1/alerts/alertmanager", json=am_webhook([alert]))
    assert opened.status_code == 202, opened.text
    incident_id = opened.json()["incidents"][0]["incident_id"]
    detail = await eventually(
        lambda: _detail(http, incident_id),
        lambda d: d.state is not None and len(d.state.integrations.off) == 3,
    )
    assert detail.state is not None
    notes = [e.message for e in detail.state.timeline if e.kind is TimelineKind.INTEGRATION]
    assert any("SLACK_BOT_TOKEN" in note for note in notes), notes
    assert any("JIRA_URL" in note for note in notes), notes
    assert any("GITHUB_TOKEN" in note for note in notes), notes
    assert detail.state.status is IncidentStatus.MONITORING


@pytest.mark.timeout(240)
async def test_code_related_incident_gets_a_github_issue_and_its_deploy_commits_as_evidence(
    stack: Stack, unique: str
) -> None:
    """A deploy, then application exceptions: the diagnosis is code-related, so the service's repository gets an
    issue, and the commits between the previous and the suspect deploy become evidence of the diagnosis."""
    now = datetime.now(UTC)
    base, fix, suspect = (uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in range(3))
    stack.github.add_commits(
        REPOSITORY, [(base, "v1", "ana"), (fix, "cart: total in minor units", "bob"), (suspect, "v2", "bob")]
    )
    for version, commit, at in (("v1", base, now - timedelta(hours=2)), ("v2", suspect, now - timedelta(minutes=4))):
        sent = await stack.http.post(
            "/api/v1/events/deploy",
            json={"service": SERVICE, "version": f"{unique}-{version}", "commit": commit, "ts": at.isoformat()},
        )
        assert sent.status_code == 202, sent.text
    trace = (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/shop/cart.py", line 88, in total\n'
        '    return sum(line["amount_minor"] for line in lines)\n'
        "TypeError: unsupported operand type(s) for +: 'int' and 'str'"
    )
    lines = [
        {
            "ts": (now - timedelta(minutes=3, seconds=-5 * i)).isoformat(),
            "service": SERVICE,
            "level": "ERROR",
            "message": f"unhandled exception in POST /cart\n{trace}",
        }
        for i in range(30)
    ]
    pushed = await stack.http.post("/api/v1/logs", json=lines)
    assert pushed.status_code == 202, pushed.text

    incident_id, _ = await _open(stack, unique)
    try:
        detail = await eventually(
            lambda: _detail(stack.http, incident_id),
            lambda d: (
                d.state is not None
                and d.state.integrations.code_host is not None
                and bool(d.state.integrations.code_host.commits)
            ),
            timeout=90,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_log(stack)}") from None
    assert detail.state is not None
    assert detail.state.diagnosis is not None
    assert detail.state.diagnosis.code_related
    code = detail.state.integrations.code_host
    assert code is not None
    assert code.repository == REPOSITORY
    assert [c.sha for c in code.commits] == [fix, suspect]
    evidence = {item.id for item in detail.state.diagnosis.evidence}
    assert {f"commit:{fix[:12]}", f"commit:{suspect[:12]}"} <= evidence
    issues = [i for i in stack.github.issues_of(REPOSITORY) if f"vigil-{incident_id}" in json.dumps(i)]
    assert len(issues) == 1
