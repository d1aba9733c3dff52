"""The Slack app of the API process (slack-bolt, asyncio): button presses on the incident message, the reject
form, `@Vigil <question>` and the `/vigil` command, over the one request URL `POST /slack/events` (or over
Socket Mode when an app-level token is set).

Bolt verifies every HTTP request's signature and timestamp (forged or stale: 401) and acknowledges within Slack's
3 seconds (`process_before_response=False`); the workflow update runs after the ack. A press becomes a workflow
update whose id is derived from the press (incident, proposal, user), so a press Slack delivers again, or a
double click, decides once. What a press changes shows in the incident's message, which only the integrations
worker writes: this app answers the person who pressed privately (an ephemeral message), and only when nothing
changed, saying why.

Text from Slack is data: a mention's question goes to DocQA and nowhere else (it can never cause an action), and
whatever is echoed back (the question, answers, titles, the workflow's reasons) is escaped for mrkdwn.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError

from api.incident_updates import (
    IncidentNotFound,
    TemporalUnavailable,
    UpdateRefused,
    live_state,
    locate,
    run_update,
)
from api.metrics import SLACK_INTERACTIONS
from vigil.incident_list import INCIDENT_ID_PATTERN, list_incidents
from vigil.integrations.models import AcknowledgeRequest
from vigil.integrations.slack.blocks import (
    ACK_ACTION,
    APPROVE_ACTION,
    REJECT_ACTION,
    RESOLVE_ACTION,
    SLACK_ACTOR_PREFIX,
    ButtonValue,
    actor_mrkdwn,
    code,
    inert,
    link,
    parse_button_value,
)
from vigil.models import (
    ApprovalOutcome,
    ApprovalRequest,
    Decision,
    IncidentState,
    IncidentStatus,
    IncidentSummary,
    ResolveRequest,
)
from vigil.rca.ask import ask_stack
from vigil.rca.models import ChatAnswer, ChatQuery
from vigil.settings import Settings

log = logging.getLogger(__name__)

Json = dict[str, Any]
TemporalSource = Callable[[], Client | None]
"""The API's Temporal client, read when needed: it is connected in the app's lifespan, after the app is built."""
Action = Literal["approve", "reject", "reject_submit", "ack", "resolve", "mention", "command", "malformed"]
Outcome = Literal["done", "refused", "not_approver", "error"]

COMMAND = "/vigil"
REJECT_CALLBACK = "vigil_reject_reason"
REASON_BLOCK = "vigil_reason"
REASON_INPUT = "reason"
MAX_REASON = 2000
SLACK_TIMEOUT_SECONDS = 10
ANSWER_WITHIN_SECONDS = 2.0
"""A `/vigil` answer ready by then is the command's acknowledgement; a slower one follows through response_url."""
MAX_LISTED = 20
OPEN_STATUSES = tuple(s for s in IncidentStatus if s not in (IncidentStatus.RESOLVED, IncidentStatus.CLOSED))
USAGE = (
    f"*Usage:* `{COMMAND} incidents` lists the open incidents; `{COMMAND} status <incident-id>` shows one.\n"
    "Mention me with a question (`@Vigil how do I fix a full disk?`) for an answer from the runbooks."
)
_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>")
_VERBS: dict[Action, str] = {
    "approve": "approve",
    "reject": "reject",
    "reject_submit": "reject",
    "ack": "acknowledge",
    "resolve": "resolve",
}
_SLACK_FAILURES = (SlackApiError, aiohttp.ClientError, TimeoutError)
"""What a Slack Web API call raises when Slack refuses it or cannot be reached."""


class RejectContext(BaseModel):
    """The reject form's `private_metadata`: what the Reject button decided on, and where to answer."""

    model_config = ConfigDict(extra="forbid")

    incident_id: Annotated[str, StringConstraints(pattern=INCIDENT_ID_PATTERN)]
    proposal_id: int
    channel: str | None = None
    user: str = Field(description="Who pressed Reject: Slack shows the form to no one else, so no one else submits it.")


@dataclass(frozen=True)
class Presser:
    """Who pressed or submitted, and where: the one person an answer goes to, as an ephemeral message."""

    client: AsyncWebClient
    user: str
    channel: str | None

    @property
    def actor(self) -> str:
        return f"{SLACK_ACTOR_PREFIX}{self.user}"

    async def tell(self, text: str) -> None:
        if self.channel is None:
            log.warning("Slack: no channel to answer %s in: %s", self.user, text)
            return
        try:
            await self.client.chat_postEphemeral(channel=self.channel, user=self.user, text=text)
        except _SLACK_FAILURES as exc:
            log.warning("Slack: chat.postEphemeral to %s failed (%s)", self.user, slack_failure(exc))


def slack_failure(exc: BaseException) -> str:
    """A Slack failure in a few words for the log: Slack's error code, or the exception's type."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__


def button_of(body: Json) -> ButtonValue | None:
    """The pressed button's value when it is one of Vigil's and names an incident id; else None."""
    actions = body.get("actions") or [{}]
    value = actions[0].get("value") if isinstance(actions[0], dict) else None
    if not isinstance(value, str):
        return None
    try:
        button = parse_button_value(value)
    except ValueError:
        return None
    return button if re.fullmatch(INCIDENT_ID_PATTERN, button.incident_id) else None


def presser_of(body: Json, client: AsyncWebClient) -> Presser:
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    return Presser(client=client, user=str((body.get("user") or {}).get("id") or ""), channel=channel)


def reject_form(context: RejectContext) -> Json:
    """The modal asking why a proposal is rejected; the reason is required (a rejection without one helps no one)."""
    return {
        "type": "modal",
        "callback_id": REJECT_CALLBACK,
        "private_metadata": context.model_dump_json(),
        "title": {"type": "plain_text", "text": "Reject remediation"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"Reject proposal {context.proposal_id} of {code(context.incident_id)}?",
                    "verbatim": True,
                },
            },
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": {"type": "plain_text", "text": "Why not?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_INPUT,
                    "multiline": True,
                    "max_length": MAX_REASON,
                },
            },
        ],
    }


def typed_reason(view: Json) -> str:
    values = ((view.get("state") or {}).get("values") or {}).get(REASON_BLOCK) or {}
    value = (values.get(REASON_INPUT) or {}).get("value")
    return value.strip()[:MAX_REASON] if isinstance(value, str) else ""


def console_link(settings: Settings, incident_id: str) -> str:
    return link(f"{settings.console_base_url}/incidents/{quote(incident_id, safe='')}", incident_id)


def answer_text(question: str, reply: ChatAnswer) -> str:
    """A DocQA answer as a thread reply: the question quoted, the answer, then its citations; all escaped."""
    lines = [f"> {inert(' '.join(question.split()), 300)}", inert(reply.answer, 3000)]
    if reply.citations:
        lines.append("*Sources*")
        lines += [f"• {code(c.id)} {inert(c.title, 200)} ({code(c.source)})" for c in reply.citations[:10]]
    return "\n".join(lines)


def incident_line(settings: Settings, row: IncidentSummary) -> str:
    severity = f"[{row.severity.value.upper()}] " if row.severity else ""
    status = inert(row.status.value.replace("_", " "), 40) if row.status else "starting"
    service = f" · {inert(row.service, 100)}" if row.service else ""
    return f"• {console_link(settings, row.incident_id)} {severity}{inert(row.title or '', 150)} — {status}{service}"


def status_text(settings: Settings, state: IncidentState) -> str:
    def words(value: str | None) -> str:
        return inert(value.replace("_", " "), 100) if value else "—"

    lines = [
        f"*{console_link(settings, state.incident_id)}* {inert(state.title, 200)}",
        f"*Status:* {words(state.status.value)} · *Severity:* {words(state.severity.value)} · "
        f"*Service:* {words(state.service)} · *Category:* {words(state.category)}",
    ]
    pending = state.pending_approval
    if pending is None:
        lines.append("*Pending approval:* none")
    else:
        line = (
            f"*Pending approval:* {code(pending.proposal.action)} (proposal {pending.proposal_id}, proposed by "
            f"{actor_mrkdwn(pending.proposal.proposed_by)}"
        )
        line += f", escalation level {pending.escalation_level})" if pending.escalation_level else ")"
        lines.append(line)
    if state.integrations.acknowledged_by:
        lines.append(f"*Acknowledged by* {actor_mrkdwn(state.integrations.acknowledged_by)}")
    return "\n".join(lines)


class SlackListeners:
    """The bolt listeners; each method's parameter names are what bolt injects (`ack`, `body`, `client`, ...).
    Each counts its outcome in SLACK_INTERACTIONS once it is done, answers included."""

    def __init__(self, settings: Settings, temporal: TemporalSource) -> None:
        self._settings = settings
        self._temporal = temporal

    # -- buttons -------------------------------------------------------------------------------------------------

    async def approve(self, ack: AsyncAck, body: Json, client: AsyncWebClient) -> None:
        await ack()
        presser, button = presser_of(body, client), button_of(body)
        if button is None or button.proposal_id is None:
            await self._malformed(presser)
            return
        if not await self._may_decide("approve", presser):
            return
        request = ApprovalRequest(decision=Decision.APPROVE, by=presser.actor, proposal_id=button.proposal_id)
        update_id = f"slack-approve-{button.incident_id}-{button.proposal_id}"
        await self._update("approve", presser, button.incident_id, "approval", request, ApprovalOutcome, update_id)

    async def reject(self, ack: AsyncAck, body: Json, client: AsyncWebClient) -> None:
        """Opens the form asking why; the rejection itself happens on its submission (`reject_submit`)."""
        await ack()
        presser, button = presser_of(body, client), button_of(body)
        if button is None or button.proposal_id is None:
            await self._malformed(presser)
            return
        if not await self._may_decide("reject", presser):
            return
        context = RejectContext(
            incident_id=button.incident_id, proposal_id=button.proposal_id, channel=presser.channel, user=presser.user
        )
        try:
            await client.views_open(trigger_id=str(body.get("trigger_id") or ""), view=reject_form(context))
        except _SLACK_FAILURES as exc:
            log.warning("Slack: views.open failed (%s)", slack_failure(exc))
            await presser.tell(":warning: Slack did not open the rejection form: press Reject again.")
            SLACK_INTERACTIONS.labels("reject", "error").inc()
            return
        SLACK_INTERACTIONS.labels("reject", "done").inc()

    async def reject_submit(self, ack: AsyncAck, body: Json, view: Json, client: AsyncWebClient) -> None:
        try:
            context = RejectContext.model_validate_json(str(view.get("private_metadata") or ""))
        except ValidationError:
            await ack()
            SLACK_INTERACTIONS.labels("malformed", "error").inc()
            log.warning("Slack: a reject form came back without Vigil's metadata; ignored")
            return
        reason = typed_reason(view)
        if not reason:
            await ack(response_action="errors", errors={REASON_BLOCK: "Say why it is rejected."})
            return
        await ack()
        presser = Presser(client=client, user=str((body.get("user") or {}).get("id") or ""), channel=context.channel)
        if presser.user != context.user:  # Slack shows a modal only to whoever opened it
            await self._malformed(presser)
            return
        if not await self._may_decide("reject_submit", presser):
            return
        request = ApprovalRequest(
            decision=Decision.REJECT, by=presser.actor, reason=reason, proposal_id=context.proposal_id
        )
        update_id = f"slack-reject-{context.incident_id}-{context.proposal_id}"
        await self._update(
            "reject_submit", presser, context.incident_id, "approval", request, ApprovalOutcome, update_id
        )

    async def acknowledge(self, ack: AsyncAck, body: Json, client: AsyncWebClient) -> None:
        """Anyone in the channel may say they are on it."""
        await ack()
        presser, button = presser_of(body, client), button_of(body)
        if button is None:
            await self._malformed(presser)
            return
        request = AcknowledgeRequest(by=presser.actor)
        update_id = f"slack-ack-{button.incident_id}-{presser.user}"
        await self._update("ack", presser, button.incident_id, "acknowledge", request, IncidentState, update_id)

    async def resolve(self, ack: AsyncAck, body: Json, client: AsyncWebClient) -> None:
        await ack()
        presser, button = presser_of(body, client), button_of(body)
        if button is None:
            await self._malformed(presser)
            return
        if not await self._may_decide("resolve", presser):
            return
        request = ResolveRequest(by=presser.actor, reason="resolved from Slack")
        # keyed on the press (a re-delivery decides once), not the incident alone: an incident that re-opens within
        # the same run can be resolved from Slack again
        press = str(((body.get("actions") or [{}])[0] or {}).get("action_ts") or "")
        update_id = f"slack-resolve-{button.incident_id}-{press}"
        await self._update("resolve", presser, button.incident_id, "resolve", request, IncidentState, update_id)

    def _connected(self) -> Client:
        temporal = self._temporal()
        if temporal is None:
            raise TemporalUnavailable("the API is not connected to Temporal yet")
        return temporal

    async def _may_decide(self, action: Action, presser: Presser) -> bool:
        """Approve, reject and resolve are for VIGIL_SLACK_APPROVERS when that is set; for anyone otherwise."""
        approvers = self._settings.slack_approvers
        if not approvers or presser.user in approvers:
            return True
        await presser.tell(
            f":no_entry: Only Vigil's approvers may {_VERBS[action]} (VIGIL_SLACK_APPROVERS): nothing was changed."
        )
        SLACK_INTERACTIONS.labels(action, "not_approver").inc()
        return False

    async def _malformed(self, presser: Presser) -> None:
        await presser.tell(":warning: Vigil cannot read this malformed button: nothing was changed.")
        SLACK_INTERACTIONS.labels("malformed", "error").inc()

    async def _update(
        self,
        action: Action,
        presser: Presser,
        incident_id: str,
        update: str,
        arg: BaseModel,
        result_type: type[BaseModel],
        update_id: str,
    ) -> None:
        """Run the update; success shows in the incident's message, a refusal or failure only to `presser`."""
        outcome: Outcome
        try:
            await run_update(self._connected(), incident_id, update, arg, result_type, update_id=update_id)
        except UpdateRefused as exc:
            outcome = "refused"
            text = f":warning: Could not {_VERBS[action]} {code(incident_id)}: {inert(str(exc), 500)}"
        except IncidentNotFound:
            outcome = "refused"
            text = f":warning: Could not {_VERBS[action]}: Vigil has no open incident {code(incident_id)}."
        except TemporalUnavailable as exc:
            log.warning("Slack %s on %s: %s", action, incident_id, exc)
            outcome = "error"
            text = ":warning: Vigil cannot reach its workflow engine right now: nothing was changed, try again soon."
        else:
            SLACK_INTERACTIONS.labels(action, "done").inc()
            return
        await presser.tell(text)
        SLACK_INTERACTIONS.labels(action, outcome).inc()

    # -- @Vigil <question> -----------------------------------------------------------------------------------

    async def mention(self, event: Json, client: AsyncWebClient) -> None:
        """Answers in the mention's thread. The question is untrusted text: it goes to DocQA, never to an action."""
        question = _MENTION.sub(" ", str(event.get("text") or "")).strip()
        outcome: Outcome = "done"
        if not question:
            text = USAGE
        else:
            text, outcome = await self._answer(question)
        try:
            await client.chat_postMessage(
                channel=str(event.get("channel") or ""),
                thread_ts=str(event.get("thread_ts") or event.get("ts") or ""),
                text=text,
                unfurl_links=False,
                unfurl_media=False,
            )
        except _SLACK_FAILURES as exc:
            log.warning("Slack: answering a mention failed (%s)", slack_failure(exc))
            outcome = "error"
        SLACK_INTERACTIONS.labels("mention", outcome).inc()

    async def _answer(self, question: str) -> tuple[str, Outcome]:
        try:
            reply = await ask_stack(self._connected(), ChatQuery(question=question[:2000]))
        except (WorkflowFailureError, RPCError, TemporalUnavailable) as exc:
            log.warning("Slack mention: DocQA failed (%s)", exc)
            return ":warning: Vigil could not answer that right now.", "error"
        return answer_text(question, reply), "done"

    # -- /vigil ------------------------------------------------------------------------------------------------

    async def command(self, ack: AsyncAck, command: Json, respond: AsyncRespond) -> None:
        """Answers privately: in the acknowledgement when ready within ANSWER_WITHIN_SECONDS, else right after."""
        work = asyncio.ensure_future(self._command_answer(str(command.get("text") or "").split()))
        try:
            text, outcome = await asyncio.wait_for(asyncio.shield(work), ANSWER_WITHIN_SECONDS)
        except TimeoutError:
            await ack(text="Looking it up…", response_type="ephemeral")
            text, outcome = await work
            try:
                await respond(text=text, response_type="ephemeral")
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("Slack: answering %s through response_url failed (%s)", COMMAND, type(exc).__name__)
                outcome = "error"
        else:
            await ack(text=text, response_type="ephemeral")
        SLACK_INTERACTIONS.labels("command", outcome).inc()

    async def _command_answer(self, words: list[str]) -> tuple[str, Outcome]:
        try:
            match words:
                case [] | ["help"]:
                    return USAGE, "done"
                case ["incidents"]:
                    return await self._open_incidents(self._connected()), "done"
                case ["status", incident_id]:
                    return await self._status(self._connected(), incident_id)
                case _:
                    return f"Vigil does not know {code(' '.join(words))}.\n{USAGE}", "refused"
        except (RPCError, TemporalUnavailable) as exc:
            log.warning("Slack %s: %s", COMMAND, exc)
            return ":warning: Vigil cannot reach its workflow engine right now: try again soon.", "error"

    async def _open_incidents(self, temporal: Client) -> str:
        found = await asyncio.gather(
            *(list_incidents(temporal, status=status, limit=MAX_LISTED + 1) for status in OPEN_STATUSES)
        )
        rows = sorted(
            (row for rows in found for row in rows),
            key=lambda row: row.started_at or datetime.min.replace(tzinfo=UTC),
            reverse=True,
        )
        if not rows:
            return "No open incidents."
        lines = [f"*Open incidents ({len(rows)}{'+' if len(rows) > MAX_LISTED else ''})*"]
        lines += [incident_line(self._settings, row) for row in rows[:MAX_LISTED]]
        if len(rows) > MAX_LISTED:
            lines.append(f"…and more in the console: {self._settings.console_base_url}")
        return "\n".join(lines)

    async def _status(self, temporal: Client, incident_id: str) -> tuple[str, Outcome]:
        if not re.fullmatch(INCIDENT_ID_PATTERN, incident_id):
            return f"{code(incident_id)} is not an incident id (`incident-…`).", "refused"
        location = await locate(temporal, incident_id)
        state = await live_state(temporal, location.workflow_id, location.run_id)
        if state is not None:
            return status_text(self._settings, state), "done"
        if location.run_id is None:
            return f"Vigil has no incident {code(incident_id)}.", "refused"
        return (
            f"No worker answered for {console_link(self._settings, location.incident_id)} just now: try again, "
            "or open it in the console.",
            "error",
        )


def build_slack_app(settings: Settings, temporal: TemporalSource) -> AsyncApp | None:
    """The bolt app, or None unless both the bot token and the signing secret are set."""
    token, secret = settings.slack_bot_token, settings.slack_signing_secret
    if token is None or secret is None:
        return None
    client = AsyncWebClient(
        token=token.get_secret_value(),
        base_url=settings.slack_api_url.rstrip("/") + "/",
        timeout=SLACK_TIMEOUT_SECONDS,
    )
    app = AsyncApp(client=client, signing_secret=secret.get_secret_value(), process_before_response=False)
    listeners = SlackListeners(settings, temporal)
    app.action(APPROVE_ACTION)(listeners.approve)
    app.action(REJECT_ACTION)(listeners.reject)
    app.action(ACK_ACTION)(listeners.acknowledge)
    app.action(RESOLVE_ACTION)(listeners.resolve)
    app.view_submission(REJECT_CALLBACK)(listeners.reject_submit)
    app.event("app_mention")(listeners.mention)
    app.command(COMMAND)(listeners.command)
    return app


@asynccontextmanager
async def socket_mode(app: AsyncApp | None, settings: Settings) -> AsyncIterator[None]:
    """While the API runs, Slack's events also over Socket Mode (an outbound WebSocket: no public URL needed)
    when an app-level token is set. The client connects, and reconnects, in the background, so Slack being
    unreachable never holds up the API's start."""
    token = settings.slack_app_token
    if app is None or token is None:
        yield
        return
    handler = AsyncSocketModeHandler(app, token.get_secret_value())
    connecting = asyncio.ensure_future(handler.connect_async())  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
        connecting.cancel()
        with suppress(asyncio.CancelledError):
            await connecting
