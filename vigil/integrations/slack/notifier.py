"""The Slack notifier: each incident is one top-level message in the configured channel, updated in place as the
incident changes, with the timeline events in its thread (one reply per sync, a line per event).

Never two messages, never an event told twice, even when the worker dies mid-sync and the activity is retried
with the state it had before: the top-level message carries metadata (`vigil_incident`, the incident id) and
each thread reply the range of events it told (`vigil_incident_events`). Without a state, the message is
looked up in the channel's history before anything is posted; before replying, the thread's recent replies are
read for events already told. So `chat:write` and the history scopes (`channels:history`, `groups:history`)
are needed, and `channels:read` (`groups:read`) when the channel is configured by name.

Slack's errors become the integration errors the activity understands: rate limits, 5xx and network failures
are `IntegrationUnavailable` (retried by Temporal, after Retry-After), a refused token or argument
`IntegrationRejected`. No message carries the token.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from vigil.integrations.base import IntegrationConfigError, IntegrationRejected, IntegrationUnavailable
from vigil.integrations.models import BriefEvent, IncidentBrief, NotifierState, NotifyInput
from vigil.integrations.slack.blocks import (
    METADATA_EVENT_TYPE,
    THREAD_METADATA_EVENT_TYPE,
    fallback_text,
    incident_blocks,
    is_bare_transition,
    thread_text,
)
from vigil.integrations.text import links_for, retry_after_seconds
from vigil.settings import Settings

TIMEOUT_SECONDS = 10
PAGE_SIZE = 200
CLOCK_SLACK = timedelta(minutes=1)
"""Margin between Vigil's clock (an incident's opened_at, an event's at) and Slack's message timestamps."""
AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"})
CHANNEL_ERRORS = frozenset({"channel_not_found", "not_in_channel", "is_archived"})
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")


class SlackRejected(IntegrationRejected):
    """Slack refused a call; `error` is its error code (None when it gave none)."""

    def __init__(self, message: str, *, error: str | None) -> None:
        super().__init__(message)
        self.error = error


class SlackNotifier:
    name = "slack"

    def __init__(self, settings: Settings) -> None:
        if settings.slack_bot_token is None or not settings.slack_channel:
            raise IntegrationConfigError("Slack needs SLACK_BOT_TOKEN and VIGIL_SLACK_CHANNEL")
        self._settings = settings
        self._channel_setting = settings.slack_channel
        self._channel_id = settings.slack_channel if _CHANNEL_ID.fullmatch(settings.slack_channel) else None
        self._api_url = settings.slack_api_url
        self._session: aiohttp.ClientSession | None = None
        self._client = AsyncWebClient(
            token=settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_api_url,
            timeout=TIMEOUT_SECONDS,
            retry_handlers=[],  # Temporal retries the activity, with backoff and Retry-After
        )

    async def check(self) -> str:
        self._open()
        try:
            who = await self._call("auth.test", self._client.auth_test())
            channel = await self._channel()
        except IntegrationRejected as exc:
            raise IntegrationConfigError(str(exc)) from None
        return (
            f"Slack: bot {who.get('user_id')} ({who.get('user')}) in team {who.get('team_id')} ({who.get('team')}), "
            f"posting to {channel}"
        )

    async def sync(self, data: NotifyInput) -> NotifierState:
        self._open()
        brief = data.brief
        text, blocks = self._render(brief)
        if data.state is None:
            state = await self._find_or_post(brief, text, blocks, told_seq=0)
        elif await self._update(data.state, brief, text, blocks):
            state = data.state
        else:  # deleted in Slack: posted anew; the events told in the old thread are not told again
            state = await self._find_or_post(brief, text, blocks, told_seq=data.state.told_seq)
        if state.permalink is None:
            state = state.model_copy(update={"permalink": await self._permalink(state)})
        return await self._tell(state, brief, data.events)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = self._client.session = None

    def _open(self) -> None:
        """One HTTP session (its pooled connections) for all calls, opened in the worker's event loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS))
            self._client.session = self._session

    # -- the top-level message ---------------------------------------------------------------------------------

    def _render(self, brief: IncidentBrief) -> tuple[str, list[dict[str, Any]]]:
        return fallback_text(brief), incident_blocks(brief, links_for(self._settings, brief))

    async def _update(
        self, state: NotifierState, brief: IncidentBrief, text: str, blocks: list[dict[str, Any]]
    ) -> bool:
        """Update the message in place; False when it is gone from Slack."""
        try:
            await self._call(
                "chat.update",
                self._client.chat_update(
                    channel=state.channel, ts=state.ts, text=text, blocks=blocks, metadata=_metadata(brief)
                ),
            )
        except SlackRejected as exc:
            if exc.error == "message_not_found":
                return False
            raise
        return True

    async def _find_or_post(
        self, brief: IncidentBrief, text: str, blocks: list[dict[str, Any]], *, told_seq: int
    ) -> NotifierState:
        """The incident's message: the one an earlier attempt posted (found by its metadata, then updated), or a
        new one."""
        channel = await self._channel()
        ts = await self._find(channel, brief)
        if ts is not None:
            state = NotifierState(channel=channel, ts=ts, told_seq=told_seq)
            if await self._update(state, brief, text, blocks):
                return state
        posted = await self._call(
            "chat.postMessage",
            self._client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=blocks,
                metadata=_metadata(brief),
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        return NotifierState(channel=str(posted["channel"]), ts=str(posted["ts"]), told_seq=told_seq)

    async def _find(self, channel: str, brief: IncidentBrief) -> str | None:
        """The ts of the incident's message in the channel's history since the incident opened, if any."""
        oldest = _slack_ts(brief.opened_at - CLOCK_SLACK)
        cursor: str | None = None
        while True:
            page = await self._call(
                "conversations.history",
                self._client.conversations_history(
                    channel=channel, oldest=oldest, include_all_metadata=True, limit=PAGE_SIZE, cursor=cursor
                ),
            )
            for message in page.get("messages") or []:
                if _payload(message, METADATA_EVENT_TYPE).get("incident_id") == brief.incident_id:
                    return str(message["ts"])
            cursor = _next_cursor(page)
            if cursor is None:
                return None

    async def _permalink(self, state: NotifierState) -> str:
        found = await self._call(
            "chat.getPermalink", self._client.chat_getPermalink(channel=state.channel, message_ts=state.ts)
        )
        return str(found["permalink"])

    async def _channel(self) -> str:
        """The configured channel's id (a `#name` is looked up once: history needs the id)."""
        if self._channel_id is not None:
            return self._channel_id
        wanted = self._channel_setting.removeprefix("#")
        cursor: str | None = None
        while True:
            page = await self._call(
                "conversations.list",
                self._client.conversations_list(
                    types="public_channel,private_channel", exclude_archived=True, limit=PAGE_SIZE, cursor=cursor
                ),
            )
            for channel in page.get("channels") or []:
                if channel.get("name") == wanted:
                    self._channel_id = str(channel["id"])
                    return self._channel_id
            cursor = _next_cursor(page)
            if cursor is None:
                raise IntegrationRejected(
                    f"Slack has no channel named #{wanted} that the bot can see: fix VIGIL_SLACK_CHANNEL "
                    "(a channel id, or the name of a channel the bot was invited to)"
                )

    # -- the thread --------------------------------------------------------------------------------------------

    async def _tell(self, state: NotifierState, brief: IncidentBrief, events: Sequence[BriefEvent]) -> NotifierState:
        """Reply in the thread with the events not told yet (those of an earlier, unrecorded reply excepted)."""
        new = [event for event in events if event.seq > state.told_seq]
        if not new:
            return state
        last = max(event.seq for event in new)
        told = await self._told_in_thread(state, brief, since=min(event.at for event in new))
        untold = [event for event in new if event.seq > told and not is_bare_transition(event)]
        if untold:
            await self._call(
                "chat.postMessage",
                self._client.chat_postMessage(
                    channel=state.channel,
                    thread_ts=state.ts,
                    text=thread_text(untold),
                    metadata={
                        "event_type": THREAD_METADATA_EVENT_TYPE,
                        "event_payload": {
                            "incident_id": brief.incident_id,
                            "first_seq": min(event.seq for event in untold),
                            "last_seq": last,
                        },
                    },
                    unfurl_links=False,
                    unfurl_media=False,
                ),
            )
        return state.model_copy(update={"told_seq": last})

    async def _told_in_thread(self, state: NotifierState, brief: IncidentBrief, *, since: datetime) -> int:
        """The last event seq a reply posted since `since` says it told: a retried sync whose earlier attempt
        replied but died before returning finds its reply here."""
        told = state.told_seq
        cursor: str | None = None
        while True:
            page = await self._call(
                "conversations.replies",
                self._client.conversations_replies(
                    channel=state.channel,
                    ts=state.ts,
                    oldest=_slack_ts(since - CLOCK_SLACK),
                    include_all_metadata=True,
                    limit=PAGE_SIZE,
                    cursor=cursor,
                ),
            )
            for message in page.get("messages") or []:
                payload = _payload(message, THREAD_METADATA_EVENT_TYPE)
                if payload.get("incident_id") == brief.incident_id and isinstance(payload.get("last_seq"), int):
                    told = max(told, payload["last_seq"])
            cursor = _next_cursor(page)
            if cursor is None:
                return told

    # -- errors ------------------------------------------------------------------------------------------------

    async def _call(self, method: str, call: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
        """One Web API call, its failure as an integration error."""
        try:
            return await call
        except SlackApiError as exc:
            raise _api_error(method, exc.response) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IntegrationUnavailable(
                f"Slack unreachable at {self._api_url} ({method}): {type(exc).__name__}: {exc}"
            ) from exc


def _api_error(method: str, response: AsyncSlackResponse) -> Exception:
    status = response.status_code
    if status == 429:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        later = f"; retry after {retry_after:g}s" if retry_after is not None else ""
        return IntegrationUnavailable(f"Slack rate-limited {method}{later}", retry_after=retry_after)
    if status >= 500:
        return IntegrationUnavailable(f"Slack answered HTTP {status} to {method}")
    data = response.data if isinstance(response.data, dict) else {}
    error = str(data["error"]) if data.get("error") else None
    if error in AUTH_ERRORS:
        return SlackRejected(f"Slack refused the bot token ({error}): fix SLACK_BOT_TOKEN", error=error)
    hint = ""
    if error in CHANNEL_ERRORS:
        hint = ": fix VIGIL_SLACK_CHANNEL, or invite the bot to the channel"
    elif error == "missing_scope" and data.get("needed"):
        hint = f": the Slack app needs the {data['needed']} scope(s)"
    return SlackRejected(f"Slack refused {method}: {error or f'HTTP {status}'}{hint}", error=error)


def _metadata(brief: IncidentBrief) -> dict[str, Any]:
    return {
        "event_type": METADATA_EVENT_TYPE,
        "event_payload": {"incident_id": brief.incident_id, "workflow_id": brief.workflow_id},
    }


def _payload(message: dict[str, Any], event_type: str) -> dict[str, Any]:
    metadata = message.get("metadata")
    if isinstance(metadata, dict) and metadata.get("event_type") == event_type:
        payload = metadata.get("event_payload")
        if isinstance(payload, dict):
            return payload
    return {}


def _next_cursor(page: AsyncSlackResponse) -> str | None:
    metadata = page.get("response_metadata") or {}
    cursor = metadata.get("next_cursor") if isinstance(metadata, dict) else None
    return str(cursor) if cursor else None


def _slack_ts(at: datetime) -> str:
    return f"{at.timestamp():.6f}"
