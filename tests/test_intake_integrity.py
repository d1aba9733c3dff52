"""Nothing lost, stuck or counted twice (issue 10): bounded alert fields and state, content-derived delivery ids,
alerts ordered by their own timestamps, one incident per occurrence, refused actions on the record, and the
detail answering while the store is down. Real Temporal, PostgreSQL and workers throughout."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from api.app import create_app
from tests.conftest import ApiFactory, make_settings
from tests.support import am_alert, am_webhook, eventually
from vigil.alerts import MAX_FINGERPRINT_LENGTH, AlertPayloadError, parse_alertmanager, parse_vigil
from vigil.models import IncidentDetail, IncidentStatus, IncidentSummary, TimelineKind
from vigil.stack.postgres import start_embedded_postgres
from vigil.store.database import Store, migrate_database
from workflows.incident import MAX_ALERT_STATE_BYTES

GROUP_BY = ("alertname", "service")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def detail(api: httpx.AsyncClient, incident_id: str) -> IncidentDetail:
    response = await api.get(f"/api/v1/incidents/{incident_id}")
    assert response.status_code == 200, response.text
    return IncidentDetail.model_validate(response.json())


async def post(api: httpx.AsyncClient, alerts: list[dict[str, Any]]) -> str:
    response = await api.post("/api/v1/alerts/alertmanager", json=am_webhook(alerts))
    assert response.status_code == 202, response.text
    (ref,) = response.json()["incidents"]
    incident_id: str = ref["incident_id"]
    return incident_id


def at(alert: dict[str, Any], starts: datetime, ends: datetime | None = None) -> dict[str, Any]:
    """The alert with its own timestamps (Alertmanager's: endsAt is Go's zero time while firing)."""
    return {**alert, "startsAt": starts.isoformat(), "endsAt": ends.isoformat() if ends else "0001-01-01T00:00:00Z"}


# --- bounds at intake ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"fingerprint": "f" * 3000}, "alerts[0].fingerprint"),
        ({"generatorURL": "http://p/" + "q" * 5000}, "alerts[0].generatorURL"),
        ({"labels": {"alertname": "A", "k" * 200: "v"}}, "alerts[0].labels: keys must be strings of 1 to 128"),
        ({"labels": {"alertname": "A", **{f"l{i}": "v" for i in range(70)}}}, "alerts[0].labels: more than 64"),
        ({"annotations": {f"a{i}": "v" for i in range(70)}}, "alerts[0].annotations: more than 64"),
    ],
)
def test_fields_that_reach_state_or_keys_are_bounded(change: dict[str, Any], field: str) -> None:
    alert = {**am_alert("A", service="s", instance="i"), **change}
    with pytest.raises(AlertPayloadError) as error:
        parse_alertmanager(am_webhook([alert]), group_by=GROUP_BY, received_at=NOW)
    assert field in error.value.reason


def test_bounded_fields_at_their_limit_are_accepted() -> None:
    alert = {**am_alert("A", service="s", instance="i"), "fingerprint": "f" * MAX_FINGERPRINT_LENGTH}
    (parsed,) = parse_alertmanager(am_webhook([alert]), group_by=GROUP_BY, received_at=NOW)
    assert parsed.fingerprint == "f" * MAX_FINGERPRINT_LENGTH
    with pytest.raises(AlertPayloadError, match="fingerprint"):
        parse_vigil({"name": "A", "fingerprint": "x" * 1_000_000}, group_by=GROUP_BY, received_at=NOW)


async def test_huge_fingerprint_is_refused_and_the_group_keeps_working(
    api: ApiFactory, workers: list[Worker], store: Store, unique: str
) -> None:
    client = api(quiet_period_seconds=3600, max_payload_bytes=4_000_000)
    huge = {**am_alert(unique, service="big", instance="i0"), "fingerprint": "x" * 1_000_000}
    response = await client.post("/api/v1/alerts/alertmanager", json=am_webhook([huge]))
    assert response.status_code == 422
    assert "alerts[0].fingerprint" in response.json()["detail"]
    incident_id = await post(client, [am_alert(unique, service="big", instance="i1")])
    row = await eventually(lambda: detail(client, incident_id), lambda d: d.record is not None)
    assert row.record is not None
    assert row.record.fingerprint_count == 1


async def test_alerts_past_the_state_budget_are_counted_not_kept(
    api: ApiFactory, workers: list[Worker], unique: str
) -> None:
    """Alerts at every field's limit, many more than the state budget holds: the workflow stays within Temporal's
    limits (detail answers, new alerts still land) and says how many it counted without keeping."""
    client = api(quiet_period_seconds=3600, max_payload_bytes=4_000_000)

    def big(i: int) -> dict[str, Any]:
        alert = am_alert(unique, service="wide", instance=f"w{i}")
        alert["labels"] |= {f"label_{n:02d}": f"{i}-{n}-" + "v" * 1000 for n in range(58)}
        alert["annotations"] = {f"note_{n:02d}": "a" * 1024 for n in range(20)}
        return alert

    per_alert = 58 * 1010 + 20 * 1030
    total = MAX_ALERT_STATE_BYTES // per_alert + 10
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/alerts/alertmanager", json=am_webhook([big(i), big(i + 1000)]))
            for i in range(0, total, 2)
        )
    )
    assert {r.status_code for r in responses} == {202}
    incident_id = responses[0].json()["incidents"][0]["incident_id"]
    sent = 2 * len(responses)
    final = await eventually(
        lambda: detail(client, incident_id),
        lambda d: d.state is not None and len(d.state.alerts) + d.state.overflow_alerts == sent,
        timeout=90,
    )
    assert final.state is not None
    assert 0 < final.state.overflow_alerts < sent
    assert final.state.alert_bytes <= MAX_ALERT_STATE_BYTES
    assert TimelineKind.ALERTS_OVERFLOWED in [e.kind for e in final.state.timeline]
    assert final.state.alert_occurrences == sent
    # still alive: a resolve goes through the workflow
    resolved = await client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"by": "ops"})
    assert resolved.status_code == 200, resolved.text


# --- deliveries: retries, re-notifications and order -----------------------------------------------------------


async def test_a_retried_or_renotified_delivery_counts_once(
    api: ApiFactory, workers: list[Worker], store: Store, unique: str
) -> None:
    client = api(quiet_period_seconds=3600)
    start = datetime.now(UTC) - timedelta(minutes=5)
    a = at(am_alert(unique, service="pay", instance="p1"), start)
    b = at(am_alert(unique, service="pay", instance="p2"), start)
    incident_id = await post(client, [a, b])
    await post(client, [a, b])  # the sender's retry after a timeout: the same content
    await post(client, [a])  # part of it again, as Alertmanager re-notifies a still-firing alert
    await post(client, [b, a])  # the same content in another order

    async def settled() -> IncidentDetail:
        return await detail(client, incident_id)

    final = await eventually(
        settled, lambda d: d.state is not None and d.state.alert_receipts >= 3 and d.record is not None
    )
    assert final.state is not None
    counts = {r.labels["instance"]: (r.count, r.repeats) for r in final.state.alerts.values()}
    assert counts == {"p1": (1, 1), "p2": (1, 0)}
    assert final.state.alert_occurrences == 2
    stored = await eventually(
        lambda: store.alerts(final.incident_id),
        lambda rows: sorted((r.count, r.repeats) for r in rows) == [(1, 0), (1, 1)],
    )
    assert len(stored) == 2
    row = await eventually(
        lambda: store.get_incident(final.incident_id), lambda r: r is not None and r.alert_count == 2
    )
    assert row is not None


async def test_an_older_firing_after_the_resolution_leaves_the_alert_resolved(
    api: ApiFactory, workers: list[Worker], unique: str
) -> None:
    client = api(quiet_period_seconds=0.5, close_after_seconds=60)
    start = datetime.now(UTC) - timedelta(minutes=10)
    alert = am_alert(unique, service="cart", instance="c1")
    firing_then = at(alert, start)
    resolved = {**at(alert, start, start + timedelta(minutes=4)), "status": "resolved"}
    incident_id = await post(client, [resolved])  # the resolution overtook the firing notification
    await post(client, [firing_then])
    final = await eventually(
        lambda: detail(client, incident_id), lambda d: d.state is not None and d.state.status is IncidentStatus.RESOLVED
    )
    assert final.state is not None
    (record,) = final.state.alerts.values()
    assert record.status.value == "resolved"
    assert (record.count, record.repeats) == (1, 1)
    # a later episode of the same alert does fire again
    await post(client, [at(alert, start + timedelta(minutes=6))])
    refired = await eventually(
        lambda: detail(client, incident_id),
        lambda d: d.state is not None and d.state.status is IncidentStatus.MONITORING,
    )
    assert refired.state is not None
    (record,) = refired.state.alerts.values()
    assert (record.status.value, record.count) == ("firing", 2)


# --- one incident per occurrence -----------------------------------------------------------------------------


async def test_a_group_that_fires_after_close_opens_a_new_incident(
    api: ApiFactory, workers: list[Worker], store: Store, unique: str
) -> None:
    client = api(quiet_period_seconds=0.3, close_after_seconds=0.3)
    firing = am_alert(unique, service="orders", instance="o1")
    group_id = await post(client, [firing])
    first = await eventually(lambda: detail(client, group_id), lambda d: d.state is not None)
    await post(client, [am_alert(unique, service="orders", instance="o1", status="resolved")])
    closed = await eventually(
        lambda: detail(client, first.incident_id),
        lambda d: d.record is not None and d.record.status is IncidentStatus.CLOSED,
        timeout=60,
    )
    assert first.incident_id != group_id
    assert first.incident_id.startswith(group_id)

    assert await post(client, [am_alert(unique, service="orders", instance="o1")]) == group_id
    second = await eventually(
        lambda: detail(client, group_id), lambda d: d.incident_id != first.incident_id and d.record is not None
    )
    listed = await eventually(
        lambda: client.get("/api/v1/incidents", params={"limit": 1000}),
        lambda r: len([i for i in r.json() if i["group_id"] == group_id]) == 2,
    )
    rows = [IncidentSummary.model_validate(i) for i in listed.json() if i["group_id"] == group_id]
    assert {r.incident_id for r in rows} == {first.incident_id, second.incident_id}

    # the closed incident stays whole and reachable, with its own timeline only
    again = await detail(client, first.incident_id)
    assert again.record is not None
    assert again.record.status is IncidentStatus.CLOSED
    seqs = [e.seq for e in again.timeline]
    assert seqs == list(range(1, len(seqs) + 1)) == [e.seq for e in closed.timeline]
    assert TimelineKind.CLOSED in [e.kind for e in again.timeline]
    assert [e.kind for e in second.timeline].count(TimelineKind.OPENED) == 1
    assert TimelineKind.CLOSED not in [e.kind for e in second.timeline]
    # an action on the closed incident never reaches the new one
    late = await client.post(f"/api/v1/incidents/{first.incident_id}/resolve", json={"by": "ops"})
    assert late.status_code == 409
    live = await detail(client, second.incident_id)
    assert live.state is not None
    assert live.state.status is not IncidentStatus.RESOLVED


# --- refused actions are on the record ------------------------------------------------------------------------


async def test_refused_actions_are_recorded_with_their_actor(
    api: ApiFactory, workers: list[Worker], store: Store, unique: str
) -> None:
    client = api(quiet_period_seconds=3600)
    group_id = await post(client, [am_alert(unique, service="auth", instance="a1")])
    await eventually(
        lambda: detail(client, group_id),
        lambda d: d.state is not None and d.state.status is IncidentStatus.MONITORING,
    )
    proposal = {"action": "restart", "proposed_by": "alice"}
    assert (await client.post(f"/api/v1/incidents/{group_id}/remediation", json=proposal)).status_code == 200
    second = await client.post(f"/api/v1/incidents/{group_id}/remediation", json={**proposal, "proposed_by": "bob"})
    assert second.status_code == 409
    assert "already awaits approval" in second.json()["detail"]
    approve = {"decision": "approve", "by": "carol"}
    assert (await client.post(f"/api/v1/incidents/{group_id}/approval", json=approve)).status_code == 200
    again = await client.post(f"/api/v1/incidents/{group_id}/approval", json={"decision": "reject", "by": "dave"})
    assert again.status_code == 409

    final = await eventually(
        lambda: detail(client, group_id),
        lambda d: [e.actor for e in d.timeline if e.kind is TimelineKind.REFUSED] == ["bob", "dave"],
    )
    refused = [e for e in final.timeline if e.kind is TimelineKind.REFUSED]
    assert refused[0].data["attempt"] == "propose"
    assert refused[1].data["attempt"] == "reject"
    assert "nothing awaits approval" in refused[1].message
    stored = await store.timeline(final.incident_id)
    assert [e.actor for e in stored if e.kind is TimelineKind.REFUSED] == ["bob", "dave"]


# --- the store down -----------------------------------------------------------------------------------------


async def test_detail_falls_back_to_live_state_while_the_store_is_down(
    temporal_client: Client, workers: list[Worker], database_url: str, api: ApiFactory, tmp_path: Path, unique: str
) -> None:
    client = api(quiet_period_seconds=3600)
    group_id = await post(client, [am_alert(unique, service="geo", instance="g1")])
    await eventually(lambda: detail(client, group_id), lambda d: d.record is not None)

    doomed = start_embedded_postgres(tmp_path / "pg")
    await migrate_database(doomed.url)
    dead_store = await Store.open(doomed.url)
    try:
        doomed.stop()
        app = create_app(make_settings(database_url, temporal_client), client=temporal_client, store=dead_store)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vigil.test") as down:
            live = await detail(down, group_id)
            assert live.live
            assert live.record is None
            assert live.state is not None
            assert live.state.status is not None
            assert live.timeline  # from the workflow's own state
            missing = await down.get(f"/api/v1/incidents/incident-{unique.lower()}-nowhere")
            assert missing.status_code == 503
            assert missing.headers["retry-after"]
    finally:
        await asyncio.wait_for(dead_store.close(), timeout=30)
