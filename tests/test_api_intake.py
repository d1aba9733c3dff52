"""Alert webhooks: every bad payload gets the right 4xx and is counted; good ones keep flowing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from temporalio.worker import Worker

from tests.conftest import ApiFactory
from tests.support import am_alert, am_webhook

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def rejected(source: str, reason: str) -> float:
    value = REGISTRY.get_sample_value("vigil_webhook_rejected_total", {"source": source, "reason": reason})
    return value or 0.0


def good_body(name: str) -> dict[str, Any]:
    return am_webhook([am_alert(name, service="api", instance="i1")])


BAD_PAYLOADS: list[tuple[str, str, dict[str, str], bytes, int, str, str]] = [
    # (id, path, headers, body, status, metric reason, text expected in detail)
    ("no-token", "alertmanager", {}, b"{}", 401, "unauthorized", "bearer"),
    ("wrong-token", "alertmanager", {"Authorization": "Bearer nope"}, b"{}", 401, "unauthorized", "bearer"),
    ("not-json", "alertmanager", AUTH, b"{not json", 422, "invalid_json", "not valid JSON"),
    ("binary", "vigil", AUTH, b"\xff\xfe\x00", 422, "invalid_json", "not valid JSON"),
    ("text-plain", "vigil", {**AUTH, "Content-Type": "text/plain"}, b"{}", 415, "not_json", "text/plain"),
    ("array", "alertmanager", AUTH, b"[1, 2]", 422, "invalid_payload", "JSON object"),
    (
        "am-v3",
        "alertmanager",
        AUTH,
        json.dumps({**good_body("X"), "version": "3"}).encode(),
        422,
        "invalid_payload",
        "version",
    ),
    (
        "no-alerts",
        "alertmanager",
        AUTH,
        json.dumps({**good_body("X"), "alerts": []}).encode(),
        422,
        "invalid_payload",
        "no alerts",
    ),
    (
        "label-not-string",
        "alertmanager",
        AUTH,
        json.dumps(
            am_webhook([{**am_alert("X", service="s", instance="i"), "labels": {"alertname": "X", "n": 3}}])
        ).encode(),
        422,
        "invalid_payload",
        "alerts[0].labels",
    ),
    (
        "bad-time",
        "alertmanager",
        AUTH,
        json.dumps(am_webhook([{**am_alert("X", service="s", instance="i"), "startsAt": "yesterday"}])).encode(),
        422,
        "invalid_payload",
        "startsAt",
    ),
    ("grafana-garbage", "grafana", AUTH, b'{"alerts": "many"}', 422, "invalid_payload", "alerts"),
    ("vigil-no-name", "vigil", AUTH, b'{"severity": "critical"}', 422, "invalid_payload", "name"),
    ("too-large", "vigil", AUTH, b'{"name": "' + b"x" * 5000 + b'"}', 413, "too_large", "limit"),
]


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "reason", "detail"),
    [case[1:] for case in BAD_PAYLOADS],
    ids=[case[0] for case in BAD_PAYLOADS],
)
async def test_bad_payload_gets_clear_4xx_and_is_counted(
    api: ApiFactory,
    workers: list[Worker],
    unique: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    reason: str,
    detail: str,
) -> None:
    client = api(api_token=TOKEN, max_payload_bytes=4096)
    source = path
    before = rejected(source, reason)
    url = "/api/v1/alerts" if path == "vigil" else f"/api/v1/alerts/{path}"
    sent_headers = {"Content-Type": "application/json", **headers}
    response = await client.post(url, content=body, headers=sent_headers)
    assert response.status_code == status, response.text
    assert detail.lower() in response.json()["detail"].lower()
    assert rejected(source, reason) == before + 1
    # the bad request broke nothing: a good alert right after is accepted
    good = await client.post("/api/v1/alerts/alertmanager", json=good_body(unique), headers=AUTH)
    assert good.status_code == 202, good.text


async def test_chunked_body_over_the_cap_is_413(api: ApiFactory, workers: list[Worker]) -> None:
    client = api(api_token=TOKEN, max_payload_bytes=1024)

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 512

    response = await client.post(
        "/api/v1/alerts", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 413


async def test_rest_api_requires_the_token_when_configured(api: ApiFactory, workers: list[Worker]) -> None:
    client = api(api_token=TOKEN)
    assert (await client.get("/api/v1/incidents")).status_code == 401
    assert (await client.get("/api/v1/incidents", headers=AUTH)).status_code == 200
    assert (await client.get("/healthz")).status_code == 200


async def test_each_format_opens_an_incident(api: ApiFactory, workers: list[Worker], unique: str) -> None:
    client = api()
    grafana = {
        "receiver": "vigil",
        "status": "firing",
        "orgId": 1,
        "version": "1",
        "title": "[FIRING:1] x",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://grafana.example/",
        "state": "alerting",
        "message": "m",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": unique, "service": "grafana-svc"},
                "annotations": {"summary": "disk almost full"},
                "startsAt": "2026-11-22T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://grafana.example/alerting/1",
                "fingerprint": "a1b2c3d4e5f60718",
                "silenceURL": "",
                "dashboardURL": "",
                "panelURL": "",
                "values": {"B": 97.5},
                "valueString": "[ var='B' value=97.5 ]",
            }
        ],
    }
    vigil_alert = {"name": unique, "service": "native-svc", "severity": "high", "summary": "queue backlog"}
    for url, body in [
        ("/api/v1/alerts/alertmanager", good_body(unique)),
        ("/api/v1/alerts/grafana", grafana),
        ("/api/v1/alerts", vigil_alert),
        ("/api/v1/alerts", {"alerts": [vigil_alert]}),
    ]:
        response = await client.post(url, json=body)
        assert response.status_code == 202, (url, response.text)
        assert response.json()["accepted"] == 1
        assert response.json()["incidents"][0]["incident_id"].startswith(f"incident-{unique.lower()}")


async def test_list_filters(api: ApiFactory, workers: list[Worker], unique: str) -> None:
    client = api()
    await client.post("/api/v1/alerts", json={"name": unique, "service": f"{unique}-svc", "severity": "critical"})

    async def listed() -> list[dict[str, Any]]:
        response = await client.get("/api/v1/incidents", params={"service": f"{unique}-svc"})
        assert response.status_code == 200
        rows: list[dict[str, Any]] = response.json()
        return rows

    from tests.support import eventually

    rows = await eventually(listed, lambda r: len(r) == 1, timeout=20)
    assert rows[0]["severity"] == "critical"
    assert rows[0]["title"]
    none = await client.get("/api/v1/incidents", params={"service": f"{unique}-svc", "severity": "info"})
    assert none.json() == []
    assert (await client.get("/api/v1/incidents", params={"service": "x' OR '1'='1"})).status_code == 422
    assert (await client.get("/api/v1/incidents", params={"status": "sleeping"})).status_code == 422


async def test_health_ready_metrics_and_openapi(api: ApiFactory, workers: list[Worker]) -> None:
    client: httpx.AsyncClient = api()
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"temporal": "ok", "database": "ok"}
    metrics = await client.get("/metrics")
    assert "vigil_webhook_requests_total" in metrics.text
    spec = (await client.get("/openapi.json")).json()
    assert {
        "/api/v1/alerts/alertmanager",
        "/api/v1/alerts/grafana",
        "/api/v1/alerts",
        "/api/v1/incidents",
        "/api/v1/incidents/{incident_id}/approval",
    } <= set(spec["paths"])
