"""The REST API with users' API tokens beside VIGIL_API_TOKEN: who may read, who may act, and who the actor is."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from temporalio.worker import Worker

from tests.conftest import ApiFactory
from tests.support import am_alert, am_webhook, eventually
from vigil.auth.directory import UserDirectory
from vigil.auth.roles import Role
from vigil.models import IncidentDetail, TimelineEvent, TimelineKind

SERVICE_TOKEN = "service-token-for-tests"
PASSWORD = "correct horse battery"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Team:
    """A users file with a viewer, a responder and an admin, each with an API token."""

    def __init__(self, path: Path) -> None:
        self.directory = UserDirectory(path)
        self.tokens: dict[str, str] = {}
        for name, role in (("vic", Role.VIEWER), ("ana", Role.RESPONDER), ("root", Role.ADMIN)):
            self.directory.add(name, role, PASSWORD)
            self.tokens[name] = self.directory.issue_token(name, "tests")[1]


@pytest.fixture
def team(tmp_path: Path) -> Team:
    return Team(tmp_path / "users.json")


def with_users(api: ApiFactory, team: Team, **overrides: object) -> httpx.AsyncClient:
    return api(users_file=team.directory.path, state_dir=team.directory.path.parent, **overrides)


async def test_viewer_reads_and_may_not_act(api: ApiFactory, team: Team) -> None:
    client = with_users(api, team)
    viewer = bearer(team.tokens["vic"])
    assert (await client.get("/api/v1/incidents", headers=viewer)).status_code == 200
    assert (await client.get("/api/v1/logs", params={"service": "x"}, headers=viewer)).status_code == 200

    forbidden = counted("vigil_http_rejected_total", reason="forbidden")
    refused = await client.post("/api/v1/incidents/incident-nope/acknowledge", json={"by": "vic"}, headers=viewer)
    assert refused.status_code == 403
    assert "'vic' is a viewer" in refused.json()["detail"]
    assert "responder" in refused.json()["detail"]
    assert counted("vigil_http_rejected_total", reason="forbidden") == forbidden + 1
    chat = await client.post("/api/v1/chat/query", json={"question": "why?"}, headers=viewer)
    assert chat.status_code == 403

    webhook = counted("vigil_webhook_rejected_total", source="alertmanager", reason="forbidden")
    alert = await client.post(
        "/api/v1/alerts/alertmanager",
        json=am_webhook([am_alert("ViewerAlert", service="s", instance="i")]),
        headers=viewer,
    )
    assert alert.status_code == 403
    assert counted("vigil_webhook_rejected_total", source="alertmanager", reason="forbidden") == webhook + 1
    logs = counted("vigil_log_requests_total", format="json", outcome="forbidden")
    pushed = await client.post("/api/v1/logs", content=b'{"service":"s","message":"m"}', headers=viewer)
    assert pushed.status_code == 403
    assert counted("vigil_log_requests_total", format="json", outcome="forbidden") == logs + 1
    deploy = await client.post("/api/v1/events/deploy", json={"service": "s", "version": "1"}, headers=viewer)
    assert deploy.status_code == 403


async def test_wrong_missing_and_revoked_tokens_are_401(api: ApiFactory, team: Team) -> None:
    client = with_users(api, team)
    unauthorized = counted("vigil_http_rejected_total", reason="unauthorized")
    forged = team.tokens["ana"][:-3] + "xyz"
    for headers in ({}, bearer("nope"), bearer(forged), bearer("vgl_0123456789ab_" + "A" * 43)):
        response = await client.get("/api/v1/incidents", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
    assert counted("vigil_http_rejected_total", reason="unauthorized") == unauthorized + 4
    webhook = counted("vigil_webhook_rejected_total", source="alertmanager", reason="unauthorized")
    assert (await client.post("/api/v1/alerts/alertmanager", json=am_webhook([]))).status_code == 401
    assert counted("vigil_webhook_rejected_total", source="alertmanager", reason="unauthorized") == webhook + 1

    token_id = team.tokens["vic"].split("_")[1]
    UserDirectory(team.directory.path).revoke_token("vic", token_id)  # as `vigil user token --revoke` would
    assert (await client.get("/api/v1/incidents", headers=bearer(team.tokens["vic"]))).status_code == 401
    UserDirectory(team.directory.path).set_disabled("ana", True)
    assert (await client.get("/api/v1/incidents", headers=bearer(team.tokens["ana"]))).status_code == 401


async def test_open_until_a_token_exists(api: ApiFactory, tmp_path: Path) -> None:
    """No VIGIL_API_TOKEN and no user token: open as before (users with passwords only change nothing); the
    first user token closes it, in the running API."""
    directory = UserDirectory(tmp_path / "users.json")
    client = api(users_file=directory.path, state_dir=tmp_path)
    assert (await client.get("/api/v1/incidents")).status_code == 200
    directory.add("ana", Role.RESPONDER, PASSWORD)
    assert (await client.get("/api/v1/incidents")).status_code == 200
    assert (await client.get("/api/v1/incidents", headers=bearer("anything"))).status_code == 200
    _, token = directory.issue_token("ana")
    assert (await client.get("/api/v1/incidents")).status_code == 401
    assert (await client.get("/api/v1/incidents", headers=bearer(token))).status_code == 200


async def test_the_service_token_still_works(api: ApiFactory, team: Team) -> None:
    client = with_users(api, team, api_token=SecretStr(SERVICE_TOKEN))
    service = bearer(SERVICE_TOKEN)
    assert (await client.get("/api/v1/incidents", headers=service)).status_code == 200
    assert (await client.get("/api/v1/incidents", headers=bearer(team.tokens["vic"]))).status_code == 200
    assert (await client.get("/api/v1/incidents")).status_code == 401
    assert (await client.get("/api/v1/incidents", headers=bearer(SERVICE_TOKEN + "x"))).status_code == 401
    # only the service token, no users file at all: as before users existed
    alone = api(api_token=SecretStr(SERVICE_TOKEN), users_file=team.directory.path.parent / "none.json")
    assert (await alone.get("/api/v1/incidents", headers=service)).status_code == 200
    assert (await alone.get("/api/v1/incidents")).status_code == 401


async def test_an_unreadable_users_file_fails_closed(api: ApiFactory, team: Team) -> None:
    client = with_users(api, team, api_token=SecretStr(SERVICE_TOKEN))
    team.directory.path.write_text("{broken")
    response = await client.get("/api/v1/incidents", headers=bearer(team.tokens["ana"]))
    assert response.status_code == 503
    assert "is corrupt" in response.json()["detail"]
    assert (await client.get("/api/v1/incidents")).status_code == 401
    assert (await client.get("/api/v1/incidents", headers=bearer(SERVICE_TOKEN))).status_code == 200
    # without a service token, whether a token is needed is unknown: closed, not open
    assert (await with_users(api, team).get("/api/v1/incidents")).status_code == 503


async def detail(client: httpx.AsyncClient, incident_id: str, headers: dict[str, str]) -> IncidentDetail:
    response = await client.get(f"/api/v1/incidents/{incident_id}", headers=headers)
    assert response.status_code == 200, response.text
    return IncidentDetail.model_validate(response.json())


async def test_actions_record_the_token_user_as_actor(
    api: ApiFactory, workers: list[Worker], team: Team, unique: str
) -> None:
    client = with_users(api, team, api_token=SecretStr(SERVICE_TOKEN), quiet_period_seconds=3600)
    responder, viewer = bearer(team.tokens["ana"]), bearer(team.tokens["vic"])
    opened = await client.post(
        "/api/v1/alerts/alertmanager",
        json=am_webhook([am_alert(unique, service="auth", instance="a1")]),
        headers=responder,
    )
    assert opened.status_code == 202, opened.text
    incident_id = opened.json()["incidents"][0]["incident_id"]

    assert (
        await client.post(f"/api/v1/incidents/{incident_id}/acknowledge", json={"by": "vic"}, headers=viewer)
    ).status_code == 403
    acknowledged = await client.post(
        f"/api/v1/incidents/{incident_id}/acknowledge", json={"by": "mallory", "note": "on it"}, headers=responder
    )
    assert acknowledged.status_code == 200, acknowledged.text
    assert acknowledged.json()["integrations"]["acknowledged_by"] == "ana"

    proposal = {"action": "restart-deployment", "params": {"deployment": "auth"}, "proposed_by": "mallory"}
    proposed = await client.post(f"/api/v1/incidents/{incident_id}/remediation", json=proposal, headers=responder)
    assert proposed.status_code == 200, proposed.text
    assert proposed.json()["proposal"]["proposed_by"] == "ana"
    # the service token keeps the body's actor, as before users existed
    decided = await client.post(
        f"/api/v1/incidents/{incident_id}/approval",
        json={"decision": "reject", "by": "bot:change-freeze"},
        headers=bearer(SERVICE_TOKEN),
    )
    assert decided.status_code == 200, decided.text
    resolved = await client.post(
        f"/api/v1/incidents/{incident_id}/resolve", json={"by": "mallory"}, headers=bearer(team.tokens["root"])
    )
    assert resolved.status_code == 200, resolved.text

    def complete(timeline: list[TimelineEvent]) -> bool:
        kinds = {event.kind for event in timeline}
        return {TimelineKind.ACKNOWLEDGED, TimelineKind.REJECTED, TimelineKind.RESOLVED} <= kinds

    async def timeline() -> list[TimelineEvent]:
        return (await detail(client, incident_id, viewer)).timeline

    events = await eventually(timeline, complete)
    actors = {event.kind: event.actor for event in events}
    assert actors[TimelineKind.ACKNOWLEDGED] == "ana"
    assert actors[TimelineKind.REMEDIATION_PROPOSED] == "ana"
    assert actors[TimelineKind.REJECTED] == "bot:change-freeze"
    assert actors[TimelineKind.RESOLVED] == "root"
    assert all(event.actor != "mallory" for event in events)
