"""Triage diagnoses: alert + stored logs -> deterministic RCA on the ml worker (analysis, retrieval), visible in
the workflow state, the category search attribute, the store and the API; DocQA over the same knowledge base;
a closed incident is indexed and found again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.worker import Worker

from tests.conftest import ApiFactory
from tests.rca_support import outage_logs
from tests.support import am_alert, am_webhook, eventually
from tests.test_incident_flow import detail, open_incident, status_of, wait_status
from vigil.models import IncidentDetail, IncidentStatus, TimelineEvent, TimelineKind
from vigil.rca.engine import NO_LLM
from vigil.rca.models import ChatAnswer
from vigil.store.database import Store


async def _diagnosed(client: httpx.AsyncClient, incident_id: str) -> IncidentDetail:
    return await eventually(
        lambda: detail(client, incident_id),
        lambda d: d.state is not None and d.state.diagnosis is not None and status_of(d) is IncidentStatus.MONITORING,
        timeout=90,
    )


async def test_incident_is_diagnosed_from_its_logs(
    api: ApiFactory, workers: list[Worker], store: Store, unique: str
) -> None:
    client = api(quiet_period_seconds=3600)
    service = f"svc-{unique.lower()}"
    start = datetime.now(UTC) - timedelta(minutes=12)
    pushed = await client.post("/api/v1/logs", json=outage_logs(service, start=start, injection=True))
    assert pushed.status_code == 202, pushed.text
    incident_id = await open_incident(client, [am_alert(unique, service=service, instance="i1")])

    d = await _diagnosed(client, incident_id)
    assert d.state is not None
    rca = d.state.diagnosis
    assert rca is not None
    assert rca.source == "deterministic"
    assert rca.llm_error == NO_LLM
    assert rca.category.value == "database"
    ids = {item.id for item in rca.evidence}
    assert "detector:db-connection-refused" in ids
    assert set(rca.root_cause.evidence) <= ids
    # The logs of the alerting service name the database it cannot reach: that is the component, reached by a chain
    # that starts at the service whose alert fired.
    assert rca.root_cause.component.startswith("db.toyprod.internal")
    assert rca.root_cause.chain[0].component == service
    assert rca.root_cause.chain[-1].component.startswith("db.toyprod.internal")
    assert rca.runbooks, "retrieval found no runbook"
    assert all(a.evidence and set(a.evidence) <= ids for a in rca.recommended_actions)
    assert d.state.category == "database"
    diagnosed = [e for e in d.state.timeline if e.kind is TimelineKind.DIAGNOSED]
    assert len(diagnosed) == 1
    assert diagnosed[0].data["category"] == "database"
    # The injected log line did nothing: no proposal, no decision, nothing awaiting approval.
    assert d.state.pending_approval is None
    assert d.state.decisions == []
    assert not any(e.kind in (TimelineKind.APPROVED, TimelineKind.REMEDIATION_PROPOSED) for e in d.state.timeline)

    stored = await store.diagnosis(d.incident_id)
    assert stored is not None
    assert stored.root_cause == rca.root_cause
    assert d.diagnosis == rca

    async def listed_category() -> str | None:
        response = await client.get("/api/v1/incidents", params={"service": service})
        rows = [r for r in response.json() if r["incident_id"] == d.incident_id]
        return rows[0]["category"] if rows else None

    assert await eventually(listed_category, lambda c: c == "database", timeout=30) == "database"


async def test_chat_query_answers_from_runbooks_with_citations(api: ApiFactory, workers: list[Worker]) -> None:
    client = api()
    response = await client.post(
        "/api/v1/chat/query", json={"question": "The database connection pool is exhausted, what do I check?"}
    )
    assert response.status_code == 200, response.text
    answer = ChatAnswer.model_validate(response.json())
    assert answer.source == "extractive"
    assert answer.citations
    assert all(c.source for c in answer.citations)
    cited = {c.id for c in answer.citations}
    assert any(f"[{cid}]" in answer.answer for cid in cited)
    assert any("postgres" in c.source or "database" in c.title.lower() for c in answer.citations)

    empty = await client.post("/api/v1/chat/query", json={"question": ""})
    assert empty.status_code == 422
    extra = await client.post("/api/v1/chat/query", json={"question": "x", "approve": True})
    assert extra.status_code == 422


async def test_closed_incident_is_indexed_and_found_again(api: ApiFactory, workers: list[Worker], unique: str) -> None:
    client = api(quiet_period_seconds=0.5, close_after_seconds=0.5)
    service = f"svc-{unique.lower()}"
    start = datetime.now(UTC) - timedelta(minutes=12)
    assert (await client.post("/api/v1/logs", json=outage_logs(service, start=start))).status_code == 202
    incident_id = await open_incident(client, [am_alert(unique, service=service, instance="i1")])
    occurrence = (await _diagnosed(client, incident_id)).incident_id
    resolved = am_alert(unique, service=service, instance="i1", status="resolved")
    assert (await client.post("/api/v1/alerts/alertmanager", json=am_webhook([resolved]))).status_code == 202
    await eventually(lambda: detail(client, incident_id), lambda d: status_of(d) is IncidentStatus.CLOSED, timeout=60)

    async def ask() -> ChatAnswer:
        response = await client.post("/api/v1/chat/query", json={"question": f"{unique} on {service} database"})
        assert response.status_code == 200, response.text
        return ChatAnswer.model_validate(response.json())

    answer = await ask()
    assert occurrence in {c.source for c in answer.citations if c.collection == "incidents"}


def _disk_full_logs(service: str, start: datetime) -> list[dict[str, Any]]:
    return [
        {
            "ts": (start + timedelta(seconds=5 * i)).isoformat(),
            "service": service,
            "level": "error",
            "message": f"write /var/lib/{service}/orders-{i}.json failed: [Errno 28] No space left on device",
        }
        for i in range(30)
    ]


async def test_reopened_incident_is_diagnosed_again_and_keeps_each_diagnosis(
    api: ApiFactory, workers: list[Worker], unique: str
) -> None:
    """A re-opened incident is a new episode: it is diagnosed again from what fires now, and the timeline keeps
    both diagnoses (before, the first diagnosis was carried across every later fault of the group)."""
    client = api(quiet_period_seconds=0.2, close_after_seconds=600)
    service = f"svc-{unique.lower()}"
    pushed = await client.post(
        "/api/v1/logs", json=outage_logs(service, start=datetime.now(UTC) - timedelta(minutes=12))
    )
    assert pushed.status_code == 202, pushed.text
    incident_id = await open_incident(client, [am_alert(unique, service=service, instance="i1")])
    first = await _diagnosed(client, incident_id)
    assert first.state is not None
    assert first.state.diagnosis is not None
    assert first.state.diagnosis.category.value == "database"

    await open_incident(client, [am_alert(unique, service=service, instance="i1", status="resolved")])
    await wait_status(client, incident_id, IncidentStatus.RESOLVED)
    pushed = await client.post("/api/v1/logs", json=_disk_full_logs(service, datetime.now(UTC)))
    assert pushed.status_code == 202, pushed.text
    await open_incident(client, [am_alert(unique, service=service, instance="i1")])

    def diagnoses(d: IncidentDetail) -> list[TimelineEvent]:
        return [e for e in d.timeline if e.kind is TimelineKind.DIAGNOSED]

    again = await eventually(lambda: detail(client, incident_id), lambda d: len(diagnoses(d)) >= 2, timeout=90)
    assert again.state is not None
    kinds = [e.kind for e in again.timeline]
    reopened_at = kinds.index(TimelineKind.REOPENED)
    first_diagnosis, second_diagnosis = diagnoses(again)[:2]
    assert first_diagnosis.seq < again.timeline[reopened_at].seq < second_diagnosis.seq
    assert first_diagnosis.data["category"] == "database"
    assert second_diagnosis.data["category"] == "storage"
    assert again.state.diagnosis_since is not None
    assert again.state.diagnosis is not None
    assert again.state.diagnosis.category.value == "storage"
