"""The console's incident page, live and actionable (ui.incident, ui.actions, ui.charts, ui.log_groups,
ui.feedback): its pure parts, and the page in NiceGUI's in-process user simulation against the session's real
Temporal server, production workers and PostgreSQL."""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from nicegui import ui
from nicegui.storage import Storage
from nicegui.testing import User, user_simulation
from temporalio.client import Client

import ui.incident as incident_module
from activities.diagnosis import _bundle_log
from api.incident_updates import live_state, run_update
from tests.conftest import ApiFactory
from tests.rca_support import outage_logs
from tests.support import am_alert, eventually, free_port
from tests.test_incident_flow import detail, open_incident
from ui.actions import (
    REASON_REQUIRED,
    ActionInputError,
    approval_request,
    failure_message,
    new_update_id,
    pending_lines,
    proposal_request,
)
from ui.charts import Marker, change_points, chart_window, incident_onset, metric_chart_options, series_evidence_id
from ui.console import IncidentSource
from ui.context import ConsoleContext
from ui.feedback import feedback_from_form, feedback_line
from ui.incident import (
    chart_anchor,
    evidence_anchor,
    incident_page,
    knowledge_url,
    logs_anchor,
    timeline_key,
    unknown_message,
)
from ui.log_groups import group_logs, log_window
from ui.session import SignedInUser
from vigil.analysis.bundle import Bundle, MetricSeries
from vigil.analysis.models import Category
from vigil.analysis.report import extract
from vigil.auth.roles import Role
from vigil.feedback import FeedbackVerdict
from vigil.integrations.models import AcknowledgeRequest
from vigil.models import (
    AlertRecord,
    AlertSource,
    AlertStatus,
    ApprovalOutcome,
    ApprovalRequest,
    Decision,
    DeployEvent,
    IncidentState,
    LogRecord,
    PendingApproval,
    RemediationProposal,
    Severity,
    TimelineKind,
)
from vigil.prometheus import query_range
from vigil.remediation.catalogue import load_configured_catalogue
from vigil.settings import Settings
from vigil.store.database import Store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RESPONDER = SignedInUser("ada", Role.RESPONDER)
VIEWER = SignedInUser("vic", Role.VIEWER)


# --- charts ------------------------------------------------------------------------------------------------


def noisy_step(start: datetime, *, step_at: int, points: int = 80, seed: int = 7) -> MetricSeries:
    """A 15 s series around 1.0 with noise, jumping to 6.0 at point `step_at`."""
    rng = random.Random(seed)
    base = start.timestamp()
    values = [(base + 15 * i, (6.0 if i >= step_at else 1.0) + rng.gauss(0, 0.05)) for i in range(points)]
    return MetricSeries(name="http_5xx_rate", labels={"service": "checkout"}, points=values)


def test_chart_marks_the_onset_the_change_point_and_the_deploys() -> None:
    series = noisy_step(T0, step_at=40)
    onset = T0 + timedelta(seconds=15 * 40)
    deploy = Marker(T0 + timedelta(minutes=8), "deploy checkout v42")
    window = (T0, T0 + timedelta(minutes=20))

    options = metric_chart_options("5xx", [series], window=window, onset=onset, deploys=[deploy])

    assert options["xAxis"] == {
        "type": "time",
        "min": int(T0.timestamp() * 1000),
        "max": int(window[1].timestamp() * 1000),
    }
    (line,) = options["series"]
    assert line["name"] == 'http_5xx_rate{service="checkout"}'
    assert line["data"][0] == [int(T0.timestamp() * 1000), series.points[0][1]]
    lines = line["markLine"]["data"]
    assert [(mark["name"], mark["xAxis"]) for mark in lines] == [
        ("onset", int(onset.timestamp() * 1000)),
        ("deploy checkout v42", int(deploy.at.timestamp() * 1000)),
    ]
    # The change point is the analysis engine's: the step, found on the series itself.
    found = change_points(series)
    assert [c.ts for c in found] == [onset.timestamp()]
    (mark,) = line["markPoint"]["data"]
    assert mark["coord"][0] == int(onset.timestamp() * 1000)
    assert mark["coord"][1] == pytest.approx(6.0, abs=0.3)
    assert mark["name"] == "change up"


def test_flat_series_has_no_change_marker_and_deploys_show_without_series() -> None:
    rng = random.Random(3)
    flat = MetricSeries(name="up", points=[(T0.timestamp() + 15 * i, 1.0 + rng.gauss(0, 0.01)) for i in range(60)])
    window = (T0, T0 + timedelta(minutes=15))
    options = metric_chart_options("up", [flat], window=window, onset=None)
    assert options["series"][0]["markPoint"]["data"] == []
    assert options["series"][0]["markLine"]["data"] == []

    deploys_only = metric_chart_options("Deploys", [], window=window, onset=T0, deploys=[Marker(T0, "deploy a 1")])
    (carrier,) = deploys_only["series"]
    assert carrier["data"] == []
    assert [mark["name"] for mark in carrier["markLine"]["data"]] == ["onset", "deploy a 1"]


def alert_record(name: str, starts_at: datetime, **labels: str) -> AlertRecord:
    return AlertRecord(
        fingerprint=f"fp-{name}",
        status=AlertStatus.FIRING,
        labels={"alertname": name, **labels},
        severity=Severity.CRITICAL,
        summary=name,
        first_seen=starts_at,
        last_seen=starts_at,
        starts_at=starts_at,
        source=AlertSource.ALERTMANAGER,
    )


def incident_state(**overrides: Any) -> IncidentState:
    values: dict[str, Any] = {
        "incident_id": "incident-x-1",
        "group_key": "g",
        "group_labels": {},
        "title": "t",
        "opened_at": T0 + timedelta(minutes=2),
        "updated_at": T0 + timedelta(minutes=2),
    }
    values.update(overrides)
    return IncidentState.model_validate(values)


def test_window_starts_30_minutes_before_the_first_alert_and_ends_when_closed() -> None:
    alerts = {"a": alert_record("A", T0 + timedelta(minutes=1)), "b": alert_record("B", T0)}
    state = incident_state(alerts=alerts)
    now = T0 + timedelta(hours=1)

    assert incident_onset(state) == T0
    assert chart_window(state, now) == (T0 - timedelta(minutes=30), now)
    closed = state.model_copy(update={"closed_at": T0 + timedelta(minutes=20)})
    assert chart_window(closed, now)[1] == T0 + timedelta(minutes=20)
    assert incident_onset(incident_state()) == T0 + timedelta(minutes=2)  # no alert: the opening


def test_series_evidence_id_is_the_diagnosis_id() -> None:
    series = MetricSeries(name="http_5xx_rate", labels={"service": "checkout", "code": "500"}, points=[])
    assert series_evidence_id(series) == "metric:http_5xx_rate{code=500,service=checkout}"


# --- log groups --------------------------------------------------------------------------------------------


def log_records(service: str) -> list[LogRecord]:
    lines = []
    for i in range(12):
        lines.append(
            LogRecord(ts=T0 + timedelta(seconds=i), service=service, level="info", message=f"GET /p/{i} 200 {i}ms")
        )
    for i in range(5):
        lines.append(
            LogRecord(
                ts=T0 + timedelta(seconds=30 + i),
                service=service,
                level="error",
                message=f"connection to db-{i % 2} refused after {100 + i} ms",
            )
        )
    return lines


def test_logs_group_by_template_with_counts_samples_and_the_evidence_ids() -> None:
    records = log_records("checkout")

    groups = group_logs(records)

    assert [(g.count, g.bad) for g in groups] == [(5, 5), (12, 0)]  # errors first
    errors = groups[0]
    assert "refused after" in errors.template
    assert len(errors.samples) == 3
    assert errors.samples[0] == "connection to db-0 refused after 100 ms"
    assert errors.first == T0 + timedelta(seconds=30)
    assert errors.last == T0 + timedelta(seconds=34)
    # The same ids as the analysis engine's templates of the same lines, so a group links to its evidence item.
    extracted = extract(Bundle(logs=[_bundle_log(r) for r in records]))
    assert {f"log:tpl-{tid}" for tid, *_ in extracted.templates} == {g.evidence_id for g in groups}


def test_log_window_is_the_diagnosis_window() -> None:
    state = incident_state(alerts={"a": alert_record("A", T0)})
    assert log_window(state, T0 + timedelta(hours=2)) == (
        T0 - timedelta(minutes=30),
        T0 + timedelta(hours=2, seconds=1),
    )


# --- actions -------------------------------------------------------------------------------------------------


def test_reject_needs_a_reason_and_names_the_proposal() -> None:
    with pytest.raises(ActionInputError, match="reason is required"):
        approval_request("ada", Decision.REJECT, proposal_id=7, reason="  ")
    request = approval_request("ada", Decision.REJECT, proposal_id=7, reason="wrong service")
    assert request == ApprovalRequest(decision=Decision.REJECT, by="ada", reason="wrong service", proposal_id=7)
    assert approval_request("ada", Decision.APPROVE, proposal_id=7).proposal_id == 7


def test_every_click_has_its_own_update_id() -> None:
    ids = {new_update_id("approve", "incident-a") for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("console-approve-incident-a-") for i in ids)


def test_proposal_parameters_are_checked_against_the_catalogue() -> None:
    catalogue = load_configured_catalogue(Settings.model_validate({}))
    action = next(a for a in catalogue.actions.values() if any(p.enum for p in a.parameters.values()))
    name = next(n for n, p in action.parameters.items() if p.enum)

    with pytest.raises(ActionInputError, match=name):
        proposal_request("ada", action, {name: "bad value; rm -rf /"})
    with pytest.raises(ActionInputError, match="not a parameter"):
        proposal_request("ada", action, {"no_such_parameter": "x"})
    blank = proposal_request("ada", action, {name: "  "}, reason="looks like it")
    assert blank == RemediationProposal(action=action.name, params={}, proposed_by="ada", reason="looks like it")


def test_failure_messages_and_pending_lines() -> None:
    from api.incident_updates import IncidentNotFound, UpdateRefused

    assert failure_message("Approve", UpdateRefused("nothing awaits approval: incident is resolved")) == (
        "Approve refused by the incident: nothing awaits approval: incident is resolved"
    )
    assert failure_message("Resolve", IncidentNotFound("no open incident x")) == "Resolve not done: no open incident x"
    pending = PendingApproval(
        proposal=RemediationProposal(action="restart", params={"service": "api"}, proposed_by="vigil", reason="OOM"),
        requested_at=T0,
        proposal_id=12,
        policy_rule="prod-needs-approval",
        policy_reason="production: a human approves",
        dry_run=True,
    )
    lines = dict(pending_lines(pending))
    assert lines["Action"] == "restart"
    assert lines["Parameters"] == "service=api"
    assert lines["Proposed by"] == "vigil at 2024-05-01 12:00:00 UTC"
    assert lines["Why"] == "OOM"
    assert lines["Policy"] == "rule prod-needs-approval: production: a human approves"
    assert lines["Dry run"].startswith("yes")


def test_feedback_form_keeps_a_correction_only_when_wrong() -> None:
    with pytest.raises(ValueError, match="right or wrong"):
        feedback_from_form("i", "ada", None, None, None, None)
    right = feedback_from_form("i", "ada", FeedbackVerdict.RIGHT, Category.NETWORK, "db", " ok ")
    assert (right.category, right.component, right.note) == (None, None, "ok")
    wrong = feedback_from_form("i", "ada", FeedbackVerdict.WRONG, Category.NETWORK, " mesh ", "")
    assert (wrong.category, wrong.component) == (Category.NETWORK, "mesh")


def test_runbook_links_and_anchors() -> None:
    assert knowledge_url("runbooks/db pool.md") == "/knowledge?doc=runbooks%2Fdb%20pool.md"
    assert logs_anchor("log:tpl-t1") == "logs-" + evidence_anchor("log:tpl-t1")


# --- the page against real Temporal, workers and PostgreSQL ---------------------------------------------------


@pytest.fixture
def nicegui_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep NiceGUI's storage out of the working directory (the repo) during in-process simulations."""
    monkeypatch.setattr(Storage, "path", tmp_path / "nicegui")


def console_context(temporal_client: Client, store: Store) -> ConsoleContext:
    settings = Settings.model_validate(
        {
            "TEMPORAL_ADDRESS": temporal_client.service_client.config.target_host,
            "api_host": "127.0.0.1",
            "monitoring": False,
            "prometheus_url": None,
        }
    )
    return ConsoleContext(settings=settings, source=IncidentSource(settings), store=store)


def page_root(context: ConsoleContext, user: SignedInUser) -> Callable[[], None]:
    def root() -> None:
        async def incident(incident_id: str) -> None:
            await incident_page(context, incident_id, user)

        ui.sub_pages({"/incidents/{incident_id}": incident})

    return root


async def undiagnosed_incident(api: ApiFactory, unique: str) -> str:
    """An open incident whose alert storm is still being collected (no diagnosis for an hour)."""
    client = api(debounce_seconds=3600)
    return await open_incident(client, [am_alert(unique, service=f"svc-{unique.lower()}", instance="i1")])


async def state_of(temporal_client: Client, incident_id: str, check: Callable[[IncidentState], bool]) -> IncidentState:
    async def read() -> IncidentState | None:
        return await live_state(temporal_client, incident_id)

    state = await eventually(read, lambda s: s is not None and check(s), timeout=30)
    assert state is not None
    return state


async def propose(temporal_client: Client, incident_id: str, action: str, by: str = "someone") -> PendingApproval:
    return await run_update(
        temporal_client,
        incident_id,
        "propose_remediation",
        RemediationProposal(action=action, proposed_by=by, reason="test"),
        PendingApproval,
    )


def by_marker(user: User, marker: str) -> Any:
    return user.find(marker=marker)


@pytest.mark.usefixtures("nicegui_storage", "workers")
async def test_responder_acknowledges_from_the_page(
    api: ApiFactory, temporal_client: Client, store: Store, unique: str
) -> None:
    incident_id = await undiagnosed_incident(api, unique)
    context = console_context(temporal_client, store)

    async with user_simulation(root=page_root(context, RESPONDER)) as user:
        await user.open(f"/incidents/{incident_id}")
        await user.should_see(marker="ack", retries=100)
        by_marker(user, "ack").click()
        by_marker(user, "ack-note").type("looking at the pool")
        by_marker(user, "ack-submit").click()
        await user.should_see("Acknowledge: done", retries=100)
        state = await state_of(temporal_client, incident_id, lambda s: s.integrations.acknowledged_by is not None)
        assert state.integrations.acknowledged_by == RESPONDER.name
        event = next(e for e in state.timeline if e.kind is TimelineKind.ACKNOWLEDGED)
        assert event.actor == RESPONDER.name
        assert event.message == "ada acknowledged: looking at the pool"
        # The page updates in place: the button is gone, who acknowledged is shown.
        await user.should_see(f"Acknowledged by {RESPONDER.name}", retries=100)
        await user.should_not_see(marker="ack", retries=100)

        # Resolve from the page; a second resolve is refused, and the page says why.
        by_marker(user, "resolve").click()
        by_marker(user, "resolve-reason").type("pool grown by hand")
        by_marker(user, "resolve-submit").click()
        await user.should_see("Resolve: done", retries=100)
        resolved = await state_of(temporal_client, incident_id, lambda s: s.resolved_at is not None)
        event = next(e for e in resolved.timeline if e.kind is TimelineKind.RESOLVED)
        assert event.actor == RESPONDER.name
        # Resolved: the postmortem draft is there, built from the live state and the stored timeline.
        await user.should_see("Postmortem draft (Markdown)", retries=100)
        by_marker(user, "resolve").click()
        by_marker(user, "resolve-submit").click()
        await eventually(
            lambda: _messages(user), lambda messages: any(m.startswith("Resolve refused") for m in messages)
        )
        refusal = next(m for m in user.notify.messages if m.startswith("Resolve refused"))
        assert "already" in refusal or "closed" in refusal, refusal


async def _messages(user: User) -> list[str]:
    return list(user.notify.messages)


@pytest.mark.usefixtures("nicegui_storage", "workers")
async def test_proposal_is_shown_and_approved_from_the_page(
    api: ApiFactory, temporal_client: Client, store: Store, unique: str
) -> None:
    incident_id = await undiagnosed_incident(api, unique)
    pending = await propose(temporal_client, incident_id, "console-test-action")
    context = console_context(temporal_client, store)

    async with user_simulation(root=page_root(context, RESPONDER)) as user:
        await user.open(f"/incidents/{incident_id}")
        await user.should_see(f"Awaiting approval: console-test-action (proposal {pending.proposal_id})", retries=100)
        await user.should_see("someone at ")  # who proposed, and when
        approve = by_marker(user, "approve")
        approve.click()
        approve.click()  # a double click: the button is disabled by the first
        await user.should_see("Approve console-test-action: done", retries=100)

    state = await state_of(
        temporal_client, incident_id, lambda s: any(e.kind is TimelineKind.APPROVED for e in s.timeline)
    )
    (approved,) = [e for e in state.timeline if e.kind is TimelineKind.APPROVED]
    assert approved.actor == RESPONDER.name
    assert not [e for e in state.timeline if e.kind is TimelineKind.REFUSED]  # no second attempt reached it
    assert approved.data["proposal_id"] == pending.proposal_id


@pytest.mark.usefixtures("nicegui_storage", "workers")
async def test_propose_from_the_catalogue_then_reject_needs_a_reason(
    api: ApiFactory, temporal_client: Client, store: Store, unique: str
) -> None:
    incident_id = await undiagnosed_incident(api, unique)
    context = console_context(temporal_client, store)
    catalogue = load_configured_catalogue(context.settings)
    action = sorted(catalogue.actions)[0]

    async with user_simulation(root=page_root(context, RESPONDER)) as user:
        await user.open(f"/incidents/{incident_id}")
        await user.should_see(marker="propose", retries=100)
        by_marker(user, "propose").click()
        select = next(iter(user.find(marker="propose-action").elements))
        assert isinstance(select, ui.select)
        assert action in select.options
        select.value = action
        by_marker(user, "propose-reason").type("from the page")
        by_marker(user, "propose-submit").click()
        await user.should_see(f"Awaiting approval: {action}", retries=100)
        state = await state_of(temporal_client, incident_id, lambda s: s.pending_approval is not None)
        assert state.pending_approval is not None
        assert state.pending_approval.proposal.proposed_by == RESPONDER.name
        assert state.pending_approval.proposal.reason == "from the page"

        by_marker(user, "reject").click()
        by_marker(user, "reject-submit").click()  # no reason
        await user.should_see(REASON_REQUIRED, retries=50)
        still = await live_state(temporal_client, incident_id)
        assert still is not None
        assert still.pending_approval is not None
        by_marker(user, "reject-reason").type("not this service")
        # While the dialog is open, something happens elsewhere: the page updates and the dialog stays as it was.
        await run_update(temporal_client, incident_id, "acknowledge", AcknowledgeRequest(by="grace"), IncidentState)
        await user.should_see("Acknowledged by grace", retries=100)
        (reason,) = user.find(kind=ui.textarea, marker="reject-reason").elements
        assert reason.value == "not this service"
        dialog = next(e for e in reason.ancestors() if isinstance(e, ui.dialog))
        assert dialog.value  # still open
        by_marker(user, "reject-submit").click()
        await user.should_see("Reject: done", retries=100)

    state = await state_of(temporal_client, incident_id, lambda s: s.pending_approval is None)
    rejected = next(e for e in state.timeline if e.kind is TimelineKind.REJECTED)
    assert rejected.actor == RESPONDER.name
    assert rejected.data["reason"] == "not this service"


@pytest.mark.usefixtures("nicegui_storage", "workers")
async def test_a_stale_page_cannot_decide_a_newer_proposal(
    api: ApiFactory, temporal_client: Client, store: Store, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(incident_module, "LIVE_REFRESH_SECONDS", 3600.0)  # the page keeps what it first showed
    incident_id = await undiagnosed_incident(api, unique)
    first = await propose(temporal_client, incident_id, "first-action")
    context = console_context(temporal_client, store)

    async with user_simulation(root=page_root(context, RESPONDER)) as user:
        await user.open(f"/incidents/{incident_id}")
        await user.should_see(f"Awaiting approval: first-action (proposal {first.proposal_id})", retries=100)
        # Elsewhere (Slack, the API): the first proposal is rejected and a second one proposed.
        await run_update(
            temporal_client,
            incident_id,
            "approval",
            ApprovalRequest(decision=Decision.REJECT, by="bob", reason="no", proposal_id=first.proposal_id),
            ApprovalOutcome,
        )
        second = await propose(temporal_client, incident_id, "second-action")
        by_marker(user, "approve").click()  # the stale page approves what it shows: the first proposal
        await user.should_see(
            f"Approve first-action refused by the incident: proposal {first.proposal_id} was already decided; "
            f"'second-action' (proposal {second.proposal_id}) awaits approval now",
            retries=100,
        )
        # The refusal reloaded the page: it shows the proposal awaiting approval now.
        await user.should_see(f"Awaiting approval: second-action (proposal {second.proposal_id})", retries=100)

    state = await live_state(temporal_client, incident_id)
    assert state is not None
    assert state.pending_approval is not None
    assert state.pending_approval.proposal_id == second.proposal_id
    assert not any(e.kind is TimelineKind.APPROVED for e in state.timeline)


@pytest.mark.usefixtures("nicegui_storage", "workers")
async def test_a_viewer_sees_the_proposal_but_no_action(
    api: ApiFactory, temporal_client: Client, store: Store, unique: str
) -> None:
    incident_id = await undiagnosed_incident(api, unique)
    await propose(temporal_client, incident_id, "viewer-sees-this")
    context = console_context(temporal_client, store)

    async with user_simulation(root=page_root(context, VIEWER)) as user:
        await user.open(f"/incidents/{incident_id}")
        await user.should_see("Awaiting approval: viewer-sees-this", retries=100)
        await user.should_see("Signed in as a viewer")
        for marker in ("approve", "reject", "ack", "propose", "resolve", "ack-submit", "reject-submit"):
            await user.should_not_see(marker=marker)
        assert not [
            b for b in user.find(ui.button).elements if b.text in ("Approve", "Reject", "Acknowledge", "Resolve")
        ]


SCRIPT = "<script>alert(1)</script>"
HTML_LINE = f'GET /api/cart failed: {SCRIPT} <a href="http://evil.example/login">sign in again</a>'


async def diagnosed_incident(api: ApiFactory, unique: str) -> tuple[str, IncidentState]:
    """A database outage in the stored logs, diagnosed by the session's ml worker."""
    client = api(quiet_period_seconds=3600)
    service = f"svc-{unique.lower()}"
    start = datetime.now(UTC) - timedelta(minutes=12)
    html_lines = [
        {
            "ts": (start + timedelta(seconds=15 * i)).isoformat(),
            "service": service,
            "level": "error",
            "message": HTML_LINE,
        }
        for i in range(20, 30)
    ]
    pushed = await client.post("/api/v1/logs", json=outage_logs(service, start=start) + html_lines)
    assert pushed.status_code == 202, pushed.text
    incident_id = await open_incident(client, [am_alert(unique, service=service, instance="i1")])
    diagnosed = await eventually(
        lambda: detail(client, incident_id),
        lambda d: d.state is not None and d.state.diagnosis is not None,
        timeout=90,
    )
    assert diagnosed.state is not None
    return incident_id, diagnosed.state


@pytest.mark.usefixtures("nicegui_storage", "workers")
async def test_diagnosed_page_stays_live_groups_logs_and_takes_feedback(
    api: ApiFactory, temporal_client: Client, store: Store, unique: str
) -> None:
    incident_id, state = await diagnosed_incident(api, unique)
    assert state.diagnosis is not None
    context = console_context(temporal_client, store)

    async with user_simulation(root=page_root(context, RESPONDER)) as user:
        await user.open(f"/incidents/{incident_id}")
        await user.should_see(state.diagnosis.root_cause.summary, retries=100)
        # No Prometheus in the test settings: a clear note instead of charts.
        await user.should_see("No Prometheus configured", retries=100)
        # Log lines grouped by template, with counts and samples, linked to their evidence items.
        await user.should_see("GET /api/products failed", retries=100)
        groups = [e for e in user.find(ui.column).elements if e.props.get("data-testid") == "log-group"]
        assert groups
        template_ids = {item.id for item in state.diagnosis.evidence if item.kind == "log-template"}
        linked = {link.text for link in user.find(ui.link).elements if link.text in template_ids}
        assert linked, "no log group links to its evidence item"
        # Every in-page link lands on an element of the page: chips, log groups, charts.
        ids = {element.props["id"] for element in user.find(ui.element).elements if "id" in element.props}
        in_page = {link.props["href"][1:] for link in user.find(ui.link).elements if link.props["href"].startswith("#")}
        assert in_page
        assert in_page <= ids, in_page - ids
        assert {evidence_anchor(item.id) for item in state.diagnosis.evidence} <= ids

        # Log text with HTML is shown as text, in plain labels; nothing on the page renders HTML or markdown.
        await user.should_see(SCRIPT, retries=50)
        shown = user.find(content=SCRIPT).elements
        assert shown
        assert all(type(element) is ui.label for element in shown)
        await user.should_not_see(ui.html)
        await user.should_not_see(ui.markdown)
        assert not [link for link in user.find(ui.link).elements if "evil.example" in link.props["href"]]

        # Live after the diagnosis: an event from elsewhere shows without a reload.
        await run_update(
            temporal_client, incident_id, "acknowledge", AcknowledgeRequest(by="grace", note="on it"), IncidentState
        )
        await user.should_see("grace acknowledged: on it", retries=100)

        # Feedback: wrong, with the right category and component; stored and listed.
        (verdict,) = user.find(kind=ui.radio, marker="feedback-verdict").elements
        verdict.value = FeedbackVerdict.WRONG
        await user.should_see(marker="feedback-category")  # the correction shows for a wrong verdict only
        (category,) = user.find(kind=ui.select, marker="feedback-category").elements
        category.value = Category.NETWORK
        by_marker(user, "feedback-component").type("service-mesh")
        by_marker(user, "feedback-submit").click()
        await user.should_see("Feedback stored", retries=100)
        await user.should_see("Feedback given (1)", retries=100)

    stored = await store.feedback(state.incident_id)
    assert [(f.verdict, f.category, f.component, f.actor) for f in stored] == [
        (FeedbackVerdict.WRONG, Category.NETWORK, "service-mesh", RESPONDER.name)
    ]
    assert "right: network / service-mesh" in feedback_line(stored[0])


@pytest.mark.usefixtures("nicegui_storage")
async def test_unknown_incident_says_so(temporal_client: Client, store: Store, unique: str) -> None:
    context = console_context(temporal_client, store)
    async with user_simulation(root=page_root(context, RESPONDER)) as user:
        await user.open(f"/incidents/incident-nobody-knows-{unique}")
        await user.should_see(unknown_message(f"incident-nobody-knows-{unique}"), retries=50)
        await user.should_not_see(marker="ack")


def test_timeline_key_changes_with_a_new_event() -> None:
    from vigil.models import TimelineEvent

    events = [TimelineEvent(seq=1, at=T0, kind=TimelineKind.OPENED, message="opened")]
    before = timeline_key(events)
    events.append(TimelineEvent(seq=2, at=T0, kind=TimelineKind.ACKNOWLEDGED, message="ada acknowledged"))
    assert before == (1, 1)
    assert timeline_key(events) == (2, 2)
    assert timeline_key([]) == (0, 0)


# --- metric charts from a real Prometheus ------------------------------------------------------------------


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    """A real Prometheus (the Debian package scripts/setup.sh installs) scraping itself every second."""
    binary = shutil.which("prometheus")
    assert binary is not None, "prometheus is not installed (scripts/setup.sh installs it)"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs: [{{job_name: self, static_configs: [{{targets: ['127.0.0.1:{port}']}}]}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.mark.usefixtures("nicegui_storage", "workers")
async def test_charts_plot_the_alert_rule_series_with_onset_and_deploys(
    api: ApiFactory, temporal_client: Client, store: Store, unique: str, prometheus: str
) -> None:
    async def up_points() -> int:
        try:
            series = await query_range(
                prometheus, "up", datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC), name="up"
            )
        except httpx.HTTPError:
            return 0
        return len(series[0].points) if series else 0

    await eventually(up_points, lambda n: n >= 20, timeout=90)  # 20 s of data: several points at the page's step
    service = f"svc-{unique.lower()}"
    alert = am_alert(unique, service=service, instance="i1")
    alert["generatorURL"] = f"{prometheus}/graph?g0.expr={quote('up == 1')}&g0.tab=1"
    client = api(debounce_seconds=3600)
    incident_id = await open_incident(client, [alert])
    deployed_at = datetime.now(UTC) - timedelta(minutes=3)
    stored, _ = await store.insert_deploy(
        DeployEvent(service=service, version=f"v-{unique}", ts=deployed_at), received_at=datetime.now(UTC)
    )
    context = console_context(temporal_client, store)
    context.settings = context.settings.model_copy(update={"prometheus_url": prometheus})

    async with user_simulation(root=page_root(context, RESPONDER)) as user:
        await user.open(f"/incidents/{incident_id}")
        await user.should_see(marker="metric-chart", retries=150)
        (chart,) = user.find(marker="metric-chart").elements
        assert isinstance(chart, ui.echart)
        (line,) = chart.options["series"]
        assert line["name"] == 'up{instance="' + prometheus.removeprefix("http://") + '",job="self"}'
        assert len(line["data"]) >= 3
        assert all(value == 1.0 for _, value in line["data"])
        marks = {mark["name"]: mark["xAxis"] for mark in line["markLine"]["data"]}
        state = await live_state(temporal_client, incident_id)
        assert state is not None
        assert marks["onset"] == int(incident_onset(state).timestamp() * 1000)
        assert marks[f"deploy {service} v-{unique}"] == int(stored.ts.timestamp() * 1000)
        await user.should_see(f"deploy {service} v-{unique} at ")
        anchors = {element.props.get("id") for element in user.find(ui.element).elements}
        assert chart_anchor(series_evidence_id(MetricSeries(name="up", labels=_labels(line["name"])))) in anchors


def _labels(name: str) -> dict[str, str]:
    """`up{a="b",c="d"}` -> {"a": "b", "c": "d"}."""
    inner = name[name.index("{") + 1 : -1]
    return dict((part.split("=", 1)[0], part.split("=", 1)[1].strip('"')) for part in inner.split(","))
