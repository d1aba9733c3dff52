"""Junk on every route of the real app (real Temporal and PostgreSQL): each gets a clear 4xx naming what is at
fault and is counted, never a 500; bodies over the cap are cut off as they stream; PostgreSQL down is a 503."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from temporalio.client import Client

from api.app import create_app
from tests.conftest import ApiFactory, make_settings
from vigil.stack.postgres import start_embedded_postgres
from vigil.store.database import Store, migrate_database

TOKEN = "junk-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}
NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_VALUE = b'{"service": "s", "message": "m", "x": ' + DEEP + b"}"
INCIDENT = "incident-junk-test"


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def rejected(reason: str) -> float:
    return sample("vigil_http_rejected_total", {"reason": reason})


POST_ROUTES = [
    "/api/v1/alerts",
    "/api/v1/alerts/alertmanager",
    "/api/v1/alerts/grafana",
    "/api/v1/logs",
    "/loki/api/v1/push",
    "/api/v1/events/deploy",
    "/api/v1/chat/query",
    f"/api/v1/incidents/{INCIDENT}/resolve",
    f"/api/v1/incidents/{INCIDENT}/remediation",
    f"/api/v1/incidents/{INCIDENT}/approval",
]


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("body", [DEEP, DEEP_VALUE], ids=["deep", "deep-value"])
async def test_deeply_nested_json_is_a_422_naming_the_nesting(api: ApiFactory, route: str, body: bytes) -> None:
    client = api(api_token=TOKEN)
    before = rejected("too_deep")
    response = await client.post(route, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert "nest deeper than 64 levels" in response.text
    assert rejected("too_deep") == before + 1


@pytest.mark.parametrize(
    ("route", "headers", "status"),
    [
        ("/api/v1/logs", NDJSON, 422),  # JSON lines are not one document: each line is checked by the parser
        ("/api/v1/logs", {**JSON, "Content-Encoding": "gzip"}, 422),
        ("/loki/api/v1/push", {**JSON, "Content-Encoding": "gzip"}, 400),  # Loki's own answer to a bad push
        ("/loki/api/v1/push", AUTH, 400),  # no Content-Type: the routes below still read JSON
        ("/api/v1/alerts", AUTH, 422),
        ("/api/v1/events/deploy", AUTH, 422),
    ],
    ids=["ndjson", "gzip-logs", "gzip-loki", "untyped-loki", "untyped-alerts", "untyped-deploy"],
)
async def test_nesting_is_also_checked_where_the_body_is_parsed(
    api: ApiFactory, route: str, headers: dict[str, str], status: int
) -> None:
    body = gzip.compress(DEEP_VALUE) if "Content-Encoding" in headers else DEEP_VALUE
    response = await api(api_token=TOKEN).post(route, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert "nest deeper than 64 levels" in response.text


@pytest.mark.parametrize(
    ("route", "body", "where"),
    [
        ("/api/v1/alerts", b'{"name": "x", "value": ' + b"7" * 5000 + b"}", "digits"),
        ("/api/v1/alerts/alertmanager", b'{"version": 1e999}', "1e999"),
        ("/api/v1/events/deploy", b'{"service": "s", "version": NaN}', "NaN"),
        ("/loki/api/v1/push", b'{"streams": [{"stream": {"app": "a"}, "values": [["1", "x"]]}], "n": 1e999}', "1e999"),
        ("/api/v1/logs", b'{"service": "s", "message": "m", "n": -Infinity}', "Infinity"),
    ],
    ids=["long-int", "inf", "nan", "loki-inf", "logs-infinity"],
)
async def test_numbers_json_cannot_write_back_are_refused(api: ApiFactory, route: str, body: bytes, where: str) -> None:
    response = await api(api_token=TOKEN).post(route, content=body, headers=JSON)
    assert response.status_code in (400, 422), response.text
    assert where in response.text


async def test_non_finite_number_in_a_validated_body_is_a_422_naming_the_field(api: ApiFactory) -> None:
    client = api(api_token=TOKEN)
    before = rejected("invalid_request")
    response = await client.post("/api/v1/chat/query", content=b'{"question": "why", "k": 1e999}', headers=JSON)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["body", "k"]]
    assert rejected("invalid_request") == before + 1


@pytest.mark.parametrize("route", ["/api/v1/logs", "/api/v1/events/deploy"])
@pytest.mark.parametrize(
    ("field", "value"),
    [("end", "0001-01-01T00:00:00"), ("start", "0001-01-01T00:00:00+01:00"), ("end", "9999-12-31T23:59:59-23:59")],
)
async def test_window_times_out_of_range_are_a_422_naming_the_field(
    api: ApiFactory, route: str, field: str, value: str
) -> None:
    response = await api(api_token=TOKEN).get(route, params={"service": "s", field: value}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", field]


@pytest.mark.parametrize("ts", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+00:00", "1800-01-01T00:00:00Z"])
async def test_deploy_time_out_of_range_is_a_422_naming_ts(api: ApiFactory, ts: str) -> None:
    before = sample("vigil_deploy_events_total", {"outcome": "invalid_payload"})
    response = await api(api_token=TOKEN).post(
        "/api/v1/events/deploy", json={"service": "s", "version": "1", "ts": ts}, headers=AUTH
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("ts:")
    assert sample("vigil_deploy_events_total", {"outcome": "invalid_payload"}) == before + 1


@pytest.mark.parametrize("field", ["service", "version", "commit", "author", "description"])
@pytest.mark.parametrize("junk", ["\\u0000", "\\ud800"], ids=["nul", "lone-surrogate"])
async def test_deploy_text_postgres_cannot_store_is_a_422_naming_the_field(
    api: ApiFactory, field: str, junk: str
) -> None:
    event = {"service": "s", "version": "1", field: "x"}
    body = json.dumps(event).replace('"x"', f'"a{junk}b"').encode()
    response = await api(api_token=TOKEN).post("/api/v1/events/deploy", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{field}:")


@pytest.mark.parametrize("route", ["/api/v1/logs", "/api/v1/events/deploy"])
async def test_nul_in_a_service_query_is_a_422(api: ApiFactory, route: str) -> None:
    response = await api(api_token=TOKEN).get(route, params={"service": "a\x00b"}, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "service"]


async def test_log_text_postgres_cannot_store_is_replaced_not_a_500(api: ApiFactory) -> None:
    client = api(api_token=TOKEN)
    service = f"svc-{uuid.uuid4().hex[:10]}"
    line = b'{"service": "' + service.encode() + b'", "message": "a\\ud800b\\u0000c", "k\\udfff": "v\\udc00"}'
    loki = json.dumps({"streams": [{"stream": {"app": service}, "values": [["1" * 5000, "x"]]}]})
    assert (await client.post("/api/v1/logs", content=line, headers=NDJSON)).status_code == 202
    loki_response = await client.post("/loki/api/v1/push", content=loki.encode(), headers=JSON)
    assert loki_response.status_code == 400, loki_response.text
    assert "nanoseconds" in loki_response.text
    rows = (await client.get("/api/v1/logs", params={"service": service}, headers=AUTH)).json()
    assert [(row["message"], row["labels"]) for row in rows] == [("a\ufffdb\ufffdc", {"k\ufffd": "v\ufffd"})]


# --- the body cap, on every route ------------------------------------------------------------------------------

LIMIT = 4096
CHUNK = 1024
CAPPED_ROUTES = [
    "/api/v1/chat/query",
    f"/api/v1/incidents/{INCIDENT}/resolve",
    f"/api/v1/incidents/{INCIDENT}/remediation",
    f"/api/v1/incidents/{INCIDENT}/approval",
    "/api/v1/alerts",
    "/api/v1/logs",
    "/api/v1/events/deploy",
]


@pytest.mark.parametrize("route", CAPPED_ROUTES)
async def test_a_declared_body_over_the_cap_is_413(api: ApiFactory, route: str) -> None:
    client = api(api_token=TOKEN, max_payload_bytes=LIMIT)
    body = b'{"reason": "' + b"x" * 20 * LIMIT + b'"}'
    response = await client.post(route, content=body, headers=JSON)
    assert response.status_code == 413, response.text
    assert "limit" in response.json()["detail"]


@pytest.mark.parametrize("route", CAPPED_ROUTES)
async def test_a_chunked_body_is_cut_off_once_past_the_cap(api: ApiFactory, route: str) -> None:
    """Streamed without Content-Length: refused after the chunk that crosses the cap, the rest never read."""
    client = api(api_token=TOKEN, max_payload_bytes=LIMIT)
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"reason": "'
        for _ in range(20_000):  # 20 MB if it were all read
            sent += 1
            yield b"x" * CHUNK

    before = rejected("too_large")
    response = await client.post(route, content=chunks(), headers=JSON)
    assert response.status_code == 413, response.text
    assert sent <= LIMIT // CHUNK + 2
    if route in CAPPED_ROUTES[:4]:  # the intake routes refuse it themselves, counted in their own metrics
        assert rejected("too_large") == before + 1


# --- PostgreSQL down -------------------------------------------------------------------------------------------


@pytest.fixture
async def doomed_store(tmp_path: Path) -> AsyncIterator[tuple[Store, Any]]:
    """A store on a private PostgreSQL that the test may stop."""
    server = start_embedded_postgres(tmp_path / "doomed")
    try:
        await migrate_database(server.url)
        async with await Store.open(server.url, max_size=2) as store:
            yield store, server
    finally:
        if server.is_running():
            server.stop()


async def test_postgres_down_is_503_with_retry_after(temporal_client: Client, doomed_store: tuple[Store, Any]) -> None:
    store, server = doomed_store
    settings = make_settings(server.url, temporal_client, api_token=TOKEN)
    app = create_app(settings, client=temporal_client, store=store)
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/api/v1/logs", {"params": {"service": "s"}}),
        ("GET", "/api/v1/events/deploy", {}),
        ("POST", "/api/v1/logs", {"content": b'{"service": "s", "message": "m"}', "headers": NDJSON}),
        ("POST", "/api/v1/events/deploy", {"json": {"service": "s", "version": "1"}}),
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as client:
        for method, url, kwargs in requests:
            healthy = await client.request(method, url, **{"headers": AUTH, **kwargs})
            assert healthy.status_code < 300, healthy.text
        assert server.stop(), "the private PostgreSQL did not stop"
        before = rejected("database_unavailable")
        for method, url, kwargs in requests:
            response = await client.request(method, url, **{"headers": AUTH, **kwargs})
            assert response.status_code == 503, (url, response.text)
            assert response.headers["Retry-After"].isdigit()
            assert "PostgreSQL" in response.json()["detail"]
        assert rejected("database_unavailable") >= before + 2  # the reads; the writes count in their own metrics
