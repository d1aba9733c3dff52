"""The Slack notifier with the real slack_sdk against a fake Slack Web API over HTTP: one message per incident
(even when a worker died between posting and recording), updated in place, events told once in its thread,
Slack's failures as the integration errors the activity retries or gives up on, and untrusted text kept inert."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import FakeSlack
from tests.support import eventually
from vigil.analysis.models import ChainHop
from vigil.integrations.base import IntegrationConfigError, IntegrationRejected, IntegrationUnavailable
from vigil.integrations.models import (
    BriefDecision,
    BriefEvent,
    BriefProposal,
    IncidentBrief,
    NotifierState,
    NotifyInput,
    PullRequestRef,
)
from vigil.integrations.slack import notifier as notifier_module
from vigil.integrations.slack.blocks import (
    ACK_ACTION,
    APPROVE_ACTION,
    METADATA_EVENT_TYPE,
    REJECT_ACTION,
    RESOLVE_ACTION,
    incident_blocks,
    parse_button_value,
)
from vigil.integrations.slack.notifier import SlackNotifier
from vigil.integrations.text import incident_links
from vigil.rca.models import EvidenceItem
from vigil.settings import Settings
from vigil.severity import Severity

CHANNEL = "C0VIGIL"
HOSTILE = "<!channel> <!here|here> @here @channel <@U0EVIL> <https://evil.example/x|click me> &amp; <#C0VIGIL>"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def slack_settings(fake: FakeSlack, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": SecretStr(fake.bot_token),
        "slack_channel": CHANNEL,
        "slack_api_url": fake.url,
        "console_url": "http://console.test/",
        "temporal_ui_url": "http://temporal.test",
        "temporal_namespace": "vigil-ns",
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
async def notifier(slack: FakeSlack) -> AsyncIterator[SlackNotifier]:
    plugin = SlackNotifier(slack_settings(slack))
    yield plugin
    await plugin.close()


def make_brief(**changes: Any) -> IncidentBrief:
    incident_id = changes.pop("incident_id", f"inc-{uuid.uuid4().hex[:8]}")
    values: dict[str, Any] = {
        "incident_id": incident_id,
        "workflow_id": f"incident-{incident_id}",
        "title": "HighLatency on checkout",
        "status": "triaging",
        "severity": Severity.CRITICAL,
        "service": "checkout",
        "firing": 2,
        "alerts": 3,
        "opened_at": datetime.now(UTC) - timedelta(minutes=5),
    }
    values.update(changes)
    return IncidentBrief.model_validate(values)


def event(seq: int, message: str, *, kind: str = "alert_new", actor: str = "vigil") -> BriefEvent:
    at = datetime.now(UTC) - timedelta(minutes=4) + timedelta(seconds=seq)
    return BriefEvent(seq=seq, at=at, kind=kind, message=message, actor=actor)


def pending(proposal_id: int = 7) -> BriefProposal:
    return BriefProposal(
        proposal_id=proposal_id,
        action="restart_deployment",
        params={"deployment": "checkout", "namespace": "prod"},
        proposed_by="vigil",
        reason="pods are crash-looping",
        policy_reason="restarts in prod need approval",
        dry_run=True,
        escalation_level=1,
    )


def texts(value: Any) -> list[str]:
    """Every `text` string anywhere in a message or its blocks."""
    if isinstance(value, dict):
        return [
            text
            for key, item in value.items()
            for text in ([item] if key == "text" and isinstance(item, str) else texts(item))
        ]
    if isinstance(value, list):
        return [t for item in value for t in texts(item)]
    return []


def mrkdwn_objects(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("type") == "mrkdwn":
                found.append(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(blocks)
    return found


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        element["action_id"]: element
        for block in message.get("blocks", [])
        if block["type"] == "actions"
        for element in block["elements"]
    }


# -- the one message -------------------------------------------------------------------------------------------


async def test_first_sync_posts_one_message_with_metadata_links_and_permalink(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    brief = make_brief()
    state = await notifier.sync(NotifyInput(brief=brief))

    [message] = slack.top_level(CHANNEL)
    assert (state.channel, state.ts, state.told_seq) == (CHANNEL, message["ts"], 0)
    assert state.permalink == f"https://vigil-test.slack.com/archives/{CHANNEL}/p{message['ts'].replace('.', '')}"
    assert message["metadata"] == {
        "event_type": METADATA_EVENT_TYPE,
        "event_payload": {"incident_id": brief.incident_id, "workflow_id": brief.workflow_id},
    }
    assert message["blocks"][0]["text"]["text"].endswith("[CRITICAL] HighLatency on checkout")
    context = message["blocks"][-1]["elements"][0]["text"]
    assert f"<http://console.test/incidents/{brief.incident_id}|Open in Vigil>" in context
    assert f"<http://temporal.test/namespaces/vigil-ns/workflows/{brief.workflow_id}|Temporal workflow>" in context
    assert "HighLatency on checkout" in message["text"]


async def test_later_syncs_update_the_message_in_place(slack: FakeSlack, notifier: SlackNotifier) -> None:
    brief = make_brief()
    state = await notifier.sync(NotifyInput(brief=brief))
    first_calls = len(slack.calls)
    diagnosed = brief.model_copy(
        update={"status": "awaiting_approval", "category": "database", "confidence": 0.87, "root_cause": "pool full"}
    )
    state = await notifier.sync(NotifyInput(brief=diagnosed, state=state))
    resolved = diagnosed.model_copy(update={"status": "resolved", "resolved_at": datetime.now(UTC)})
    final = await notifier.sync(NotifyInput(brief=resolved, state=state))

    [message] = slack.top_level()
    assert final.ts == message["ts"] == state.ts
    assert slack.calls[first_calls:] == ["chat.update", "chat.update"]  # a known state needs no lookup
    shown = "\n".join(texts(message["blocks"]))
    assert "*Status*\nresolved" in shown
    assert "database (87%)" in shown
    assert "pool full" in shown
    assert "(resolved)" in message["text"]


async def test_events_are_told_once_in_the_thread(slack: FakeSlack, notifier: SlackNotifier) -> None:
    brief = make_brief()
    first = [
        event(1, "firing: HighLatency on checkout/pod-1"),
        event(2, "open -> triaging", kind="status"),
        event(3, "Diagnosis failed: the model timed out", kind="status"),
    ]
    state = await notifier.sync(NotifyInput(brief=brief, events=first))
    assert state.told_seq == 3
    [reply] = slack.thread(state.ts)
    lines = reply["text"].splitlines()
    assert len(lines) == 2, lines  # the bare transition is left out: the message shows the status
    assert "firing: HighLatency" in lines[0]
    assert "Diagnosis failed" in lines[1]
    assert reply["metadata"]["event_payload"] == {"incident_id": brief.incident_id, "first_seq": 1, "last_seq": 3}

    state = await notifier.sync(NotifyInput(brief=brief, events=first, state=state))
    assert len(slack.thread(state.ts)) == 1

    later = [*first, event(4, "Approved restart", kind="approved", actor="slack:U0ALICE"), event(5, "restart ran")]
    state = await notifier.sync(NotifyInput(brief=brief, events=later, state=state))
    assert state.told_seq == 5
    replies = slack.thread(state.ts)
    assert len(replies) == 2
    newest = replies[1]["text"].splitlines()
    assert len(newest) == 2
    assert "Approved restart" in newest[0]
    assert "<@U0ALICE>" in newest[0]
    assert "restart ran" in newest[1]
    assert len(slack.top_level()) == 1


async def test_a_retried_sync_does_not_reply_twice(slack: FakeSlack, notifier: SlackNotifier) -> None:
    """The worker replied, then died before the workflow recorded told_seq: the retry has the old state."""
    brief = make_brief()
    before = await notifier.sync(NotifyInput(brief=brief))
    events = [event(1, "firing: one"), event(2, "firing: two")]
    await notifier.sync(NotifyInput(brief=brief, events=events, state=before))

    retried = await notifier.sync(NotifyInput(brief=brief, events=events, state=before))

    assert retried.told_seq == 2
    assert len(slack.thread(before.ts)) == 1
    assert "conversations.replies" in slack.calls


async def test_lost_state_finds_the_message_by_metadata(
    slack: FakeSlack, notifier: SlackNotifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker posted, then died before returning: the retry (no state) finds the message, pages through a
    busy channel, passes over another incident's message, and posts nothing new."""
    monkeypatch.setattr(notifier_module, "PAGE_SIZE", 2)
    brief = make_brief()
    first = await notifier.sync(NotifyInput(brief=brief))
    await notifier.sync(NotifyInput(brief=make_brief(title="Another incident")))
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.url)
    for n in range(5):
        await client.chat_postMessage(channel=CHANNEL, text=f"chatter {n}")
    lookups = slack.calls.count("conversations.history")

    changed = brief.model_copy(update={"status": "monitoring"})
    again = await notifier.sync(NotifyInput(brief=changed, events=[event(1, "firing: again")]))

    assert (again.channel, again.ts) == (first.channel, first.ts)
    assert again.permalink == first.permalink
    incident_posts = [m for m in slack.messages if m.get("metadata", {}).get("event_type") == METADATA_EVENT_TYPE]
    assert len(incident_posts) == 2  # this incident's and the other one's
    assert slack.calls.count("conversations.history") - lookups == 4  # 7 messages, 2 a page, the match oldest
    [message] = [m for m in slack.top_level() if m["ts"] == first.ts]
    assert "*Status*\nmonitoring" in "\n".join(texts(message["blocks"]))
    assert len(slack.thread(first.ts)) == 1


async def test_a_held_post_cancelled_then_retried_leaves_one_message(slack: FakeSlack, notifier: SlackNotifier) -> None:
    brief = make_brief()
    gate = slack.hold("chat.postMessage")
    attempt = asyncio.create_task(notifier.sync(NotifyInput(brief=brief)))

    async def held() -> bool:
        return slack.held.is_set()

    await eventually(held, bool, timeout=10)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    gate.set()

    state = await notifier.sync(NotifyInput(brief=brief))

    [message] = slack.top_level()
    assert state.ts == message["ts"] == slack.messages[0]["ts"]
    assert slack.calls.count("chat.postMessage") == 1


async def test_a_deleted_message_is_posted_anew(slack: FakeSlack, notifier: SlackNotifier) -> None:
    gone = NotifierState(channel=CHANNEL, ts="1500000000.000100", permalink="https://old.example", told_seq=4)
    state = await notifier.sync(NotifyInput(brief=make_brief(), state=gone, events=[event(4, "told before")]))

    [message] = slack.top_level()
    assert state.ts == message["ts"] != gone.ts
    assert state.told_seq == 4
    assert state.permalink is not None
    assert message["ts"].replace(".", "") in state.permalink
    assert slack.thread(message["ts"]) == []


async def test_a_channel_given_by_name_is_resolved_to_its_id() -> None:
    with FakeSlack(channels=("C0OTHER1", "C0VIGIL"), channel_names={"C0VIGIL": "incidents"}) as fake:
        plugin = SlackNotifier(slack_settings(fake, slack_channel="#incidents"))
        try:
            assert "posting to C0VIGIL" in await plugin.check()
            brief = make_brief()
            first = await plugin.sync(NotifyInput(brief=brief))
            again = await plugin.sync(NotifyInput(brief=brief))  # lost state: history needs the id
        finally:
            await plugin.close()
        assert first.channel == again.channel == "C0VIGIL"
        assert first.ts == again.ts
        assert len(fake.top_level("C0VIGIL")) == 1

        missing = SlackNotifier(slack_settings(fake, slack_channel="#nowhere"))
        try:
            with pytest.raises(IntegrationConfigError, match="VIGIL_SLACK_CHANNEL"):
                await missing.check()
        finally:
            await missing.close()


# -- Slack's failures ------------------------------------------------------------------------------------------


async def test_rate_limit_is_unavailable_with_retry_after(slack: FakeSlack, notifier: SlackNotifier) -> None:
    slack.fail("chat.postMessage", status=429, retry_after=7)
    brief = make_brief()
    with pytest.raises(IntegrationUnavailable) as raised:
        await notifier.sync(NotifyInput(brief=brief))
    assert raised.value.retry_after == 7
    assert slack.top_level() == []

    await notifier.sync(NotifyInput(brief=brief))  # what Temporal's retry does
    assert len(slack.top_level()) == 1


async def test_server_errors_are_unavailable(slack: FakeSlack, notifier: SlackNotifier) -> None:
    brief = make_brief()
    slack.fail("conversations.history", status=503)
    with pytest.raises(IntegrationUnavailable, match="HTTP 503") as raised:
        await notifier.sync(NotifyInput(brief=brief))
    assert raised.value.retry_after is None
    assert slack.top_level() == []

    slack.fail("chat.getPermalink", status=500)  # after the post: the retry must find it
    with pytest.raises(IntegrationUnavailable, match="HTTP 500"):
        await notifier.sync(NotifyInput(brief=brief))
    state = await notifier.sync(NotifyInput(brief=brief))
    [message] = slack.top_level()
    assert state.ts == message["ts"]


async def test_an_unreachable_slack_is_unavailable(slack: FakeSlack, notifier: SlackNotifier) -> None:
    await notifier.check()  # a pooled connection exists, then the server goes away
    slack.stop()
    with pytest.raises(IntegrationUnavailable, match="unreachable") as raised:
        await notifier.sync(NotifyInput(brief=make_brief()))
    assert slack.bot_token not in str(raised.value)
    with pytest.raises(IntegrationUnavailable):
        await notifier.check()


async def test_a_refused_token_is_a_config_error_without_the_token(slack: FakeSlack) -> None:
    secret = "xoxb-not-the-right-one-123456"
    plugin = SlackNotifier(slack_settings(slack, slack_bot_token=SecretStr(secret)))
    try:
        with pytest.raises(IntegrationConfigError, match="SLACK_BOT_TOKEN") as raised:
            await plugin.check()
        assert secret not in str(raised.value)
        assert "invalid_auth" in str(raised.value)
        with pytest.raises(IntegrationRejected, match="SLACK_BOT_TOKEN"):
            await plugin.sync(NotifyInput(brief=make_brief()))
    finally:
        await plugin.close()
    assert slack.messages == []


async def test_check_says_who_the_bot_is(notifier: SlackNotifier) -> None:
    identity = await notifier.check()
    assert "U0VIGILBOT" in identity
    assert "T0VIGIL" in identity


async def test_an_unknown_channel_is_rejected_with_slacks_error(slack: FakeSlack) -> None:
    plugin = SlackNotifier(slack_settings(slack, slack_channel="C0MISSING"))
    try:
        with pytest.raises(IntegrationRejected, match=r"channel_not_found.*VIGIL_SLACK_CHANNEL"):
            await plugin.sync(NotifyInput(brief=make_brief()))
    finally:
        await plugin.close()


# -- what the message shows ------------------------------------------------------------------------------------


async def test_buttons_only_while_they_can_act(slack: FakeSlack, notifier: SlackNotifier) -> None:
    brief = make_brief(status="awaiting_approval", pending=pending(7))
    state = await notifier.sync(NotifyInput(brief=brief))
    [message] = slack.top_level()
    shown = buttons(message)
    assert list(shown) == [APPROVE_ACTION, REJECT_ACTION, ACK_ACTION, RESOLVE_ACTION]
    assert (shown[APPROVE_ACTION]["style"], shown[REJECT_ACTION]["style"]) == ("primary", "danger")
    decided = parse_button_value(shown[APPROVE_ACTION]["value"])
    assert (decided.incident_id, decided.proposal_id) == (brief.incident_id, 7)
    assert parse_button_value(shown[REJECT_ACTION]["value"]) == decided
    ack = parse_button_value(shown[ACK_ACTION]["value"])
    assert (ack.incident_id, ack.proposal_id) == (brief.incident_id, None)
    pending_text = "\n".join(texts(message["blocks"]))
    for part in ("restart_deployment", "deployment=checkout", "_(dry run)_", "escalation level 1", "pods are"):
        assert part in pending_text

    acknowledged = brief.model_copy(update={"pending": None, "status": "remediating", "acknowledged_by": "slack:U0BOB"})
    state = await notifier.sync(NotifyInput(brief=acknowledged, state=state))
    assert list(buttons(slack.top_level()[0])) == [RESOLVE_ACTION]

    closed = acknowledged.model_copy(update={"status": "closed", "pending": pending(8)})
    await notifier.sync(NotifyInput(brief=closed, state=state))
    assert buttons(slack.top_level()[0]) == {}


def test_button_values_refuse_garbage() -> None:
    assert parse_button_value('{"incident_id":"inc-1","proposal_id":3}').proposal_id == 3
    garbage_values = [
        "",
        "not json",
        "[]",
        '{"proposal_id": 3}',
        '{"incident_id": "x", "proposal_id": "3"}',
        '{"incident_id": "x", "extra": 1}',
        '{"incident_id": ""}',
    ]
    for garbage in garbage_values:
        with pytest.raises(ValueError, match="not a Vigil button value"):
            parse_button_value(garbage)


async def test_untrusted_text_cannot_mention_or_link(slack: FakeSlack, notifier: SlackNotifier) -> None:
    brief = make_brief(
        title=f"Alert {HOSTILE}",
        root_cause=f"cause {HOSTILE}",
        component=f"db {HOSTILE}",
        chain=[ChainHop(component="checkout", relation="alert fired"), ChainHop(component="db", relation=HOSTILE)],
        evidence=[EvidenceItem(id="log:1", kind="log", title=f"ERROR {HOSTILE}")],
        runbooks=["https://runbooks.example/a|<!channel>", "javascript:alert(1)"],
    )
    state = await notifier.sync(NotifyInput(brief=brief, events=[event(1, f"firing: {HOSTILE}")]))

    [message] = slack.top_level()
    [reply] = slack.thread(state.ts)
    mrkdwn = mrkdwn_objects(message["blocks"])
    assert mrkdwn
    assert all(obj["verbatim"] is True for obj in mrkdwn)
    for text in [*(obj["text"] for obj in mrkdwn), message["text"], reply["text"]]:
        assert "<!" not in text
        assert "<@U0EVIL" not in text
        assert "<https://evil" not in text
        assert "<#C0VIGIL" not in text
        assert "@here" not in text
        assert "@channel" not in text
    shown = "\n".join(obj["text"] for obj in mrkdwn)
    assert "&lt;!channel&gt;" in shown
    assert "&amp;amp;" in shown
    assert "<https://runbooks.example/a%7C&lt;!channel&gt;|" in shown  # a link, whose label and URL are inert
    assert "`javascript:alert(1)`" in shown  # not a link


async def test_the_root_cause_chain_is_shown_hop_by_hop_with_its_evidence(
    slack: FakeSlack, notifier: SlackNotifier
) -> None:
    chain = [
        ChainHop(component="frontend", relation="alert fired", evidence=["alert:HighErrorRate"]),
        ChainHop(component="orders", relation="reports refused", evidence=["relation:frontend->orders"]),
        ChainHop(component="pg-orders-1.db.internal", relation="named by 3 services", evidence=["suspect:pg"]),
    ]
    await notifier.sync(NotifyInput(brief=make_brief(root_cause="database refused", chain=chain)))
    [message] = slack.top_level()
    [section] = [t for t in texts(message["blocks"]) if t.startswith("*Root-cause chain*")]
    assert section.splitlines() == [
        "*Root-cause chain*",
        "`frontend` alert fired (`alert:HighErrorRate`)",
        "→ `orders` reports refused (`relation:frontend-&gt;orders`)",
        "→ `pg-orders-1.db.internal` named by 3 services (`suspect:pg`)",
    ]
    await notifier.sync(NotifyInput(brief=make_brief(root_cause="database refused")))
    first, without_chain = slack.top_level()
    assert first == message
    assert not any("Root-cause chain" in t for t in texts(without_chain["blocks"]))


async def test_slack_limits_hold_for_huge_incidents(slack: FakeSlack, notifier: SlackNotifier) -> None:
    """The fake refuses what Slack refuses (invalid_blocks): a huge incident still posts."""
    merged = datetime.now(UTC)
    brief = make_brief(
        title="T" * 500,
        root_cause="&" * 5000,
        component="c" * 1000,
        evidence=[EvidenceItem(id=f"log:{n}", kind="log", title="<" * 2000) for n in range(10)],
        runbooks=[f"https://runbooks.example/{'r' * 3000}/{n}" for n in range(10)],
        pending=pending().model_copy(update={"params": {f"p{n}": ">" * 1500 for n in range(20)}}),
        decisions=[
            BriefDecision(decision="rejected", by=f"api:{'x' * 150}", action="a" * 200, reason="&" * 2000, at=merged)
            for _ in range(5)
        ],
        pull_requests=[
            PullRequestRef(
                repository="acme/shop",
                number=n,
                title="<" * 300,
                url=f"https://gh.example/pr/{n}",
                merged_by="dev",
                merged_at=merged,
            )
            for n in range(60)
        ],
        status="awaiting_approval",
    )
    events = [event(n, "&" * 3000) for n in range(1, 60)]
    state = await notifier.sync(NotifyInput(brief=brief, events=events))

    [message] = slack.top_level()
    assert len(message["blocks"]) <= 50
    assert len(message["blocks"][0]["text"]["text"]) <= 150
    assert all(len(obj["text"]) <= 3000 for obj in mrkdwn_objects(message["blocks"]))
    assert "more" in "\n".join(texts(message["blocks"]))  # lists were cut whole lines at a time, and say so
    [reply] = slack.thread(state.ts)
    assert len(reply["text"]) <= 12000
    assert reply["text"].rstrip().endswith("more")


def test_actors_and_decisions_render_as_mentions() -> None:
    at = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
    brief = make_brief(
        acknowledged_by="slack:U0ALICE",
        acknowledged_at=at,
        decisions=[
            BriefDecision(decision="approved", by="slack:U0BOB", action="restart", at=at),
            BriefDecision(decision="rejected", by="api:<@U0EVIL>", action="scale", reason="too big", at=at),
        ],
    )
    links = incident_links(brief, console_base_url="http://c.test", temporal_ui_base_url=None, namespace="default")
    shown = "\n".join(texts(incident_blocks(brief, links)))
    assert "*Acknowledged* by <@U0ALICE> at 2026-03-01 12:05 UTC" in shown
    assert "approved `restart` by <@U0BOB> at 2026-03-01 12:05 UTC" in shown
    assert "rejected `scale` by api:&lt;@U0EVIL&gt; at 2026-03-01 12:05 UTC: too big" in shown
    assert "Temporal workflow" not in shown  # no Temporal Web UI known: no link


# -- the fake itself -------------------------------------------------------------------------------------------


async def test_fake_refuses_calls_without_the_bot_token(slack: FakeSlack) -> None:
    async with httpx.AsyncClient(base_url=slack.url) as http:
        missing = await http.post("chat.postMessage", json={"channel": CHANNEL, "text": "hi"})
        wrong = await http.post(
            "chat.postMessage", json={"channel": CHANNEL, "text": "hi"}, headers={"Authorization": "Bearer xoxb-no"}
        )
        right = await http.post(
            "chat.postMessage", json={"channel": CHANNEL}, headers={"Authorization": f"Bearer {slack.bot_token}"}
        )
    assert (missing.status_code, missing.json()) == (200, {"ok": False, "error": "not_authed"})
    assert (wrong.status_code, wrong.json()) == (200, {"ok": False, "error": "invalid_auth"})
    assert right.json() == {"ok": False, "error": "no_text"}
    assert slack.messages == []
    assert slack.calls == ["chat.postMessage"] * 3


async def test_fake_form_bodies_metadata_and_paging(slack: FakeSlack) -> None:
    auth = {"Authorization": f"Bearer {slack.bot_token}"}
    metadata = {"event_type": "probe", "event_payload": {"n": 1}}
    async with httpx.AsyncClient(base_url=slack.url, headers=auth) as http:
        posted = await http.post(
            "chat.postMessage",
            data={
                "channel": CHANNEL,
                "text": "form",
                "blocks": json.dumps([{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]),
                "metadata": json.dumps(metadata),
            },
        )
        bad_metadata = await http.post(
            "chat.postMessage", json={"channel": CHANNEL, "text": "x", "metadata": {"event_type": "probe"}}
        )
        for n in range(3):
            await http.post("chat.postMessage", json={"channel": CHANNEL, "text": f"later {n}"})
        await http.post(
            "chat.postMessage", json={"channel": CHANNEL, "text": "reply", "thread_ts": posted.json()["ts"]}
        )
        plain = await http.get("conversations.history", params={"channel": CHANNEL})
        seen: list[str] = []
        cursor = ""
        while True:
            page = (
                await http.get(
                    "conversations.history",
                    params={"channel": CHANNEL, "limit": 1, "cursor": cursor, "include_all_metadata": "true"},
                )
            ).json()
            seen += [m["text"] for m in page["messages"]]
            cursor = page.get("response_metadata", {}).get("next_cursor", "")
            if not page["has_more"]:
                break
        unknown = await http.get("conversations.history", params={"channel": "C0NOPE"})

    assert slack.messages[0]["blocks"][0]["text"]["text"] == "hi"
    assert slack.messages[0]["metadata"] == metadata
    assert bad_metadata.json()["error"] == "invalid_metadata_format"
    assert all("metadata" not in m for m in plain.json()["messages"])
    assert seen == ["later 2", "later 1", "later 0", "form"]  # newest first, top-level only
    assert page["messages"][0]["metadata"] == metadata
    assert unknown.json()["error"] == "channel_not_found"
    ts = slack.messages[0]["ts"]
    assert [m["text"] for m in slack.thread(ts)] == ["reply"]
    assert all(a["ts"] < b["ts"] for a, b in zip(slack.messages, slack.messages[1:], strict=False))


def test_fake_signs_like_slack(slack: FakeSlack) -> None:
    body = slack.interaction_body(APPROVE_ACTION, '{"incident_id":"inc-1","proposal_id":1}', user_id="U0ALICE")
    headers = slack.sign(body)
    verifier = SignatureVerifier(slack.signing_secret)
    assert verifier.is_valid(body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    assert not verifier.is_valid(body + "x", headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
