"""The incident page of the console, `/incidents/{incident_id}`: live status, actions, the pending proposal, and
tabs for the diagnosis (with metric charts, log templates and feedback), the timeline, the alerts and, once the
incident is resolved, the postmortem draft.

Everything live comes from Temporal (the workflow's description and its `state` query), as the list does; the
log lines, deploys, feedback and the stored timeline come from the store; metric series from Prometheus. The page
reads the state every LIVE_REFRESH_SECONDS for as long as it is open, and rebuilds only the sections whose data
changed (each keeps a key of what it shows), so a refresh keeps the reader's place, an open dialog and what was
typed into a form.

Text from logs, alerts, documents and the model is untrusted: it is only ever rendered as plain text (labels,
table cells), never as HTML or markdown, and never put into an element property that the browser would evaluate.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from ui.actions import FINAL, IncidentActions
from ui.charts import Marker, chart_window, incident_onset, metric_chart_options, series_evidence_id
from ui.console import (
    MISSING,
    QUERY_TIMEOUT_SECONDS,
    TEMPORAL_ERRORS,
    IncidentView,
    api_incident_url,
    console_incident_path,
    format_utc,
    label,
    temporal_reason,
    temporal_workflow_url,
)
from ui.log_groups import MAX_LINES, LogGroup, group_logs, log_services, log_window
from vigil.analysis.bundle import MetricSeries
from vigil.models import IncidentDetail, IncidentState, LogRecord, TimelineEvent
from vigil.postmortem import postmortem_markdown
from vigil.prometheus import alert_expressions, query_range
from vigil.rca.models import RootCauseAnalysis
from vigil.remediation.catalogue import load_configured_catalogue
from vigil.remediation.errors import RemediationConfigError
from vigil.store.database import STORE_UNAVAILABLE

if TYPE_CHECKING:
    from ui.context import ConsoleContext
    from ui.session import SignedInUser

log = logging.getLogger(__name__)

LIVE_REFRESH_SECONDS = 2.0
"""How often an open page reads the incident's state again."""
CHART_REFRESH_SECONDS = 30.0
"""How often the metric charts and deploys are read again while the incident is not resolved."""
PROMETHEUS_TIMEOUT_SECONDS = 5.0
TIMELINE_LIMIT = 50
CONFIDENCE_NOTE = (
    "computed by Vigil from the evidence and the agreement of the analysers (classifier, detectors, verifier), "
    "not the model's own estimate"
)
CSS = """
.vigil-evidence { scroll-margin-top: 1rem; border-radius: 4px; padding: 4px 8px; }
.vigil-evidence:target { outline: 3px solid #f59e0b; background: #fffbeb; }
.vigil-anchor { scroll-margin-top: 1rem; }
.vigil-anchor:target { outline: 3px solid #f59e0b; }
.vigil-chip { display: inline-block; border-radius: 9999px; padding: 0 8px; margin: 1px 2px;
  background: #e0e7ff; color: #1e3a8a; font-family: monospace; font-size: 0.75rem; text-decoration: none; }
.vigil-chip-unknown { background: #fee2e2; color: #7f1d1d; }
.vigil-text { white-space: pre-wrap; word-break: break-word; font-family: monospace; font-size: 0.8rem;
  background: #f5f5f5; padding: 4px 8px; border-radius: 4px; }
"""
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


# --- pure functions ----------------------------------------------------------------------------------------


def evidence_anchor(evidence_id: str) -> str:
    """An HTML id for an evidence item: only [A-Za-z0-9_-], readable, and distinct for distinct evidence ids
    (a hash of the id follows the readable part, as `a:b` and `a,b` read the same once sanitised)."""
    readable = _UNSAFE.sub("-", evidence_id).strip("-")[:60]
    digest = hashlib.sha256(evidence_id.encode()).hexdigest()[:8]
    return f"ev-{readable}-{digest}" if readable else f"ev-{digest}"


def chart_anchor(evidence_id: str) -> str:
    """The HTML id of the chart that plots a metric evidence item's series."""
    return "chart-" + evidence_anchor(evidence_id)


def logs_anchor(evidence_id: str) -> str:
    """The HTML id of the log group of a `log:tpl-…` evidence item."""
    return "logs-" + evidence_anchor(evidence_id)


def knowledge_url(path: str) -> str:
    """The console's knowledge page showing one runbook document."""
    return f"/knowledge?doc={quote(path, safe='')}"


def percent(share: float) -> str:
    return f"{round(share * 100)}%"


def source_text(rca: RootCauseAnalysis) -> str:
    if rca.source == "llm":
        return f"LLM ({rca.model})" if rca.model else "LLM"
    return "deterministic (ranked from the evidence, no LLM)"


def unknown_message(incident_id: str) -> str:
    return f"No incident {incident_id}: Temporal has no incident workflow with this id."


def unreachable_message(target: str, error: BaseException) -> str:
    reason = temporal_reason(error)
    return f"Cannot read the incident from Temporal at {target}: {reason}. Retrying every {LIVE_REFRESH_SECONDS:g} s."


def pending_message() -> str:
    return "Diagnosis pending: the ml worker has not written it yet. This page updates by itself."


def no_worker_message(reason: str | None) -> str:
    return (
        f"No worker answered the incident's state query ({reason or f'no answer within {QUERY_TIMEOUT_SECONDS:g} s'})"
        ": the diagnosis and the timeline need a running incidents worker. Shown is what Temporal visibility "
        f"knows. Checking again every {LIVE_REFRESH_SECONDS:g} s."
    )


def facts(view: IncidentView) -> dict[str, str]:
    """Status, severity, service and category: live from the state when a worker answered, else from visibility."""
    state, summary = view.state, view.summary
    if state is not None:
        return {
            "Status": label(state.status),
            "Severity": label(state.severity),
            "Service": state.service or MISSING,
            "Category": state.category or MISSING,
            "Opened (UTC)": format_utc(state.opened_at),
        }
    assert summary is not None
    return {
        "Status": label(summary.status) if summary.status else MISSING,
        "Severity": label(summary.severity) if summary.severity else MISSING,
        "Service": summary.service or MISSING,
        "Category": summary.category or MISSING,
        "Opened (UTC)": format_utc(summary.started_at),
    }


def timeline_key(events: list[TimelineEvent]) -> tuple[int, int]:
    """What a timeline shows changes when an event is added: its length and its last sequence number."""
    return len(events), events[-1].seq if events else 0


def fingerprint(*parts: object) -> str:
    """A short key of what a section shows (pydantic models by their JSON)."""
    digest = hashlib.sha256()
    for part in parts:
        text = part.model_dump_json() if hasattr(part, "model_dump_json") else repr(part)
        digest.update(text.encode())
    return digest.hexdigest()[:16]


def alert_rows(state: IncidentState) -> list[dict[str, str | int]]:
    """One table row per alert fingerprint: counts of firing episodes and of repeats that changed nothing."""
    rows: list[dict[str, str | int]] = []
    for record in sorted(state.alerts.values(), key=lambda r: (r.first_seen, r.fingerprint)):
        rows.append(
            {
                "fingerprint": record.fingerprint,
                "alert": record.labels.get("alertname", MISSING),
                "status": record.status.value,
                "severity": record.severity.value,
                "count": record.count,
                "repeats": record.repeats,
                "first_seen": format_utc(record.first_seen),
                "last_seen": format_utc(record.last_seen),
                "summary": record.summary,
            }
        )
    return rows


def alert_totals(state: IncidentState) -> str:
    overflow = f", {state.overflow_alerts} over the cap (counted, not kept)" if state.overflow_alerts else ""
    return (
        f"{len(state.alerts)} alert fingerprints, {state.firing_count} firing · {state.alert_occurrences} firing "
        f"episodes · {state.alert_receipts} notifications received{overflow}"
    )


ALERT_COLUMNS: list[dict[str, Any]] = [
    {"name": "alert", "label": "Alert", "field": "alert", "align": "left", "sortable": True},
    {"name": "status", "label": "Status", "field": "status", "align": "left", "sortable": True},
    {"name": "severity", "label": "Severity", "field": "severity", "align": "left"},
    {"name": "count", "label": "Firing episodes", "field": "count", "sortable": True},
    {"name": "repeats", "label": "Repeats", "field": "repeats", "sortable": True},
    {"name": "first_seen", "label": "First seen (UTC)", "field": "first_seen", "align": "left", "sortable": True},
    {"name": "last_seen", "label": "Last seen (UTC)", "field": "last_seen", "align": "left", "sortable": True},
    {"name": "summary", "label": "Summary", "field": "summary", "align": "left"},
]


def postmortem_text(state: IncidentState, timeline: list[TimelineEvent]) -> str:
    """The postmortem draft, as GET /api/v1/incidents/{id}/postmortem builds it from the live state."""
    detail = IncidentDetail(
        incident_id=state.incident_id,
        live=True,
        state=state,
        record=None,
        diagnosis=state.diagnosis,
        timeline=timeline or state.timeline,
    )
    return postmortem_markdown(detail)


# --- small page parts ----------------------------------------------------------------------------------------


def _text(text: str) -> None:
    """Untrusted text (log lines, documents, model output) as plain, pre-formatted text."""
    from nicegui import ui

    ui.label(text).classes("vigil-text w-full")


def _chips(ids: Iterable[str], known: set[str]) -> None:
    """One chip per cited id: a link to the evidence item on this page, or a red chip for an id without one."""
    from nicegui import ui

    for evidence_id in ids:
        if evidence_id in known:
            ui.link(evidence_id, f"#{evidence_anchor(evidence_id)}").classes("vigil-chip")
        else:
            ui.label(evidence_id).classes("vigil-chip vigil-chip-unknown").tooltip("not in the evidence")


def _heading(text: str) -> None:
    from nicegui import ui

    ui.label(text).classes("text-h6 q-mt-md")


def _testid(element: Any, testid: str) -> None:
    """`data-testid` for browser tests, and the same NiceGUI marker for the in-process ones."""
    element.props["data-testid"] = testid  # set directly: never parsed as a props string
    element.mark(testid)


class Section:
    """A container the live refresh rebuilds only when its key (what it shows) changed."""

    def __init__(self, testid: str | None = None) -> None:
        from nicegui import ui

        self.container = ui.column().classes("w-full gap-1")
        if testid:
            _testid(self.container, testid)
        self.key: object = None

    def show(self, key: object, build: Callable[[], object]) -> bool:
        if key == self.key:
            return False
        self.key = key
        self.container.clear()
        with self.container:
            build()
        return True


def integration_links(state: IncidentState) -> list[tuple[str, str | None]]:
    """(text, link) for who acknowledged, the Slack message, the ticket, the GitHub issue and merged PRs."""
    integrations = state.integrations
    links: list[tuple[str, str | None]] = []
    if integrations.acknowledged_by:
        links.append(
            (f"Acknowledged by {integrations.acknowledged_by} at {format_utc(integrations.acknowledged_at)}", None)
        )
    if integrations.notifier is not None:
        links.append(("Slack message", integrations.notifier.permalink))
    if integrations.ticket is not None:
        done = " (done)" if integrations.ticket.done else ""
        links.append((f"Ticket {integrations.ticket.key}{done}", integrations.ticket.url))
    if integrations.code_host is not None:
        code = integrations.code_host
        links.append((f"GitHub issue {code.repository}#{code.number}", code.url))
    links.extend((f"Merged {pr.repository}#{pr.number}: {pr.title}", pr.url) for pr in integrations.pull_requests)
    return links


def chain_text(rca: RootCauseAnalysis) -> str:
    """The path from the alerting service to the component at fault, e.g. `frontend → orders → pg-orders-1`."""
    return "Chain: " + " → ".join(hop.component for hop in rca.root_cause.chain)


def label_where(where: str) -> str:
    return {"root_cause": "Root cause", "claim": "Claim", "action": "Action", "chain": "Chain"}.get(where, where)


def _runbook_link(path: str, text: str | None = None) -> None:
    from nicegui import ui

    ui.link(text or path, knowledge_url(path)).classes("text-caption")


def _diagnosis(rca: RootCauseAnalysis) -> None:
    from nicegui import ui

    known = {item.id for item in rca.evidence}
    with ui.row().classes("items-baseline gap-x-6"):
        ui.label(f"Source: {source_text(rca)}")
        ui.label(f"Category: {label(rca.category)}")
        ui.label(f"Severity: {rca.severity}")
        ui.label(f"Code related: {'yes' if rca.code_related else 'no'}")
    with ui.row().classes("items-baseline"):
        ui.label(f"Confidence {percent(rca.confidence)}").classes("text-subtitle1 text-weight-bold")
        ui.label(CONFIDENCE_NOTE).classes("text-caption text-grey-7")
    if rca.llm_error:
        ui.label(f"LLM answer not used: {rca.llm_error}").classes("text-caption text-orange-9")

    _heading("Root cause")
    ui.label(rca.root_cause.summary).classes("text-subtitle1")
    ui.label(f"Component: {rca.root_cause.component}")
    with ui.row().classes("items-center gap-1"):
        ui.label("Evidence:").classes("text-caption")
        _chips(rca.root_cause.evidence, known)
    if rca.root_cause.chain:
        chain = ui.column().classes("gap-0 q-mt-xs")
        _testid(chain, "root-cause-chain")
        with chain:
            ui.label(chain_text(rca)).classes("text-caption text-weight-bold")
            for hop in rca.root_cause.chain:
                with ui.row().classes("items-center gap-1"):
                    ui.label(f"{hop.component}: {hop.relation}" if hop.relation else hop.component)
                    _chips(hop.evidence, known)

    if rca.claims:
        _heading("Claims")
        for claim in rca.claims:
            with ui.row().classes("items-center gap-1"):
                ui.label(claim.statement)
                _chips(claim.evidence, known)

    if rca.recommended_actions:
        _heading("Recommended actions")
        for action in rca.recommended_actions:
            with ui.row().classes("items-center gap-1"):
                if action.catalogue_action:
                    ui.badge(action.catalogue_action).classes("font-mono").tooltip(
                        "catalogue action linked from a runbook: the workflow may propose it"
                    )
                ui.label(action.action)
                _chips(action.evidence, known)
                if action.runbook:
                    _runbook_link(action.runbook, f"runbook: {action.runbook}")

    if rca.hypotheses:
        _heading("Hypotheses, ranked")
        for rank, hypothesis in enumerate(sorted(rca.hypotheses, key=lambda h: -h.score), start=1):
            with ui.row().classes("items-center gap-1"):
                ui.label(f"{rank}. {percent(hypothesis.score)}").classes("text-weight-bold")
                ui.label(f"{hypothesis.summary} ({hypothesis.component}, {label(hypothesis.category)})")
                _chips(hypothesis.evidence, known)

    _heading("Dropped by the verifier")
    if not rca.dropped:
        ui.label("Nothing: every statement cited evidence that exists.").classes("text-grey-7")
    for dropped in rca.dropped:
        with ui.column().classes("gap-0"):
            ui.label(f"{label_where(dropped.where)}: {dropped.text}")
            unknown = ", ".join(dropped.unknown_ids) if dropped.unknown_ids else "none cited"
            ui.label(f"unknown evidence ids: {unknown}").classes("text-caption text-negative")

    _heading(f"Evidence ({len(rca.evidence)})")
    runbook_sources = {f"{hit.title} ({hit.source})": hit.source for hit in rca.runbooks}
    for item in rca.evidence:
        with ui.column().classes("vigil-evidence w-full gap-1") as block:
            block.props["id"] = evidence_anchor(item.id)  # set directly: never parsed as a props string
            with ui.row().classes("items-baseline gap-2"):
                ui.label(item.id).classes("vigil-chip")
                ui.label(item.kind).classes("text-caption text-grey-7")
                ui.label(item.title).classes("text-weight-medium")
                if item.kind == "metric":
                    ui.link("chart", f"#{chart_anchor(item.id)}").classes("text-caption")
                elif item.kind == "log-template":
                    ui.link("log lines", f"#{logs_anchor(item.id)}").classes("text-caption")
                elif item.kind == "runbook" and item.title in runbook_sources:
                    _runbook_link(runbook_sources[item.title], "open runbook")
                elif item.kind == "incident" and item.id.startswith("incident:"):
                    ui.link("open incident", console_incident_path(item.id.removeprefix("incident:"))).classes(
                        "text-caption"
                    )
            if item.detail:
                _text(item.detail)

    if rca.runbooks:
        _heading("Runbook passages")
        for hit in rca.runbooks:
            ui.label(f"{hit.title} (score {hit.score:.2f})").classes("text-weight-medium")
            _runbook_link(hit.source)
            _text(hit.text)

    if rca.similar_incidents:
        _heading("Similar incidents")
        for hit in rca.similar_incidents:
            with ui.row().classes("items-baseline gap-2"):
                ui.link(hit.title, console_incident_path(hit.source)).classes("text-weight-medium")
                ui.label(f"{hit.source} · score {hit.score:.2f}").classes("text-caption text-grey-7")
            _text(hit.text)


def _timeline(state: IncidentState) -> None:
    from nicegui import ui

    events = state.timeline[-TIMELINE_LIMIT:][::-1]
    ui.label(f"Timeline (newest first, {len(events)} of {len(state.timeline)})").classes("text-h6 q-mt-md")
    for event in events:
        with ui.row().classes("items-baseline gap-2 no-wrap") as row:
            _testid(row, f"timeline-{event.seq}")
            ui.label(format_utc(event.at)).classes("text-caption text-grey-7 font-mono")
            ui.label(label(event.kind)).classes("text-caption text-weight-bold")
            ui.label(event.actor).classes("text-caption text-grey-7")
            ui.label(event.message)


def _alerts(state: IncidentState) -> None:
    from nicegui import ui

    ui.label(alert_totals(state)).classes("text-subtitle2 q-mt-sm")
    table = ui.table(columns=ALERT_COLUMNS, rows=alert_rows(state), row_key="fingerprint").classes("w-full")
    table.props("flat bordered dense")
    _testid(table, "alerts-table")


def _log_groups(groups: list[LogGroup], known: set[str], window: tuple[datetime, datetime], lines: int) -> None:
    from nicegui import ui

    ui.label(
        f"{lines} lines of {format_utc(window[0])} to {format_utc(window[1])} UTC in {len(groups)} templates "
        "(errors and warnings first)"
    ).classes("text-caption text-grey-7")
    for group in groups:
        with ui.column().classes("vigil-anchor w-full gap-1 q-mb-sm") as block:
            _testid(block, "log-group")
            ui.element("span").props["id"] = logs_anchor(group.evidence_id)
            with ui.row().classes("items-baseline gap-2"):
                ui.label(f"{group.count} lines").classes("text-weight-bold")
                if group.bad:
                    ui.label(f"{group.bad} errors/warnings").classes("text-caption text-negative")
                if group.evidence_id in known:
                    ui.link(group.evidence_id, f"#{evidence_anchor(group.evidence_id)}").classes("vigil-chip")
                else:
                    ui.label(group.evidence_id).classes("text-caption text-grey-7 font-mono")
                ui.label(f"{format_utc(group.first)} to {format_utc(group.last)}").classes("text-caption text-grey-7")
            ui.label(group.template).classes("text-weight-medium font-mono text-body2")
            for sample in group.samples:
                _text(sample)


# --- the page ------------------------------------------------------------------------------------------------


@dataclass
class _Charts:
    """What the metric section shows: one entry per alert rule expression, or why there is none."""

    charts: list[tuple[str, str, list[MetricSeries]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class IncidentPage:
    """One browser tab's incident page: its sections and the live refresh that fills them."""

    def __init__(self, context: ConsoleContext, incident_id: str, user: SignedInUser) -> None:
        self.context = context
        self.incident_id = incident_id
        self.user = user
        self.view: IncidentView | None = None
        self._lock = asyncio.Lock()
        self._chart_round = 0.0

    # --- building ---------------------------------------------------------------------------------------

    def build(self) -> None:
        from nicegui import ui

        ui.page_title(f"Vigil — {self.incident_id}")
        with ui.row().classes("items-center w-full"):
            ui.link("← All incidents", "/")
            reload = ui.button("Reload", on_click=self.reload).props("flat dense no-caps")
            _testid(reload, "reload")
            ui.space()
            self.updated = ui.label("Loading the incident from Temporal…").classes("text-caption text-grey-7")
        self.problem = ui.label("").classes("text-negative")
        self.problem.set_visibility(False)
        self.head = Section("incident-head")
        self.actions = IncidentActions(self.context, self.incident_id, self.user, self.refresh_now)
        if self.user.may_act:
            try:
                self.actions.catalogue = load_configured_catalogue(self.context.settings)
            except RemediationConfigError as exc:
                self.actions.catalogue_error = str(exc)[:300]
            self.actions.build_dialogs()
        self.bar = Section("incident-actions")
        self.pending = Section("pending-section")
        with ui.tabs().classes("w-full") as tabs:
            diagnosis_tab = ui.tab("diagnosis", "Diagnosis")
            timeline_tab = ui.tab("timeline", "Timeline")
            alerts_tab = ui.tab("alerts", "Alerts")
            self.postmortem_tab = ui.tab("postmortem", "Postmortem")
        self.postmortem_tab.set_visibility(False)
        for tab in (diagnosis_tab, timeline_tab, alerts_tab, self.postmortem_tab):
            _testid(tab, f"tab-{tab.props['name']}")
        with ui.tab_panels(tabs, value=diagnosis_tab).classes("w-full"):
            with ui.tab_panel(diagnosis_tab):
                self.diagnosis = Section("diagnosis")
                _heading("Metrics")
                self.metrics = Section("metrics")
                _heading("Log templates")
                self.logs = Section("log-groups")
                _heading("Feedback on the diagnosis")
                self.feedback = Section("feedback")
            with ui.tab_panel(timeline_tab):
                self.timeline = Section("timeline")
            with ui.tab_panel(alerts_tab):
                self.alerts = Section("alerts")
            with ui.tab_panel(self.postmortem_tab):
                self.postmortem = Section("postmortem")

    # --- refreshing -------------------------------------------------------------------------------------

    async def reload(self) -> None:
        self._chart_round = 0.0
        for section in (self.metrics, self.logs):
            section.key = None
        await self.refresh_now()

    async def refresh_now(self) -> None:
        async with self._lock:  # the timer, Reload and an action's refresh never interleave
            await self._refresh()

    async def _refresh(self) -> None:
        source = self.context.source
        try:
            view = await source.incident(self.incident_id)
        except TEMPORAL_ERRORS as error:
            self._say(unreachable_message(source.target, error))
            return
        self.view = view
        self.updated.set_text(f"updated {format_utc(datetime.now(UTC))} UTC · live")
        if view.summary is None:
            self._say(unknown_message(self.incident_id))
            return
        state = view.state
        self._say(no_worker_message(view.query_error) if state is None else None)
        self.head.show(("head", fingerprint(view.summary, state and self._head_key(state))), self._render_head)
        if state is None:
            return
        self.bar.show(("bar", state.status, state.integrations.acknowledged_by), lambda: self.actions.render_bar(state))
        pending = state.pending_approval
        self.pending.show(("pending", fingerprint(pending)), lambda: self.actions.render_pending(pending))
        self.timeline.show(("timeline", timeline_key(state.timeline)), lambda: _timeline(state))
        self.alerts.show(("alerts", fingerprint(state.alerts, state.overflow_alerts)), lambda: _alerts(state))
        diagnosis = state.diagnosis
        self.diagnosis.show(
            ("diagnosis", fingerprint(diagnosis)),
            (lambda: _diagnosis(diagnosis)) if diagnosis is not None else self._render_pending_diagnosis,
        )
        await self._refresh_metrics(state)
        await self._refresh_logs(state)
        await self._refresh_feedback(state)
        await self._refresh_postmortem(state)

    def _say(self, problem: str | None) -> None:
        self.problem.set_text(problem or "")
        self.problem.set_visibility(problem is not None)

    @staticmethod
    def _head_key(state: IncidentState) -> tuple[object, ...]:
        return (state.title, state.status, state.severity, state.service, state.category, state.integrations)

    def _render_head(self) -> None:
        from nicegui import ui

        view = self.view
        assert view is not None
        assert view.summary is not None
        summary, state = view.summary, view.state
        ui.label(state.title if state is not None else summary.title or self.incident_id).classes("text-h5")
        with ui.row().classes("items-baseline gap-x-6"):
            ui.label(self.incident_id).classes("text-caption font-mono")
            web_ui = temporal_workflow_url(self.context.settings, summary)
            if web_ui is not None:
                _testid(ui.link("Temporal Web UI", web_ui, new_tab=True), "temporal-link")
            ui.link("API", api_incident_url(self.context.settings, self.incident_id), new_tab=True)
        with ui.row().classes("items-baseline gap-x-6"):
            for name, value in facts(view).items():
                ui.label(f"{name}: {value}")
        if state is not None:
            with ui.row().classes("items-baseline gap-x-6"):
                for text, url in integration_links(state):
                    if url and url.startswith(("https://", "http://")):
                        ui.link(text, url, new_tab=True)
                    else:
                        ui.label(text)

    @staticmethod
    def _render_pending_diagnosis() -> None:
        from nicegui import ui

        ui.label(pending_message()).classes("text-subtitle1 q-mt-md")

    # --- metrics ------------------------------------------------------------------------------------------

    async def _refresh_metrics(self, state: IncidentState) -> None:
        now = datetime.now(UTC)
        final = state.status in FINAL
        due = now.timestamp() - self._chart_round >= CHART_REFRESH_SECONDS
        exprs = alert_expressions(state.alerts.values())
        key = ("metrics", tuple(exprs), state.closed_at, state.resolved_at)
        if key == self.metrics.key and (final or not due):
            return
        self._chart_round = now.timestamp()
        window = chart_window(state, now)
        charts = await self._fetch_series(exprs, window)
        deploys = await self._deploys(window, charts)
        onset = incident_onset(state)
        known = {item.id for item in state.diagnosis.evidence} if state.diagnosis else set()
        self.metrics.key = None  # new data: rebuild even when the key is the same
        self.metrics.show(key, lambda: self._render_metrics(charts, deploys, window, onset, known))

    async def _fetch_series(self, exprs: dict[str, str], window: tuple[datetime, datetime]) -> _Charts:
        found = _Charts()
        base_url = self.context.settings.prometheus_query_url
        if base_url is None:
            found.notes.append("No Prometheus configured (VIGIL_PROMETHEUS_URL, or monitoring on): no metric charts.")
            return found
        if not exprs:
            found.notes.append("The alerts carry no Prometheus rule expression (generatorURL): no metric charts.")
            return found
        for expr, name in exprs.items():
            try:
                series = await query_range(
                    base_url, expr, window[0], window[1], name=name, timeout=PROMETHEUS_TIMEOUT_SECONDS
                )
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                found.notes.append(f"Prometheus at {base_url} did not answer for {name}: {exc!s}"[:300])
                continue
            if series:
                found.charts.append((name, expr, series))
            else:
                found.notes.append(f"Prometheus has no series for {name} in this window.")
        return found

    async def _deploys(self, window: tuple[datetime, datetime], charts: _Charts) -> list[Marker]:
        store = self.context.store
        if store is None:
            charts.notes.append("The store is not reachable yet: deploys are not shown.")
            return []
        try:
            events = await store.deploys(service=None, start=window[0], end=window[1])
        except STORE_UNAVAILABLE as exc:
            charts.notes.append(f"Deploys not read from the store: {exc!s}"[:300])
            return []
        return [Marker(event.ts, f"deploy {event.service} {event.version}") for event in events]

    def _render_metrics(
        self,
        charts: _Charts,
        deploys: list[Marker],
        window: tuple[datetime, datetime],
        onset: datetime,
        known: set[str],
    ) -> None:
        from nicegui import ui

        charted = {series_evidence_id(one) for _, _, series in charts.charts for one in series}
        for evidence_id in sorted(i for i in known if i.startswith("metric:") and i not in charted):
            ui.element("span").props["id"] = chart_anchor(evidence_id)  # its link lands at the notes saying why
        for note in charts.notes:
            ui.label(note).classes("text-caption text-grey-8")
        if not charts.charts and deploys:
            options = metric_chart_options("Deploys", [], window=window, onset=onset, deploys=deploys)
            _testid(ui.echart(options).classes("w-full h-48"), "deploys-chart")
        for name, expr, series in charts.charts:
            with ui.column().classes("vigil-anchor w-full gap-0"):
                ids = [series_evidence_id(one) for one in series]
                for evidence_id in ids:  # one anchor per series, so each metric evidence item's link lands here
                    ui.element("span").props["id"] = chart_anchor(evidence_id)
                with ui.row().classes("items-baseline gap-2"):
                    ui.label(name).classes("text-weight-medium")
                    ui.label(expr).classes("text-caption font-mono text-grey-7")
                    for evidence_id in ids:
                        if evidence_id in known:
                            ui.link(evidence_id, f"#{evidence_anchor(evidence_id)}").classes("vigil-chip")
                options = metric_chart_options(name, series, window=window, onset=onset, deploys=deploys)
                _testid(ui.echart(options).classes("w-full h-64"), "metric-chart")
        if deploys:
            ui.label(
                "Deploys in the window: " + "; ".join(f"{d.label} at {format_utc(d.at)}" for d in deploys)
            ).classes("text-caption")

    # --- logs ---------------------------------------------------------------------------------------------

    async def _refresh_logs(self, state: IncidentState) -> None:
        from nicegui import ui

        store = self.context.store
        diagnosis = state.diagnosis
        key = ("logs", fingerprint(diagnosis), store is not None)
        if key == self.logs.key:
            return
        if diagnosis is None:
            self.logs.show(
                key, lambda: ui.label("Log templates show once the incident is diagnosed.").classes("text-grey-7")
            )
            return
        if store is None:
            self.logs.show(
                key, lambda: ui.label("The store is not reachable yet: no log lines.").classes("text-grey-7")
            )
            self.logs.key = None  # try again on the next refresh
            return
        window = log_window(state, datetime.now(UTC))
        services = log_services(state)
        records: list[LogRecord] = []
        try:
            for service in services:
                records += await store.logs_window(service, window[0], window[1], MAX_LINES // max(len(services), 1))
        except STORE_UNAVAILABLE as exc:
            message = f"Log lines not read from the store: {exc!s}"[:300]
            self.logs.show(key, lambda: ui.label(message).classes("text-negative"))
            self.logs.key = None
            return
        groups = await asyncio.to_thread(group_logs, records)
        known = {item.id for item in diagnosis.evidence}
        if not records:
            self.logs.show(
                key,
                lambda: ui.label(
                    f"No log lines of {', '.join(services) or 'the alerting services'} in the store for this window."
                ).classes("text-grey-7"),
            )
            return
        self.logs.show(key, lambda: _log_groups(groups, known, window, len(records)))

    # --- feedback -----------------------------------------------------------------------------------------

    async def _refresh_feedback(self, state: IncidentState) -> None:
        from ui.feedback import FeedbackPanel

        key = ("feedback", state.diagnosis is not None, self.context.store is not None)
        if key == self.feedback.key:
            return
        panel = FeedbackPanel(self.context, state.incident_id, self.user, state.diagnosis)
        self.feedback.show(key, panel.build)
        await panel.load()

    # --- postmortem ---------------------------------------------------------------------------------------

    async def _refresh_postmortem(self, state: IncidentState) -> None:
        final = state.status in FINAL
        self.postmortem_tab.set_visibility(final)
        if not final:
            return
        key = ("postmortem", state.status, timeline_key(state.timeline), fingerprint(state.diagnosis))
        if key == self.postmortem.key:
            return
        timeline: list[TimelineEvent] = []
        if self.context.store is not None:
            try:
                timeline = await self.context.store.timeline(state.incident_id)
            except STORE_UNAVAILABLE as exc:
                log.info("postmortem of %s from the live timeline: %s", state.incident_id, exc)
        text = postmortem_text(state, timeline)
        self.postmortem.show(key, lambda: self._render_postmortem(state.incident_id, text))

    @staticmethod
    def _render_postmortem(incident_id: str, text: str) -> None:
        from nicegui import ui

        with ui.row().classes("items-center gap-2"):
            ui.label("Postmortem draft (Markdown)").classes("text-h6")
            download = ui.button(
                "Download", icon="download", on_click=lambda: ui.download.content(text, f"{incident_id}-postmortem.md")
            ).props("flat no-caps")
            _testid(download, "postmortem-download")
        _text(text)


async def incident_page(context: ConsoleContext, incident_id: str, user: SignedInUser) -> None:
    """Build `/incidents/{incident_id}` for `user`, and keep it live while the tab is open."""
    from nicegui import ui

    ui.add_css(CSS)
    page = IncidentPage(context, incident_id, user)
    page.build()
    await page.refresh_now()
    ui.timer(LIVE_REFRESH_SECONDS, page.refresh_now, immediate=False)
