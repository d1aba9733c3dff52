"""`POST /slack/events`: the Slack app's one request URL, for events (`app_mention`), interactivity (buttons, the
reject form) and the `/vigil` command.

Slack cannot send Vigil's bearer token: its signature is this route's authentication. Bolt checks it, and the
request's timestamp, on every request; a forged or stale request is answered 401 and counted. Without a signing
secret and a bot token the route answers 404, as if it did not exist. It is left out of the OpenAPI document:
its contract is Slack's, not Vigil's REST API.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp

from api.metrics import WEBHOOK_REJECTED

router = APIRouter(tags=["slack"])


@router.post("/slack/events", include_in_schema=False)
async def slack_events(request: Request) -> Response:
    slack: AsyncApp | None = request.app.state.slack
    if slack is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, "Slack is not configured (VIGIL_SLACK_BOT_TOKEN, VIGIL_SLACK_SIGNING_SECRET)"
        )
    response = await AsyncSlackRequestHandler(slack).handle(request)
    if response.status_code == status.HTTP_401_UNAUTHORIZED:  # bolt answers 401 only for a failed signature check
        WEBHOOK_REJECTED.labels("slack", "signature").inc()
    return response
