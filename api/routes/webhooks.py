"""Webhooks from code hosts: GitHub tells Vigil that a pull request naming an incident was merged.

`POST /api/v1/webhooks/github` is authenticated by GitHub's signature (`X-Hub-Signature-256`, HMAC-SHA256 of the
raw body with `VIGIL_GITHUB_WEBHOOK_SECRET`), not by Vigil's bearer token, which GitHub cannot send; without a
secret configured the endpoint does not exist (404). A merged pull request whose title, body or head branch
names incidents (`incident-...`) becomes the signal `code_change` on each of them, with the delivery id
(`X-GitHub-Delivery`), so a redelivery changes nothing: the workflow keeps the deliveries it took. Every other
event or action is acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.deps import RETRY_AFTER, ClientDep, SettingsDep
from api.incident_updates import TemporalUnavailable, live_state, locate
from api.metrics import WEBHOOK_REJECTED, WEBHOOK_REQUESTS
from api.routes.logs import read_capped_body
from vigil.incident_list import INCIDENT_ID_PATTERN
from vigil.integrations.models import CodeChange, PullRequestRef
from vigil.untrusted_json import JSONInputError, loads_untrusted

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

SOURCE = "github"
MAX_INCIDENTS_PER_PULL_REQUEST = 10
MAX_SEARCHED_TEXT = 65_536
"""Characters of a pull request's body searched for incident ids (GitHub allows 65 536)."""

_INCIDENT_ID = re.compile(
    r"(?<![A-Za-z0-9-])(" + INCIDENT_ID_PATTERN.removeprefix("^").removesuffix("$") + r")(?![A-Za-z0-9])"
)


class GitHubWebhookResult(BaseModel):
    """202 body of POST /api/v1/webhooks/github."""

    event: str = Field(description="X-GitHub-Event of the delivery.")
    delivery_id: str | None = None
    ignored: str | None = Field(default=None, description="Why nothing was done, when nothing was.")
    pull_request: PullRequestRef | None = None
    signalled: list[str] = Field(default_factory=list, description="Incidents told of the merged pull request.")
    not_found: list[str] = Field(
        default_factory=list, description="Incident ids the pull request names that are unknown or already closed."
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`ping`: the webhook is set up right.",
        "content": {"application/json": {"example": {"ok": True}}},
    },
    400: {"description": "Body is not JSON (or a form with a JSON `payload`), or not a GitHub event."},
    401: {"description": "Missing or wrong X-Hub-Signature-256."},
    404: {"description": "GitHub webhooks are not configured (VIGIL_GITHUB_WEBHOOK_SECRET unset)."},
    413: {"description": "Body larger than VIGIL_MAX_PAYLOAD_BYTES."},
    503: {"description": "Temporal unreachable; redeliver later (deliveries already taken are not taken twice)."},
}


def signature_valid(body: bytes, header: str | None, secret: str) -> bool:
    """Whether `header` is GitHub's `sha256=<hex HMAC of body>` with `secret`, compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


def incident_ids(*texts: str | None) -> list[str]:
    """Incident ids named in the texts, first seen first, at most MAX_INCIDENTS_PER_PULL_REQUEST."""
    found: list[str] = []
    for text in texts:
        if not text:
            continue
        for match in _INCIDENT_ID.finditer(text[:MAX_SEARCHED_TEXT]):
            incident_id = match.group(1).rstrip("-")
            if re.fullmatch(INCIDENT_ID_PATTERN, incident_id) and incident_id not in found:
                found.append(incident_id)
                if len(found) == MAX_INCIDENTS_PER_PULL_REQUEST:
                    return found
    return found


def _refuse(code: int, reason: str, detail: str) -> HTTPException:
    WEBHOOK_REQUESTS.labels(SOURCE, reason).inc()
    headers = RETRY_AFTER if code == status.HTTP_503_SERVICE_UNAVAILABLE else None
    return HTTPException(code, detail, headers=headers)


def _payload(body: bytes, content_type: str) -> dict[str, Any]:
    """The event: a JSON body, or the `payload` field of a form (GitHub's other content type)."""
    raw: bytes | str = body
    if content_type == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("utf-8"), max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            raise _refuse(400, "invalid_payload", "form body is not UTF-8 URL-encoded") from None
        if "payload" not in fields:
            raise _refuse(400, "invalid_payload", "form body has no payload field")
        raw = fields["payload"][0]
    try:
        payload = loads_untrusted(raw.encode() if isinstance(raw, str) else raw)
    except JSONInputError as exc:
        raise _refuse(400, "invalid_json", f"body is not valid JSON: {exc.reason}") from None
    if not isinstance(payload, dict):
        raise _refuse(400, "invalid_payload", "a GitHub event is a JSON object")
    return payload


def _merged_pull_request(payload: dict[str, Any]) -> PullRequestRef:
    pr = payload.get("pull_request")
    repository = payload.get("repository")
    if not isinstance(pr, dict) or not isinstance(repository, dict):
        raise _refuse(400, "invalid_payload", "a pull_request event needs pull_request and repository objects")
    merged_by = pr.get("merged_by")
    merged_at = pr.get("merged_at")
    title = pr.get("title")
    try:
        return PullRequestRef(
            repository=repository.get("full_name"),
            number=pr.get("number"),
            title=title[:300] if isinstance(title, str) else title,
            url=pr.get("html_url"),
            merged_by=merged_by.get("login") if isinstance(merged_by, dict) else None,
            merged_at=datetime.fromisoformat(merged_at) if isinstance(merged_at, str) else None,
        )
    except (ValidationError, ValueError) as exc:
        raise _refuse(400, "invalid_payload", f"pull request fields: {exc}") from None


def _delivery_id(request: Request, body: bytes) -> str:
    """GitHub's delivery GUID (the same on a redelivery); without one, the body's digest, just as stable."""
    delivery = (request.headers.get("x-github-delivery") or "").strip()
    return delivery[:200] if delivery else "sha256-" + hashlib.sha256(body).hexdigest()


@router.post(
    "/github",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=GitHubWebhookResult,
    summary="GitHub webhook: merged pull requests naming incidents",
    description=(
        "Verified by X-Hub-Signature-256 (VIGIL_GITHUB_WEBHOOK_SECRET), not the bearer token. A `pull_request` "
        "event that merged a pull request naming incidents (`incident-...` in its title, body or head branch) "
        "signals each of them; `ping` answers 200; anything else is acknowledged and ignored."
    ),
    responses=_ERRORS,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def github_webhook(request: Request, settings: SettingsDep, client: ClientDep) -> GitHubWebhookResult | Response:
    secret = settings.github_webhook_secret
    if secret is None or not secret.get_secret_value():
        raise _refuse(404, "not_configured", "GitHub webhooks are not configured (VIGIL_GITHUB_WEBHOOK_SECRET)")
    body = await read_capped_body(request, settings.max_payload_bytes)
    if body is None:
        WEBHOOK_REJECTED.labels(SOURCE, "too_large").inc()
        raise _refuse(413, "too_large", f"body over the {settings.max_payload_bytes}-byte limit")
    if not signature_valid(body, request.headers.get("x-hub-signature-256"), secret.get_secret_value()):
        WEBHOOK_REJECTED.labels(SOURCE, "signature").inc()
        raise _refuse(401, "signature", "missing or wrong X-Hub-Signature-256")
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    payload = _payload(body, content_type)
    event = (request.headers.get("x-github-event") or "").strip()[:100]
    delivery_id = _delivery_id(request, body)
    if event == "ping":
        WEBHOOK_REQUESTS.labels(SOURCE, "ping").inc()
        return JSONResponse({"ok": True}, status_code=status.HTTP_200_OK)
    action = payload.get("action")
    if event != "pull_request":
        return _ignored(event, delivery_id, f"Vigil does not act on {event or 'unnamed'} events")
    pr = payload.get("pull_request")
    if action != "closed" or not isinstance(pr, dict) or pr.get("merged") is not True:
        return _ignored(event, delivery_id, f"pull request {action} without a merge")
    ref = _merged_pull_request(payload)
    head = pr.get("head")
    branch = head.get("ref") if isinstance(head, dict) else None
    body_text = pr.get("body")
    named = incident_ids(
        ref.title, body_text if isinstance(body_text, str) else None, branch if isinstance(branch, str) else None
    )
    if not named:
        return _ignored(event, delivery_id, "the pull request names no incident", ref)
    result = GitHubWebhookResult(event=event, delivery_id=delivery_id, pull_request=ref)
    change = CodeChange(delivery_id=delivery_id, pull_request=ref)
    for incident_id in named:
        try:
            signalled = await _signal(client, incident_id, change)
        except TemporalUnavailable as exc:
            raise _refuse(503, "temporal_unavailable", str(exc)) from None
        (result.signalled if signalled else result.not_found).append(incident_id)
    WEBHOOK_REQUESTS.labels(SOURCE, "signalled" if result.signalled else "not_found").inc()
    return result


def _ignored(event: str, delivery_id: str, why: str, ref: PullRequestRef | None = None) -> GitHubWebhookResult:
    WEBHOOK_REQUESTS.labels(SOURCE, "ignored").inc()
    return GitHubWebhookResult(event=event, delivery_id=delivery_id, ignored=why, pull_request=ref)


async def _signal(client: Client, incident_id: str, change: CodeChange) -> bool:
    """Signal the incident's own run chain; False when there is no such incident or it is closed (its workflow
    ended, or went on as a later incident of its group)."""
    location = await locate(client, incident_id)
    live = await live_state(client, location.workflow_id)
    if live is not None and incident_id not in (live.incident_id, location.workflow_id):
        return False
    try:
        await client.get_workflow_handle(location.workflow_id).signal("code_change", change)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise TemporalUnavailable(f"Temporal: {exc.message}") from exc
    return True
