"""POST /api/v1/webhooks/github on the real app, Temporal and workers: a merged pull request naming an incident
reaches its workflow (once, whatever GitHub re-delivers); unsigned, wrongly signed or tampered deliveries are
refused and counted; without a secret the endpoint does not exist."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from temporalio.client import Client
from temporalio.worker import Worker

from api.app import create_app
from api.routes.webhooks import incident_ids
from tests.conftest import make_settings
from tests.fakes.github_api import pull_request_event, sign
from tests.support import am_alert, am_webhook, eventually
from vigil import incident_list
from vigil.models import IncidentDetail
from vigil.store.database import Store

SECRET = "webhook-test-secret"
PATH = "/api/v1/webhooks/github"

Hooks = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def hooks(temporal_client: Client, store: Store, database_url: str) -> AsyncIterator[Hooks]:
    """httpx clients on the real app with the given settings overrides (the GitHub webhook secret by default)."""
    async with AsyncExitStack() as stack:

        def factory(**overrides: object) -> httpx.AsyncClient:
            settings = make_settings(database_url, temporal_client, **{"github_webhook_secret": SECRET, **overrides})
            app = create_app(settings, client=temporal_client, store=store)
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test")
            stack.push_async_callback(client.aclose)
            return client

        yield factory


def counted(name: str, outcome: str) -> float:
    labels = {"source": "github", "reason" if name == "vigil_webhook_rejected_total" else "outcome": outcome}
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def deliver(
    client: httpx.AsyncClient,
    event: str,
    payload: dict[str, Any] | bytes,
    *,
    delivery: str | None = None,
    signature: str | None = "sign",
    secret: str = SECRET,
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
    }
    if signature == "sign":
        headers["X-Hub-Signature-256"] = sign(body, secret)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return await client.post(PATH, content=body, headers=headers)


async def test_merged_pull_request_reaches_the_incident_once(
    hooks: Hooks, workers: list[Worker], temporal_client: Client, unique: str
) -> None:
    client = hooks(quiet_period_seconds=3600)
    opened = await client.post(
        "/api/v1/alerts/alertmanager", json=am_webhook([am_alert(unique, service="cart", instance="c1")])
    )
    assert opened.status_code == 202, opened.text
    group_id: str = opened.json()["incidents"][0]["incident_id"]

    async def detail() -> IncidentDetail:
        response = await client.get(f"/api/v1/incidents/{group_id}")
        assert response.status_code == 200, response.text
        return IncidentDetail.model_validate(response.json())

    occurrence = (await eventually(detail, lambda d: d.state is not None)).incident_id
    # The webhook finds an occurrence id through Temporal's visibility (eventually consistent): wait until it can.
    await eventually(lambda: incident_list.locate(temporal_client, occurrence), lambda found: found is not None)
    payload = pull_request_event(
        "acme/shop",
        42,
        f"Fix the cart totals ({group_id})",
        body=f"Fixes {occurrence}.\nAlso mentions incident-{uuid.uuid4().hex[:8]}-gone.",
        head_ref=f"fix/{occurrence}",
        merged_by="octocat",
    )
    signalled_before = counted("vigil_webhook_requests_total", "signalled")
    response = await deliver(client, "pull_request", payload, delivery="delivery-1")
    assert response.status_code == 202, response.text
    result = response.json()
    assert result["signalled"] == list(dict.fromkeys([group_id, occurrence]))
    assert len(result["not_found"]) == 1
    assert result["not_found"][0].endswith("-gone")
    assert result["pull_request"]["url"] == "https://github.example/acme/shop/pull/42"
    assert counted("vigil_webhook_requests_total", "signalled") == signalled_before + 1

    def recorded(d: IncidentDetail) -> bool:
        return d.state is not None and len(d.state.integrations.pull_requests) > 0

    found = await eventually(detail, recorded, timeout=30)
    assert found.state is not None
    (pr,) = found.state.integrations.pull_requests
    assert (pr.repository, pr.number, pr.title, pr.merged_by) == (
        "acme/shop",
        42,
        f"Fix the cart totals ({group_id})",
        "octocat",
    )
    assert "delivery-1" in found.state.integrations.seen_deliveries

    # GitHub re-delivers, then delivers the same merge under a new id: neither adds a pull request. A later,
    # different merge shows when they have been handled (signals are handled in order).
    assert (await deliver(client, "pull_request", payload, delivery="delivery-1")).status_code == 202
    assert (await deliver(client, "pull_request", payload, delivery="delivery-2")).status_code == 202
    other = pull_request_event("acme/shop", 43, "Follow-up", body=f"Part of {group_id}")
    assert (await deliver(client, "pull_request", other, delivery="delivery-3")).json()["signalled"] == [group_id]

    def both(d: IncidentDetail) -> bool:
        return d.state is not None and len(d.state.integrations.pull_requests) >= 2

    after = await eventually(detail, both, timeout=30)
    assert after.state is not None
    assert [p.number for p in after.state.integrations.pull_requests] == [42, 43]


async def test_signature_failures_are_401_and_counted(hooks: Hooks) -> None:
    client = hooks()
    payload = pull_request_event("acme/shop", 1, "Fix incident-abc-1")
    body = json.dumps(payload).encode()
    tampered = json.dumps({**payload, "number": 2}).encode()
    before = counted("vigil_webhook_rejected_total", "signature")
    cases = [
        await deliver(client, "pull_request", payload, signature=None),
        await deliver(client, "pull_request", payload, signature="sha256=" + "0" * 64),
        await deliver(client, "pull_request", payload, signature=sign(body, "another-secret")),
        await deliver(client, "pull_request", tampered, signature=sign(body, SECRET)),  # stale body
        await deliver(client, "pull_request", payload, signature=sign(body, SECRET).replace("sha256=", "sha1=")),
    ]
    assert [r.status_code for r in cases] == [401] * 5
    assert counted("vigil_webhook_rejected_total", "signature") == before + 5
    assert (await deliver(client, "ping", {"zen": "Keep it logically awesome."})).status_code == 200


async def test_without_a_secret_the_endpoint_does_not_exist(hooks: Hooks) -> None:
    client = hooks(github_webhook_secret=None)
    before = counted("vigil_webhook_requests_total", "not_configured")
    response = await deliver(client, "ping", {"zen": "x"})
    assert response.status_code == 404
    assert counted("vigil_webhook_requests_total", "not_configured") == before + 1


async def test_ping_other_events_and_unmerged_closes(hooks: Hooks) -> None:
    client = hooks()
    ping = await deliver(client, "ping", {"zen": "Design for failure.", "hook_id": 1})
    assert (ping.status_code, ping.json()) == (200, {"ok": True})

    unmerged = await deliver(
        client, "pull_request", pull_request_event("acme/shop", 3, "Fix incident-abc-1", merged=False)
    )
    assert unmerged.status_code == 202
    assert unmerged.json()["signalled"] == []
    assert "without a merge" in unmerged.json()["ignored"]

    opened = await deliver(
        client, "pull_request", pull_request_event("acme/shop", 4, "Fix incident-abc-1", action="opened")
    )
    assert opened.status_code == 202
    assert opened.json()["ignored"]

    push = await deliver(client, "push", {"ref": "refs/heads/main"})
    assert push.status_code == 202
    assert push.json()["ignored"] == "Vigil does not act on push events"

    nameless = await deliver(client, "pull_request", pull_request_event("acme/shop", 5, "Bump deps", body=None))
    assert nameless.status_code == 202
    assert nameless.json()["ignored"] == "the pull request names no incident"


async def test_malformed_bodies_are_400(hooks: Hooks) -> None:
    client = hooks()
    before = counted("vigil_webhook_requests_total", "invalid_json")
    assert (await deliver(client, "pull_request", b'{"action": "closed",')).status_code == 400
    assert counted("vigil_webhook_requests_total", "invalid_json") == before + 1
    assert (await deliver(client, "pull_request", b"[1, 2]")).status_code == 400
    broken = pull_request_event("acme/shop", 6, "Fix incident-abc-1")
    broken["pull_request"]["number"] = "six"
    assert (await deliver(client, "pull_request", broken)).status_code == 400


async def test_form_encoded_deliveries_are_read_too(hooks: Hooks) -> None:
    client = hooks()
    form = httpx.QueryParams({"payload": json.dumps({"zen": "form"})})
    body = str(form).encode()
    response = await client.post(
        PATH,
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-GitHub-Event": "ping",
            "X-Hub-Signature-256": sign(body, SECRET),
        },
    )
    assert response.status_code == 200


def test_incident_ids_are_found_in_text_and_bounded() -> None:
    assert incident_ids("Fix incident-cart-5xx-1.", None, "fix/incident-cart-5xx-1") == ["incident-cart-5xx-1"]
    assert incident_ids("xincident-abc-1 and incident-abc- done") == ["incident-abc"]
    assert incident_ids("INCIDENT-ABC, incident_abc, incident-") == []
    many = " ".join(f"incident-n{i}" for i in range(30))
    assert incident_ids(many) == [f"incident-n{i}" for i in range(10)]
    assert incident_ids("incident-" + "a" * 200) == []
