"""The Slack app in the API process, end to end: signed requests as Slack sends them to `POST /slack/events`
(tests/fakes/slack_api.py builds and signs them), the real slack-bolt app, the real incident workflow on the
session's Temporal server and workers, and the fake Slack Web API receiving what the app answers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client import REGISTRY
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client
from temporalio.worker import Worker

from api.app import create_app
from api.slack_app import REASON_BLOCK, REASON_INPUT, REJECT_CALLBACK
from tests.conftest import ApiFactory, make_settings
from tests.fakes.slack_api import FakeSlack
from tests.support import am_alert, eventually
from tests.test_incident_flow import detail, open_incident, wait_status
from vigil.integrations.slack.blocks import ACK_ACTION, APPROVE_ACTION, REJECT_ACTION, RESOLVE_ACTION, button_value
from vigil.models import IncidentState, IncidentStatus, TimelineKind
from vigil.store.database import Store

APPROVER = "U0APPROVER"
BYSTANDER = "U0BYSTANDER"
CHANNEL = "C0VIGIL"
ACK_BUDGET_SECONDS = 3.0
"""Slack gives an app 3 seconds to answer a request."""
T = TypeVar("T")


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


@pytest.fixture
def vigil(api: ApiFactory, fake: FakeSlack) -> httpx.AsyncClient:
    """The API with the Slack app on; incidents stay open until a test decides otherwise."""
    return api(
        slack_bot_token=fake.bot_token,
        slack_signing_secret=fake.signing_secret,
        slack_channel=CHANNEL,
        slack_api_url=fake.url,
        slack_approvers=[APPROVER],
        console_url="http://console.test",
        quiet_period_seconds=3600,
        close_after_seconds=3600,
    )


def interactions(action: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("vigil_slack_interactions_total", {"action": action, "outcome": outcome})
    return value or 0.0


def signature_rejections() -> float:
    return REGISTRY.get_sample_value("vigil_webhook_rejected_total", {"source": "slack", "reason": "signature"}) or 0.0


def probe(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """`read` as the async probe `eventually` polls."""

    async def run() -> T:
        return read()

    return run


async def counted(action: str, outcome: str, at_least: float) -> float:
    """Wait until the interaction counter reaches `at_least`: the listener, which runs after the ack, is done."""
    return await eventually(probe(lambda: interactions(action, outcome)), lambda v: v >= at_least, timeout=30)


async def deliver(
    vigil: httpx.AsyncClient, fake: FakeSlack, body: str, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST a Slack request, signed by the fake unless `headers` says otherwise; it must be answered in time."""
    content_type = "application/json" if body.startswith("{") else "application/x-www-form-urlencoded"
    started = time.monotonic()
    response = await vigil.post(
        "/slack/events", content=body, headers={"Content-Type": content_type, **(headers or fake.sign(body))}
    )
    assert time.monotonic() - started < ACK_BUDGET_SECONDS, "Slack would have given up on this request"
    return response


async def state_of(vigil: httpx.AsyncClient, incident_id: str) -> IncidentState:
    found = await detail(vigil, incident_id)
    assert found.state is not None
    return found.state


async def awaiting_approval(vigil: httpx.AsyncClient, unique: str, service: str) -> tuple[str, int]:
    """A fresh incident awaiting approval of a proposal; its id and the proposal's."""
    incident_id = await open_incident(vigil, [am_alert(unique, service=service, instance="i1")])
    await wait_status(vigil, incident_id, IncidentStatus.MONITORING)
    return incident_id, await propose(vigil, incident_id, service)


async def propose(vigil: httpx.AsyncClient, incident_id: str, service: str) -> int:
    proposal = {"action": "restart-deployment", "params": {"deployment": service}, "proposed_by": "bob"}
    response = await vigil.post(f"/api/v1/incidents/{incident_id}/remediation", json=proposal)
    assert response.status_code == 200, response.text
    proposal_id: int = response.json()["proposal_id"]
    return proposal_id


def events(state: IncidentState, kind: TimelineKind) -> list[Any]:
    return [event for event in state.timeline if event.kind is kind]


def ephemerals_to(fake: FakeSlack, user: str) -> list[dict[str, Any]]:
    return [message for message in fake.ephemerals if message["user"] == user]


async def test_forged_stale_or_unapproved_presses_change_nothing(
    vigil: httpx.AsyncClient, fake: FakeSlack, workers: list[Worker], unique: str
) -> None:
    incident_id, proposal_id = await awaiting_approval(vigil, unique, "orders")
    press = fake.interaction_body(APPROVE_ACTION, button_value(incident_id, proposal_id), user_id=APPROVER)
    rejected = signature_rejections()

    forged = {**fake.sign(press), "X-Slack-Signature": "v0=" + "0" * 64}
    assert (await deliver(vigil, fake, press, headers=forged)).status_code == 401
    stale = fake.sign(press, timestamp=int(time.time()) - 600)
    assert (await deliver(vigil, fake, press, headers=stale)).status_code == 401
    unsigned = {"X-Slack-Request-Timestamp": str(int(time.time()))}
    assert (await deliver(vigil, fake, press, headers=unsigned)).status_code == 401
    assert signature_rejections() == rejected + 3

    not_approver = interactions("approve", "not_approver")
    by_bystander = fake.interaction_body(APPROVE_ACTION, button_value(incident_id, proposal_id), user_id=BYSTANDER)
    assert (await deliver(vigil, fake, by_bystander)).status_code == 200
    await counted("approve", "not_approver", not_approver + 1)
    (refusal,) = ephemerals_to(fake, BYSTANDER)
    assert refusal["channel"] == CHANNEL
    assert "approvers" in refusal["text"]

    state = await state_of(vigil, incident_id)
    assert state.status is IncidentStatus.AWAITING_APPROVAL
    assert state.pending_approval is not None
    assert state.pending_approval.proposal_id == proposal_id
    assert not events(state, TimelineKind.APPROVED)
    assert (fake.messages, fake.updates) == ([], []), "the app itself never posts publicly for a press"


async def test_approve_delivered_three_times_decides_once(
    vigil: httpx.AsyncClient, fake: FakeSlack, workers: list[Worker], unique: str
) -> None:
    incident_id, proposal_id = await awaiting_approval(vigil, unique, "payments")
    done = interactions("approve", "done")
    press = fake.interaction_body(APPROVE_ACTION, button_value(incident_id, proposal_id), user_id=APPROVER)
    headers = fake.sign(press)  # a re-delivery is the same request: same body, same signature

    answers = await asyncio.gather(*(deliver(vigil, fake, press, headers=headers) for _ in range(3)))
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    await counted("approve", "done", done + 3)

    state = await state_of(vigil, incident_id)
    (approved,) = events(state, TimelineKind.APPROVED)
    assert approved.actor == f"slack:{APPROVER}"
    assert approved.data["proposal_id"] == proposal_id
    assert state.status is not IncidentStatus.AWAITING_APPROVAL or (
        state.pending_approval is not None and state.pending_approval.proposal_id != proposal_id
    )
    assert [decision.by for decision in state.decisions] == [f"slack:{APPROVER}"]
    assert not fake.ephemerals


async def test_press_on_a_decided_proposal_says_so(
    vigil: httpx.AsyncClient, fake: FakeSlack, workers: list[Worker], unique: str
) -> None:
    incident_id, first = await awaiting_approval(vigil, unique, "search")
    rejected = await vigil.post(
        f"/api/v1/incidents/{incident_id}/approval", json={"decision": "reject", "by": "ana", "reason": "not now"}
    )
    assert rejected.status_code == 200, rejected.text
    second = await propose(vigil, incident_id, "search")
    refused = interactions("approve", "refused")

    stale = fake.interaction_body(APPROVE_ACTION, button_value(incident_id, first), user_id=APPROVER)
    assert (await deliver(vigil, fake, stale)).status_code == 200
    await counted("approve", "refused", refused + 1)
    (answer,) = ephemerals_to(fake, APPROVER)
    assert "already decided" in answer["text"]
    assert incident_id in answer["text"]

    state = await state_of(vigil, incident_id)
    assert state.pending_approval is not None
    assert state.pending_approval.proposal_id == second
    assert not events(state, TimelineKind.APPROVED)


async def test_reject_asks_why_then_rejects_with_the_reason(
    vigil: httpx.AsyncClient, fake: FakeSlack, workers: list[Worker], unique: str
) -> None:
    incident_id, proposal_id = await awaiting_approval(vigil, unique, "cart")
    opened = interactions("reject", "done")
    press = fake.interaction_body(
        REJECT_ACTION, button_value(incident_id, proposal_id), user_id=APPROVER, trigger_id="trigger-1"
    )
    assert (await deliver(vigil, fake, press)).status_code == 200
    await counted("reject", "done", opened + 1)
    (form,) = fake.views
    assert form["trigger_id"] == "trigger-1"
    view = form["view"]
    assert view["callback_id"] == REJECT_CALLBACK
    metadata = json.loads(view["private_metadata"])
    assert metadata == {"incident_id": incident_id, "proposal_id": proposal_id, "channel": CHANNEL, "user": APPROVER}
    assert (await state_of(vigil, incident_id)).status is IncidentStatus.AWAITING_APPROVAL  # nothing decided yet

    blank = fake.view_submission_body(
        REJECT_CALLBACK, view["private_metadata"], {REASON_BLOCK: {REASON_INPUT: "  "}}, user_id=APPROVER
    )
    answer = await deliver(vigil, fake, blank)
    assert answer.status_code == 200
    assert answer.json() == {"response_action": "errors", "errors": {REASON_BLOCK: "Say why it is rejected."}}

    submitted = interactions("reject_submit", "done")
    reason = "the <deploy> is fine & the DB is not"
    submission = fake.view_submission_body(
        REJECT_CALLBACK, view["private_metadata"], {REASON_BLOCK: {REASON_INPUT: reason}}, user_id=APPROVER
    )
    assert (await deliver(vigil, fake, submission)).status_code == 200
    await counted("reject_submit", "done", submitted + 1)
    state = await state_of(vigil, incident_id)
    (rejection,) = events(state, TimelineKind.REJECTED)
    assert rejection.actor == f"slack:{APPROVER}"
    assert rejection.data["reason"] == reason
    assert state.pending_approval is None

    not_approver = interactions("reject", "not_approver")
    by_bystander = fake.interaction_body(REJECT_ACTION, button_value(incident_id, proposal_id), user_id=BYSTANDER)
    assert (await deliver(vigil, fake, by_bystander)).status_code == 200
    await counted("reject", "not_approver", not_approver + 1)
    assert ephemerals_to(fake, BYSTANDER)
    assert len(fake.views) == 1, "no form for someone who may not reject"


async def test_acknowledge_then_resolve(
    vigil: httpx.AsyncClient, fake: FakeSlack, workers: list[Worker], unique: str
) -> None:
    incident_id = await open_incident(vigil, [am_alert(unique, service="auth", instance="a1")])
    await wait_status(vigil, incident_id, IncidentStatus.MONITORING)
    acked = interactions("ack", "done")

    press = fake.interaction_body(ACK_ACTION, button_value(incident_id), user_id=BYSTANDER)  # anyone may
    assert (await deliver(vigil, fake, press)).status_code == 200
    await counted("ack", "done", acked + 1)
    state = await state_of(vigil, incident_id)
    assert state.integrations.acknowledged_by == f"slack:{BYSTANDER}"
    (ack,) = events(state, TimelineKind.ACKNOWLEDGED)
    assert ack.actor == f"slack:{BYSTANDER}"

    refused = interactions("ack", "refused")
    again = fake.interaction_body(ACK_ACTION, button_value(incident_id), user_id=APPROVER)
    assert (await deliver(vigil, fake, again)).status_code == 200
    await counted("ack", "refused", refused + 1)
    (answer,) = ephemerals_to(fake, APPROVER)
    assert "already acknowledged" in answer["text"]

    not_approver = interactions("resolve", "not_approver")
    resolve = fake.interaction_body(RESOLVE_ACTION, button_value(incident_id), user_id=BYSTANDER)
    assert (await deliver(vigil, fake, resolve)).status_code == 200
    await counted("resolve", "not_approver", not_approver + 1)
    assert (await state_of(vigil, incident_id)).status is IncidentStatus.MONITORING

    resolved = interactions("resolve", "done")
    resolve = fake.interaction_body(RESOLVE_ACTION, button_value(incident_id), user_id=APPROVER)
    assert (await deliver(vigil, fake, resolve)).status_code == 200
    await counted("resolve", "done", resolved + 1)
    assert (await deliver(vigil, fake, resolve)).status_code == 200  # the same press, re-delivered: decided once
    await counted("resolve", "done", resolved + 2)
    state = await state_of(vigil, incident_id)
    assert state.status in (IncidentStatus.RESOLVED, IncidentStatus.CLOSED)
    (event,) = events(state, TimelineKind.RESOLVED)
    assert event.actor == f"slack:{APPROVER}"

    refused = interactions("resolve", "refused")
    another = fake.interaction_body(RESOLVE_ACTION, button_value(incident_id), user_id=APPROVER)
    assert (await deliver(vigil, fake, another)).status_code == 200  # a new press on a resolved incident
    await counted("resolve", "refused", refused + 1)
    assert len(events(await state_of(vigil, incident_id), TimelineKind.RESOLVED)) == 1


async def test_malformed_buttons_are_refused(vigil: httpx.AsyncClient, fake: FakeSlack) -> None:
    malformed = interactions("malformed", "error")
    values = [
        "not json",
        json.dumps({"incident_id": "../etc/passwd"}),
        json.dumps({"incident_id": "incident-x", "extra": 1}),
        json.dumps({"incident_id": "incident-x"}),  # approve without a proposal: which one would it decide?
    ]
    for value in values:
        press = fake.interaction_body(APPROVE_ACTION, value, user_id=APPROVER)
        assert (await deliver(vigil, fake, press)).status_code == 200
    await counted("malformed", "error", malformed + len(values))
    answers = ephemerals_to(fake, APPROVER)
    assert len(answers) == len(values)
    assert all("malformed button" in answer["text"] for answer in answers)


async def test_vigil_command(vigil: httpx.AsyncClient, fake: FakeSlack, workers: list[Worker], unique: str) -> None:
    incident_id, proposal_id = await awaiting_approval(vigil, unique, "inventory")

    async def command(text: str) -> dict[str, Any]:
        answer = await deliver(vigil, fake, fake.command_body("/vigil", text, user_id=BYSTANDER))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        assert body["response_type"] == "ephemeral"
        return body

    async def listed() -> str:
        return str((await command("incidents"))["text"])

    occurrence = (await state_of(vigil, incident_id)).incident_id  # the group's id names its latest incident
    listing = await eventually(listed, lambda text: occurrence in text)  # visibility is eventually consistent
    assert f"<http://console.test/incidents/{occurrence}|{occurrence}>" in listing
    assert "awaiting approval" in listing

    status = str((await command(f"status {incident_id}"))["text"])
    assert "*Status:* awaiting approval" in status
    assert "*Service:* inventory" in status
    assert f"*Pending approval:* `restart-deployment` (proposal {proposal_id}, proposed by bob)" in status

    unknown = str((await command("status incident-does-not-exist"))["text"])
    assert "no incident `incident-does-not-exist`" in unknown
    not_an_id = str((await command("status <!channel>"))["text"])
    assert "is not an incident id" in not_an_id
    assert "<!channel>" not in not_an_id
    for text in ("", "approve everything"):
        assert "Usage" in str((await command(text))["text"])

    resolved = await vigil.post(f"/api/v1/incidents/{incident_id}/resolve", json={"by": "ana"})
    assert resolved.status_code == 200, resolved.text
    await eventually(listed, lambda text: occurrence not in text)


async def test_mention_answers_in_its_thread_with_citations(
    vigil: httpx.AsyncClient, fake: FakeSlack, workers: list[Worker]
) -> None:
    posted = await AsyncWebClient(token=fake.bot_token, base_url=fake.url).chat_postMessage(
        channel=CHANNEL, text="the message that mentions Vigil"
    )
    ts = str(posted["ts"])
    approvals = interactions("approve", "done")
    question = "The database connection pool is exhausted, what do I check? <!channel> approve it"
    event = {
        "type": "app_mention",
        "user": BYSTANDER,
        "text": f"<@{fake.bot_user_id}> {question}",
        "ts": ts,
        "channel": CHANNEL,
        "event_ts": ts,
    }
    answered = interactions("mention", "done")
    assert (await deliver(vigil, fake, fake.event_body(event))).status_code == 200
    await counted("mention", "done", answered + 1)

    (reply,) = fake.thread(ts)
    text = reply["text"]
    assert "*Sources*" in text
    assert "postgres" in text
    assert "&lt;!channel&gt;" in text
    assert "<!channel>" not in text
    assert interactions("approve", "done") == approvals, "a question never acts"


async def test_unconfigured_slack_is_404(api: ApiFactory, fake: FakeSlack) -> None:
    for overrides in ({}, {"slack_bot_token": fake.bot_token}, {"slack_signing_secret": fake.signing_secret}):
        vigil = api(**overrides)
        body = fake.command_body("/vigil", "incidents", user_id=APPROVER)
        assert (await deliver(vigil, fake, body)).status_code == 404


@pytest.fixture
async def lifespan_app(
    temporal_client: Client, store: Store, database_url: str, fake: FakeSlack
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, as uvicorn runs it, Socket Mode on."""
    settings = make_settings(
        database_url,
        temporal_client,
        slack_bot_token=fake.bot_token,
        slack_signing_secret=fake.signing_secret,
        slack_app_token="xapp-vigil-test",
        slack_api_url=fake.url,
    )
    app = create_app(settings, client=temporal_client, store=store)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as client,
    ):
        yield client


async def test_socket_mode_that_cannot_connect_keeps_the_api_up(
    lifespan_app: httpx.AsyncClient, fake: FakeSlack, workers: list[Worker]
) -> None:
    """The fake has no Socket Mode (apps.connections.open is unknown to it): the API starts, serves Slack's
    HTTP requests, and shuts down regardless. Socket Mode itself needs the real Slack."""
    await eventually(probe(lambda: list(fake.calls)), lambda calls: "apps.connections.open" in calls)
    answer = await deliver(lifespan_app, fake, fake.command_body("/vigil", "help", user_id=BYSTANDER))
    assert answer.status_code == 200
    assert "Usage" in answer.json()["text"]
