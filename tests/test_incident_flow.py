"""The incident pipeline end to end on real Temporal and PostgreSQL: webhook -> workflow -> store."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from tests.conftest import ApiFactory
from tests.support import am_alert, am_webhook, eventually
from vigil.models import IncidentDetail, IncidentStatus, TimelineKind
from vigil.store.database import Store


async def detail(api: httpx.AsyncClient, incident_id: str) -> IncidentDetail:
    response = await api.get(f"/api/v1/incidents/{incident_id}")
    assert response.status_code == 200, response.text
    return IncidentDetail.model_validate(response.json())


def status_of(d: IncidentDetail) -> IncidentStatus | None:
    return d.state.status if d.state else (d.record.status if d.record else None)


async def test_alert_storm_is_two_incidents_with_exact_counts(
    api: ApiFactory, workers: list[Worker], store: Store, temporal_client: Client, unique: str
) -> None:
    """200 alerts, 5 fingerprints, 2 groups -> exactly 2 workflows, right counts, no duplicate rows."""
    client = api(quiet_period_seconds=3600)
    # group A (service checkout): 3 instances; group B (service payments): 2 instances
    fingerprints = [("checkout", "a1"), ("checkout", "a2"), ("checkout", "a3"), ("payments", "b1"), ("payments", "b2")]
    sent: dict[tuple[str, str], int] = dict.fromkeys(fingerprints, 0)
    bodies: list[dict[str, Any]] = []
    for i in range(40):  # 40 webhooks of 5 alerts = 200 alerts
        batch = [fingerprints[(i + k) % 5] for k in range(5)]
        for key in batch:
            sent[key] += 1
        bodies.append(am_webhook([am_alert(unique, service=s, instance=inst) for s, inst in batch]))
    responses = await asyncio.gather(*(client.post("/api/v1/alerts/alertmanager", json=b) for b in bodies))
    assert [r.status_code for r in responses] == [202] * 40
    incident_ids = {ref["incident_id"] for r in responses for ref in r.json()["incidents"]}
    assert len(incident_ids) == 2
    assert sum(r.json()["accepted"] for r in responses) == 200

    async def counts() -> dict[str, int]:
        """Notifications taken in per alert; each alert fired once, so all but its first are repeats."""
        result: dict[str, int] = {}
        for incident_id in incident_ids:
            d = await detail(client, incident_id)
            assert d.state is not None
            for record in d.state.alerts.values():
                assert record.count == 1
                result[f"{record.labels['service']}/{record.labels['instance']}"] = record.count + record.repeats
        return result

    expected = {f"{s}/{i}": n for (s, i), n in sent.items()}
    assert await eventually(counts, lambda c: c == expected, timeout=60) == expected

    workflows = [
        wf
        async for wf in temporal_client.list_workflows(
            f"WorkflowType = 'IncidentWorkflow' AND WorkflowId STARTS_WITH 'incident-{unique.lower()}'"
        )
    ]
    assert {wf.id for wf in workflows} == incident_ids
    assert len(workflows) == 2  # one run each: no duplicate workflows

    occurrences = sorted([(await detail(client, group_id)).incident_id for group_id in incident_ids])

    async def stored_alerts() -> int:
        return await store.count_rows("incident_alerts", occurrences)

    assert await eventually(stored_alerts, lambda n: n == 5, timeout=30) == 5
    assert await store.count_rows("incidents", occurrences) == 2

    async def stored_counts() -> dict[str, int]:
        out: dict[str, int] = {}
        for incident_id in occurrences:
            for record in await store.alerts(incident_id):
                out[f"{record.labels['service']}/{record.labels['instance']}"] = record.count + record.repeats
        return out

    assert await eventually(stored_counts, lambda c: c == expected, timeout=30) == expected
    for incident_id in occurrences:
        timeline = await store.timeline(incident_id)
        new_alert_events = [e for e in timeline if e.kind is TimelineKind.ALERT_NEW]
        assert len(new_alert_events) == (3 if "checkout" in incident_id else 2)
        assert len({e.seq for e in timeline}) == len(timeline)


async def open_incident(client: httpx.AsyncClient, alerts: list[dict[str, Any]]) -> str:
    response = await client.post("/api/v1/alerts/alertmanager", json=am_webhook(alerts))
    assert response.status_code == 202, response.text
    refs = response.json()["incidents"]
    assert len(refs) == 1
    incident_id: str = refs[0]["incident_id"]
    return incident_id


async def wait_status(
    client: httpx.AsyncClient, incident_id: str, status: IncidentStatus, timeout: float = 30
) -> IncidentDetail:
    return await eventually(lambda: detail(client, incident_id), lambda d: status_of(d) is status, timeout=timeout)


async def test_resolved_alert_resolves_then_closes_the_incident(
    api: ApiFactory, workers: list[Worker], store: Store, unique: str
) -> None:
    client = api(quiet_period_seconds=0.5, close_after_seconds=0.5)
    incident_id = await open_incident(client, [am_alert(unique, service="cart", instance="c1")])
    await wait_status(client, incident_id, IncidentStatus.MONITORING)
    await open_incident(client, [am_alert(unique, service="cart", instance="c1", status="resolved")])
    # the live status can run ahead of the stored timeline (written in batches): wait for both
    closed = await eventually(
        lambda: detail(client, incident_id),
        lambda d: status_of(d) is IncidentStatus.CLOSED and TimelineKind.CLOSED in [e.kind for e in d.timeline],
    )
    assert closed.state is not None
    (record,) = closed.state.alerts.values()
    assert record.status.value == "resolved"
    assert (record.count, record.repeats) == (1, 0)  # one episode, fired then resolved
    kinds = [e.kind for e in closed.timeline]
    assert TimelineKind.ALERT_RESOLVED in kinds
    assert kinds.index(TimelineKind.RESOLVED) < kinds.index(TimelineKind.CLOSED)
    row = await store.get_incident(closed.incident_id)
    assert row is not None
    assert row.status is IncidentStatus.CLOSED
    assert row.resolved_at is not None


async def test_refiring_alert_reopens_a_resolved_incident(api: ApiFactory, workers: list[Worker], unique: str) -> None:
    client = api(quiet_period_seconds=0.2, close_after_seconds=120)
    incident_id = await open_incident(client, [am_alert(unique, service="cart", instance="c1")])
    await open_incident(client, [am_alert(unique, service="cart", instance="c1", status="resolved")])
    await wait_status(client, incident_id, IncidentStatus.RESOLVED)
    await open_incident(client, [am_alert(unique, service="cart", instance="c1")])
    # the live status can run ahead of the stored timeline: wait for both
    reopened = await eventually(
        lambda: detail(client, incident_id),
        lambda d: status_of(d) is IncidentStatus.MONITORING and TimelineKind.REOPENED in [e.kind for e in d.timeline],
    )
    assert reopened.state is not None
    assert reopened.state.resolved_at is None


async def test_approval_accepted_then_refused_by_the_validator(
    api: ApiFactory, workers: list[Worker], unique: str
) -> None:
    client = api(quiet_period_seconds=3600)
    incident_id = await open_incident(client, [am_alert(unique, service="orders", instance="o1")])
    await wait_status(client, incident_id, IncidentStatus.MONITORING)

    refused = await client.post(f"/api/v1/incidents/{incident_id}/approval", json={"decision": "approve", "by": "ana"})
    assert refused.status_code == 409
    assert "nothing awaits approval" in refused.json()["detail"]

    proposal = {"action": "restart-deployment", "params": {"deployment": "orders"}, "proposed_by": "bob"}
    proposed = await client.post(f"/api/v1/incidents/{incident_id}/remediation", json=proposal)
    assert proposed.status_code == 200, proposed.text
    assert (await detail(client, incident_id)).state.status is IncidentStatus.AWAITING_APPROVAL  # type: ignore[union-attr]
    second = await client.post(f"/api/v1/incidents/{incident_id}/remediation", json=proposal)
    assert second.status_code == 409
    assert "already awaits approval" in second.json()["detail"]

    approved = await client.post(
        f"/api/v1/incidents/{incident_id}/approval", json={"decision": "approve", "by": "ana", "reason": "safe"}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["decision"] == "approve"
    assert approved.json()["action"] == "restart-deployment"
    after = await wait_status(client, incident_id, IncidentStatus.MONITORING)
    assert after.state is not None
    assert after.state.pending_approval is None
    assert [d.by for d in after.state.decisions] == ["ana"]

    again = await client.post(f"/api/v1/incidents/{incident_id}/approval", json={"decision": "approve", "by": "eve"})
    assert again.status_code == 409
    missing_actor = await client.post(f"/api/v1/incidents/{incident_id}/approval", json={"decision": "approve"})
    assert missing_actor.status_code == 422


async def test_rejection_and_escalation(api: ApiFactory, workers: list[Worker], unique: str) -> None:
    client = api(quiet_period_seconds=3600, escalation_seconds=0.5)
    incident_id = await open_incident(client, [am_alert(unique, service="search", instance="s1")])
    await wait_status(client, incident_id, IncidentStatus.MONITORING)
    proposal = {"action": "scale-up", "proposed_by": "bob"}
    assert (await client.post(f"/api/v1/incidents/{incident_id}/remediation", json=proposal)).status_code == 200

    escalated = await eventually(
        lambda: detail(client, incident_id),
        lambda d: (
            d.state is not None
            and d.state.pending_approval is not None
            and d.state.pending_approval.escalation_level >= 2
        ),
        timeout=30,
    )
    assert sum(e.kind is TimelineKind.ESCALATED for e in escalated.timeline) >= 1
    rejected = await client.post(
        f"/api/v1/incidents/{incident_id}/approval", json={"decision": "reject", "by": "ana", "reason": "risky"}
    )
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "monitoring"


async def test_resolve_on_request(api: ApiFactory, workers: list[Worker], unique: str) -> None:
    client = api(quiet_period_seconds=3600, close_after_seconds=3600)
    incident_id = await open_incident(client, [am_alert(unique, service="auth", instance="a1")])
    resolved = await client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"by": "ana", "reason": "fixed"})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    twice = await client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"by": "ana"})
    assert twice.status_code == 409
    assert "already resolved" in twice.json()["detail"]
    proposal = await client.post(
        f"/api/v1/incidents/{incident_id}/remediation", json={"action": "restart", "proposed_by": "bob"}
    )
    assert proposal.status_code == 409


async def test_unknown_incident_is_404(api: ApiFactory, workers: list[Worker]) -> None:
    client = api()
    assert (await client.get("/api/v1/incidents/incident-does-not-exist")).status_code == 404
    approval = await client.post("/api/v1/incidents/incident-nope/approval", json={"decision": "approve", "by": "x"})
    assert approval.status_code == 404
    assert (await client.get("/api/v1/incidents/not-an-incident-id")).status_code == 422


async def test_continue_as_new_carries_state(
    api: ApiFactory, workers: list[Worker], temporal_client: Client, unique: str
) -> None:
    from api.intake import incident_policy
    from vigil.alerts import group_key, incident_id_for, parse_alertmanager
    from vigil.models import AlertBatch, IncidentInput
    from vigil.settings import INCIDENTS_TASK_QUEUE
    from workflows.incident import IncidentWorkflow

    client = api(quiet_period_seconds=3600)
    settings = client._transport.app.state.settings  # type: ignore[attr-defined]
    policy = incident_policy(settings).model_copy(update={"max_history_events": 40})
    labels = {"alertname": unique, "service": "feed", "namespace": "prod"}
    key = group_key(labels, settings.group_by)
    incident_id = incident_id_for(key)
    handle = await temporal_client.start_workflow(
        IncidentWorkflow.run,
        IncidentInput(incident_id=incident_id, group_key=key, group_labels=labels, policy=policy),
        id=incident_id,
        task_queue=INCIDENTS_TASK_QUEUE,
    )
    first_run = handle.result_run_id
    latest = temporal_client.get_workflow_handle(incident_id)  # signals follow the chain across continue-as-new
    from datetime import UTC, datetime

    for i in range(60):
        alerts = parse_alertmanager(
            am_webhook([am_alert(unique, service="feed", instance=f"f{i % 3}")]),
            group_by=settings.group_by,
            received_at=datetime.now(UTC),
        )
        await latest.signal("alerts", AlertBatch(delivery_id=f"d{i}", alerts=alerts))
    await latest.signal("alerts", AlertBatch(delivery_id="d0", alerts=alerts))  # a re-sent delivery: not counted
    final = await eventually(
        lambda: detail(client, incident_id),
        lambda d: d.state is not None and d.state.alert_receipts == 60,
        timeout=60,
    )
    assert final.state is not None
    assert len(final.state.alerts) == 3
    handle_now = temporal_client.get_workflow_handle(incident_id)
    # it continues as new at least once (after its last store write, so possibly just after the query)
    await eventually(handle_now.describe, lambda described: described.run_id != first_run, timeout=30)
    assert len({e.seq for e in final.timeline}) == len(final.timeline)
    # the diagnosis, running when the history grew too long, was handed over to the new run, which finished it
    carried = await eventually(
        lambda: detail(client, incident_id), lambda d: d.state is not None and d.state.diagnosis is not None
    )
    assert carried.state is not None
    assert carried.state.category == carried.state.diagnosis.category.value  # type: ignore[union-attr]
