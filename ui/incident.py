"""The incident page of the console, `/incidents/{incident_id}`: status, the diagnosis with every citation a link to
its evidence item on the same page, what the verifier dropped, runbook passages, similar incidents and the timeline.

Everything shown comes from Temporal (the workflow's description and its `state` query), as the list does. Text
from logs, alerts, documents and the model is untrusted: it is only ever rendered as plain text (labels), never as
HTML or markdown, and never put into an element property that the browser would evaluate.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from ui.console import (
    MISSING,
    QUERY_TIMEOUT_SECONDS,
    REFRESH_SECONDS,
    TEMPORAL_ERRORS,
    IncidentSource,
    IncidentView,
    api_incident_url,
    console_incident_path,
    format_utc,
    label,
    temporal_reason,
    temporal_workflow_url,
)
from vigil.models import IncidentState
from vigil.rca.models import RootCauseAnalysis
from vigil.settings import Settings

TIMELINE_LIMIT = 50
CONFIDENCE_NOTE = (
    "computed by Vigil from the evidence and the agreement of the analysers (classifier, detectors, verifier), "
    "not the model's own estimate"
)
CSS = """
.vigil-evidence { scroll-margin-top: 1rem; border-radius: 4px; padding: 4px 8px; }
.vigil-evidence:target { outline: 3px solid #f59e0b; background: #fffbeb; }
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
    return f"Cannot read the incident from Temporal at {target}: {reason}. Retrying every {REFRESH_SECONDS:g} s."


def pending_message() -> str:
    return f"Diagnosis pending: the ml worker has not written it yet. Checking again every {REFRESH_SECONDS:g} s."


def no_worker_message(reason: str | None) -> str:
    return (
        f"No worker answered the incident's state query ({reason or f'no answer within {QUERY_TIMEOUT_SECONDS:g} s'})"
        ": the diagnosis and the timeline need a running incidents worker. Shown is what Temporal visibility "
        f"knows. Checking again every {REFRESH_SECONDS:g} s."
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


def is_final(view: IncidentView | None) -> bool:
    """Whether the page shows all there is to show: a diagnosis (later changes need a reload, so that a refresh
    never moves the evidence a reader has jumped to) or no such incident."""
    if view is None:
        return False
    return view.summary is None or (view.state is not None and view.state.diagnosis is not None)


# --- page --------------------------------------------------------------------------------------------------


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


def _diagnosis(rca: RootCauseAnalysis) -> None:
    from nicegui import ui

    known = {item.id for item in rca.evidence}
    _heading("Diagnosis")
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
                    ui.label(f"runbook: {action.runbook}").classes("text-caption text-grey-7")

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
    for item in rca.evidence:
        with ui.column().classes("vigil-evidence w-full gap-1") as block:
            block.props["id"] = evidence_anchor(item.id)  # set directly: never parsed as a props string
            with ui.row().classes("items-baseline gap-2"):
                ui.label(item.id).classes("vigil-chip")
                ui.label(item.kind).classes("text-caption text-grey-7")
                ui.label(item.title).classes("text-weight-medium")
            if item.detail:
                _text(item.detail)

    if rca.runbooks:
        _heading("Runbook passages")
        for hit in rca.runbooks:
            ui.label(f"{hit.title} (score {hit.score:.2f})").classes("text-weight-medium")
            ui.label(hit.source).classes("text-caption text-grey-7")
            _text(hit.text)

    if rca.similar_incidents:
        _heading("Similar incidents")
        for hit in rca.similar_incidents:
            with ui.row().classes("items-baseline gap-2"):
                ui.link(hit.title, console_incident_path(hit.source)).classes("text-weight-medium")
                ui.label(f"{hit.source} · score {hit.score:.2f}").classes("text-caption text-grey-7")
            _text(hit.text)


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


def _integrations(state: IncidentState) -> None:
    from nicegui import ui

    links = integration_links(state)
    if not links:
        return
    with ui.row().classes("items-baseline gap-x-6"):
        for text, url in links:
            if url:
                ui.link(text, url, new_tab=True)
            else:
                ui.label(text)


def label_where(where: str) -> str:
    return {"root_cause": "Root cause", "claim": "Claim", "action": "Action"}.get(where, where)


def _timeline(state: IncidentState) -> None:
    from nicegui import ui

    events = state.timeline[-TIMELINE_LIMIT:][::-1]
    _heading(f"Timeline (newest first, {len(events)} of {len(state.timeline)})")
    for event in events:
        with ui.row().classes("items-baseline gap-2 no-wrap"):
            ui.label(format_utc(event.at)).classes("text-caption text-grey-7 font-mono")
            ui.label(label(event.kind)).classes("text-caption text-weight-bold")
            ui.label(event.actor).classes("text-caption text-grey-7")
            ui.label(event.message)


def render(settings: Settings, incident_id: str, view: IncidentView) -> None:
    from nicegui import ui

    summary, state = view.summary, view.state
    if summary is None:
        ui.label(unknown_message(incident_id)).classes("text-h6 text-negative")
        return
    ui.label(state.title if state is not None else summary.title or incident_id).classes("text-h5")
    with ui.row().classes("items-baseline gap-x-6"):
        ui.label(incident_id).classes("text-caption font-mono")
        web_ui = temporal_workflow_url(settings, summary)
        if web_ui is not None:
            ui.link("Temporal Web UI", web_ui, new_tab=True)
        ui.link("API", api_incident_url(settings, incident_id), new_tab=True)
    with ui.row().classes("items-baseline gap-x-6"):
        for name, value in facts(view).items():
            ui.label(f"{name}: {value}")
    if state is None:
        ui.label(no_worker_message(view.query_error)).classes("text-warning q-mt-md")
        return
    _integrations(state)
    if state.diagnosis is None:
        ui.label(pending_message()).classes("text-subtitle1 q-mt-md")
    else:
        _diagnosis(state.diagnosis)
    _timeline(state)


async def incident_page(settings: Settings, source: IncidentSource, incident_id: str) -> None:
    """Build `/incidents/{incident_id}`. Until the diagnosis is there it checks again every REFRESH_SECONDS."""
    from nicegui import ui

    ui.page_title(f"Vigil — {incident_id}")
    with ui.row().classes("items-center"):
        ui.link("← All incidents", "/")
        reload = ui.button("Reload").props("flat dense no-caps")
    body = ui.column().classes("w-full gap-1")
    with body:
        ui.label("Loading the incident from Temporal…").classes("text-grey-7")
    shown: IncidentView | None = None

    async def load() -> None:
        nonlocal shown
        if is_final(shown):
            return
        try:
            view = await source.incident(incident_id)
        except TEMPORAL_ERRORS as error:
            body.clear()
            with body:
                ui.label(unreachable_message(source.target, error)).classes("text-negative")
            return
        shown = view
        body.clear()
        with body:
            render(settings, incident_id, view)

    async def reload_now() -> None:
        nonlocal shown
        shown = None
        await load()

    reload.on_click(reload_now)
    timer = ui.timer(REFRESH_SECONDS, load, active=False)
    await load()
    timer.activate()
