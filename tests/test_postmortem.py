"""Postmortem draft and MTTx: pure tests on hand-built incident details, and the routes on real Temporal and
PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from typer.testing import CliRunner

from tests.conftest import ApiFactory
from tests.support import am_alert, am_webhook, eventually, free_port
from vigil.analysis.models import Category
from vigil.cli import app
from vigil.models import (
    AlertRecord,
    AlertSource,
    AlertStatus,
    IncidentDetail,
    IncidentState,
    IncidentStatus,
    Severity,
    TimelineEvent,
    TimelineKind,
)
from vigil.mttx import HISTOGRAM_BUCKETS, IncidentTimings, mttx, observe_mttx
from vigil.postmortem import md_text, postmortem_markdown
from vigil.rca.models import EvidenceItem, RCAAction, RCARootCause, RootCauseAnalysis
from vigil.settings import get_settings
from vigil.store.database import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alert(name: str, summary: str, *, start: float = 0, count: int = 1, repeats: int = 0, **labels: str) -> AlertRecord:
    return AlertRecord(
        fingerprint=f"fp-{name}",
        status=AlertStatus.RESOLVED,
        labels={"alertname": name, "service": "checkout", **labels},
        severity=Severity.CRITICAL,
        summary=summary,
        count=count,
        repeats=repeats,
        first_seen=at(start),
        last_seen=at(start + 60),
        starts_at=at(start),
        source=AlertSource.ALERTMANAGER,
    )


def event(
    seq: int, seconds: float, kind: TimelineKind, message: str, actor: str = "vigil", **data: object
) -> TimelineEvent:
    return TimelineEvent(seq=seq, at=at(seconds), kind=kind, message=message, actor=actor, data=data)


def rca() -> RootCauseAnalysis:
    return RootCauseAnalysis(
        source="deterministic",
        category=Category.DATABASE,
        confidence=0.8,
        severity="critical",
        code_related=False,
        root_cause=RCARootCause(
            summary="Connection pool of orders-db exhausted",
            component="orders-db",
            evidence=["log:tpl-17", "deploy:abc"],
        ),
        recommended_actions=[
            RCAAction(action="restart-deployment", evidence=["log:tpl-17"]),
            RCAAction(action="Raise the pool size", evidence=["metric:db_conn"], runbook="db-pool.md"),
        ],
        evidence=[EvidenceItem(id="log:tpl-17", kind="log", title="too many connections")],
    )


def incident(
    *, alerts: list[AlertRecord], timeline: list[TimelineEvent], diagnosis: RootCauseAnalysis | None, **state: object
) -> IncidentDetail:
    values: dict[str, object] = {
        "incident_id": "incident-checkout-1-a",
        "group_key": "checkout",
        "group_labels": {"alertname": "HighErrors"},
        "title": "HighErrors on checkout",
        "service": "checkout",
        "severity": Severity.CRITICAL,
        "opened_at": at(60),
        "updated_at": at(60),
        "alerts": {record.fingerprint: record for record in alerts},
        "timeline": timeline,
        "diagnosis": diagnosis,
    }
    values.update(state)
    live = IncidentState.model_validate(values)
    return IncidentDetail(
        incident_id=live.incident_id, live=True, state=live, record=None, timeline=timeline, diagnosis=diagnosis
    )


def resolved_incident() -> IncidentDetail:
    timeline = [
        event(1, 60, TimelineKind.OPENED, "Incident opened for checkout"),
        event(2, 180, TimelineKind.DIAGNOSED, "deterministic RCA: database (80%)"),
        event(
            3,
            600,
            TimelineKind.REMEDIATION_PROPOSED,
            "bob proposes 'restart-deployment'",
            "bob",
            action="restart-deployment",
        ),
        event(4, 660, TimelineKind.APPROVED, "ana approved 'restart-deployment'", "ana", action="restart-deployment"),
        event(5, 700, TimelineKind.REFUSED, "eve tried to approve: refused, nothing awaits approval", "eve"),
        event(6, 7260, TimelineKind.RESOLVED, "Resolved: all alerts resolved for 300s"),
    ]
    return incident(
        alerts=[alert("HighErrors", "5xx above 5%", count=2, repeats=3), alert("SlowRequests", "p99 high", start=30)],
        timeline=timeline,
        diagnosis=rca(),
        status=IncidentStatus.RESOLVED,
        resolved_at=at(7260),
    )


def sections(markdown: str) -> dict[str, str]:
    parts = markdown.split("\n## ")
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1].strip() for part in parts[1:]}


def test_mttx_of_a_resolved_incident() -> None:
    timings = mttx(resolved_incident())
    assert timings.impact_started_at == T0
    assert timings.time_to_detect_seconds == 60
    assert timings.time_to_acknowledge_seconds == 540  # bob's proposal, 9 minutes after opening
    assert timings.time_to_diagnose_seconds == 120
    assert timings.time_to_mitigate_seconds == 600  # ana's approval
    assert timings.time_to_resolve_seconds == 7260


def test_mttx_of_an_open_incident_is_none_where_nothing_happened_and_never_negative() -> None:
    detail = incident(
        alerts=[alert("HighErrors", "5xx", start=120)],  # the sender's clock runs ahead of ours
        timeline=[
            event(1, 60, TimelineKind.OPENED, "Incident opened"),
            event(2, 90, TimelineKind.RESOLVED, "ignored: vigil is no human", "vigil"),
        ],
        diagnosis=None,
    )
    timings = mttx(detail)
    assert timings.time_to_detect_seconds == 0
    assert timings.time_to_acknowledge_seconds is None
    assert timings.time_to_diagnose_seconds is None
    assert timings.time_to_mitigate_seconds is None
    assert timings.time_to_resolve_seconds is None


async def test_observe_mttx_counts_each_known_figure() -> None:
    """Through a real Temporal runtime's Prometheus exporter, as the incidents worker serves it."""
    port = free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}", histogram_bucket_overrides=HISTOGRAM_BUCKETS)
        )
    )
    timings = mttx(resolved_incident())
    observe_mttx(timings.model_copy(update={"time_to_mitigate_seconds": None}), runtime.metric_meter)

    async def scrape() -> str:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"http://127.0.0.1:{port}/metrics")).text

    text = await eventually(scrape, lambda body: "vigil_incident_time_to_resolve_seconds_count" in body)
    counts = {
        stage: re.search(rf"^vigil_incident_time_to_{stage}_seconds_count\S* (\d+)", text, re.MULTILINE)
        for stage in ("detect", "acknowledge", "diagnose", "mitigate", "resolve")
    }
    assert {stage: int(m.group(1)) if m else 0 for stage, m in counts.items()} == {
        "detect": 1,
        "acknowledge": 1,
        "diagnose": 1,
        "mitigate": 0,
        "resolve": 1,
    }
    assert re.search(r'^vigil_incident_time_to_resolve_seconds_bucket\{[^}]*le="86400"[^}]*\} 1$', text, re.MULTILINE)
    assert re.search(r"^vigil_incident_time_to_resolve_seconds_sum\S* 7260$", text, re.MULTILINE)


async def test_a_closed_incident_keeps_its_timings(
    api: ApiFactory, workers: list[Worker], store: Store, unique: str
) -> None:
    client = api(quiet_period_seconds=0.3, close_after_seconds=0.3)
    alert = am_alert(unique, service="pay", instance="p1")
    response = await client.post("/api/v1/alerts/alertmanager", json=am_webhook([alert]))
    group_id = response.json()["incidents"][0]["incident_id"]
    resolved = am_webhook([am_alert(unique, service="pay", instance="p1", status="resolved")])
    assert (await client.post("/api/v1/alerts/alertmanager", json=resolved)).status_code == 202

    async def detail() -> IncidentDetail:
        return IncidentDetail.model_validate((await client.get(f"/api/v1/incidents/{group_id}")).json())

    closed = await eventually(detail, lambda d: d.record is not None and d.record.closed_at is not None, timeout=60)
    stored = await eventually(lambda: store.timings(closed.incident_id), lambda t: t is not None)
    assert stored is not None
    assert stored.resolved_at is not None
    assert stored.time_to_resolve_seconds is not None
    assert stored.time_to_diagnose_seconds is not None
    assert not await store.save_timings(stored)  # once: a retried activity counts nothing twice


def test_postmortem_of_a_resolved_incident() -> None:
    markdown = postmortem_markdown(resolved_incident())
    assert markdown == postmortem_markdown(resolved_incident())  # deterministic
    assert markdown.startswith("# Postmortem: HighErrors on checkout\n")
    parts = sections(markdown)
    assert list(parts) == [
        "Summary",
        "Impact",
        "Timeline",
        "Root cause",
        "Actions taken",
        "What went well",
        "What went badly",
        "Follow-ups",
    ]
    assert "started 2026\\-03\\-01" not in parts["Summary"]  # our own text is not escaped
    assert "started 2026-03-01 12:00:00 UTC" in parts["Summary"]
    assert "resolved 2026-03-01 14:01:00 UTC, after 2h 01m" in parts["Summary"]
    assert "- Duration: 2h 01m" in parts["Impact"]
    assert "- Alerts: 2 fired, 3 firing episode(s), 3 repeat(s)" in parts["Impact"]
    assert "- Error budget burned: not measured" in parts["Impact"]
    assert "| 2026-03-01 12:11:00 UTC | ana | approved | ana approved 'restart\\-deployment' |" in parts["Timeline"]
    assert "Connection pool of orders\\-db exhausted" in parts["Root cause"]
    assert "  - log:tpl\\-17: too many connections" in parts["Root cause"]
    assert "  - deploy:abc" in parts["Root cause"]
    assert "→ approved by ana" in parts["Actions taken"]
    assert "refused (eve)" in parts["Actions taken"]
    assert parts["What went well"].splitlines() == [
        "- Time to detect: 1m 00s (target: under 5m 00s)",
        "- Time to acknowledge: 9m 00s (target: under 15m 00s)",
        "- Time to diagnose: 2m 00s (target: under 5m 00s)",
        "- Time to mitigate: 10m 00s (target: under 30m 00s)",
    ]
    assert parts["What went badly"] == "- Time to resolve: 2h 01m (target: under 1h 00m)"
    # restart-deployment was approved: only the other recommendation is left to do
    assert parts["Follow-ups"] == "- [ ] Raise the pool size (evidence: metric:db\\_conn; runbook: db\\-pool\\.md)"


def test_postmortem_of_an_open_incident_without_diagnosis() -> None:
    detail = incident(
        alerts=[alert("BudgetBurn", "burning", slo="availability")],
        timeline=[event(1, 60, TimelineKind.OPENED, "Incident opened")],
        diagnosis=None,
        status=IncidentStatus.MONITORING,
    )
    parts = sections(postmortem_markdown(detail))
    assert "not resolved when this draft was written (status: monitoring)" in parts["Summary"]
    assert "- Duration: ongoing" in parts["Impact"]
    assert "not measured (SLO alerts fired for availability but carry no burned-budget figure)" in parts["Impact"]
    assert parts["Root cause"] == "No diagnosis was made for this incident: the root cause is not established."
    assert parts["Actions taken"] == "No action was proposed, decided or refused."
    assert "- No diagnosis was made." in parts["What went badly"]
    assert parts["Follow-ups"] == "- [ ] Establish the root cause: no diagnosis was made."


def test_error_budget_is_reported_only_as_the_alert_carries_it() -> None:
    detail = incident(
        alerts=[alert("BudgetBurn", "burning", slo="availability", error_budget_burned="2.5%")],
        timeline=[],
        diagnosis=None,
    )
    assert "- Error budget burned: 2\\.5% (reported by alert BudgetBurn)" in postmortem_markdown(detail)


HOSTILE = "<script>alert(1)</script> [link](javascript:alert(1)) `rm -rf /` ![x](http://evil/x.png)\n# heading"


def test_hostile_alert_text_renders_as_text() -> None:
    detail = incident(
        alerts=[alert("Evil", HOSTILE)],
        timeline=[event(1, 60, TimelineKind.ALERT_NEW, f"New alert: {HOSTILE}", actor="<b>mallory</b>")],
        diagnosis=None,
        title=f"Evil: {HOSTILE}",
    )
    markdown = postmortem_markdown(detail)
    assert "<script>" not in markdown
    assert "<b>" not in markdown
    assert "](" not in markdown
    hostile_lines = [line for line in markdown.splitlines() if "rm" in line]
    assert hostile_lines
    for line in hostile_lines:  # every backtick, bracket and bang in them escaped
        assert not re.search(r"(?<!\\)[`\[\]!]", line), line
    assert "\n# heading" not in markdown
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in markdown
    assert "\\[link\\]\\(javascript:alert\\(1\\)\\)" in markdown
    assert "\\`rm \\-rf /\\`" in markdown
    assert md_text("a | b") == "a \\| b"  # cannot split a table cell
    assert md_text("&#60;script&#62;") == "&amp;\\#60;script&amp;\\#62;"  # entities stay text


async def test_postmortem_and_timings_through_the_api(api: ApiFactory, workers: list[Worker], unique: str) -> None:
    client = api(quiet_period_seconds=3600, close_after_seconds=3600)
    response = await client.post(
        "/api/v1/alerts/alertmanager", json=am_webhook([am_alert(unique, service="pay", instance="p1")])
    )
    assert response.status_code == 202, response.text
    incident_id = response.json()["incidents"][0]["incident_id"]

    async def status() -> str | None:
        got = await client.get(f"/api/v1/incidents/{incident_id}")
        return got.json()["state"]["status"] if got.status_code == 200 and got.json()["state"] else None

    await eventually(status, lambda s: s == "monitoring", timeout=60)
    proposal = {"action": "restart-deployment", "proposed_by": "bob"}
    assert (await client.post(f"/api/v1/incidents/{incident_id}/remediation", json=proposal)).status_code == 200
    decision = {"decision": "approve", "by": "ana"}
    assert (await client.post(f"/api/v1/incidents/{incident_id}/approval", json=decision)).status_code == 200
    resolved = await client.post(f"/api/v1/incidents/{incident_id}/resolve", json={"by": "ana", "reason": "fixed"})
    assert resolved.status_code == 200, resolved.text

    async def postmortem() -> str:
        got = await client.get(f"/api/v1/incidents/{incident_id}/postmortem")
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "text/markdown; charset=utf-8"
        return got.text

    markdown = await eventually(postmortem, lambda text: "resolved (ana): Resolved: fixed" in text, timeout=30)
    parts = sections(markdown)
    assert "→ approved by ana" in parts["Actions taken"]
    assert f"{unique} (critical" in parts["Impact"]

    timings = await client.get(f"/api/v1/incidents/{incident_id}/timings")
    assert timings.status_code == 200, timings.text
    figures = IncidentTimings.model_validate(timings.json())
    assert figures.resolved_at is not None
    assert figures.time_to_acknowledge_seconds is not None
    assert figures.time_to_mitigate_seconds is not None
    assert figures.time_to_resolve_seconds is not None
    assert figures.time_to_acknowledge_seconds <= figures.time_to_mitigate_seconds

    assert (await client.get("/api/v1/incidents/incident-nope/postmortem")).status_code == 404
    assert (await client.get("/api/v1/incidents/incident-nope/timings")).status_code == 404
    locked = api(api_token="s3cret")
    assert (await locked.get(f"/api/v1/incidents/{incident_id}/postmortem")).status_code == 401


def test_cli_says_when_the_api_is_not_running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIGIL_API_PORT", str(free_port()))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["postmortem", "incident-x", "--out", str(tmp_path / "pm.md")])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "the Vigil API does not answer" in result.output
    assert not (tmp_path / "pm.md").exists()
