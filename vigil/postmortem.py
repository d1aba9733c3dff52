"""The postmortem draft of an incident, in Markdown, from its detail (state and/or stored record, timeline,
diagnosis) and its MTTx figures.

Alert text, log-derived evidence and timeline messages are untrusted: every piece of it goes through `md_text`,
so nothing in it renders as Markdown or HTML (no link, image, code span, heading or tag). The draft is
deterministic: the same detail gives the same text, with no clock read, so it can be stored and compared.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from vigil.models import AlertRecord, IncidentDetail, IncidentRow, IncidentState, TimelineEvent, TimelineKind
from vigil.mttx import IncidentTimings, incident_alerts, mttx
from vigil.rca.models import RootCauseAnalysis

ERROR_BUDGET_KEYS = ("error_budget_burned", "budget_burned")
"""Label or annotation names under which an SLO alert may carry the error budget it burned."""
TARGETS: dict[str, float] = {"detect": 300, "acknowledge": 900, "diagnose": 300, "mitigate": 1800, "resolve": 3600}
"""Seconds: a figure within its target went well, one over it went badly."""
ACTION_KINDS = frozenset(
    {
        TimelineKind.REMEDIATION_PROPOSED,
        TimelineKind.APPROVED,
        TimelineKind.REJECTED,
        TimelineKind.REFUSED,
        TimelineKind.REMEDIATION_RUN,
        TimelineKind.VERIFIED,
        TimelineKind.NOT_RECOVERED,
        TimelineKind.ESCALATED,
        TimelineKind.RESOLVED,
    }
)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def md_text(text: str) -> str:
    """Untrusted text as inert Markdown on one line: HTML escaped (so `<script>` is text, and so are entities),
    then every Markdown punctuation character backslash-escaped (no link, emphasis, code span or table cell)."""
    flat = _CONTROL.sub(" ", text).strip()
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(flat, quote=False))


def utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """`1d 2h`, `1h 02m`, `3m 05s`, `42s`: two units at most."""
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _known(detail: IncidentDetail) -> IncidentState | IncidentRow:
    known = detail.state or detail.record
    if known is None:
        raise ValueError(f"incident {detail.incident_id} has neither state nor record")
    return known


def _services(known: IncidentState | IncidentRow, alerts: Sequence[AlertRecord]) -> list[str]:
    found = {alert.labels.get("service") or alert.labels.get("job") or "" for alert in alerts}
    if known.service:
        found.add(known.service)
    return sorted(found - {""})


def _summary(detail: IncidentDetail, alerts: Sequence[AlertRecord], timings: IncidentTimings) -> list[str]:
    known = _known(detail)
    services = ", ".join(md_text(service) for service in _services(known, alerts)) or "no service named"
    started = timings.impact_started_at or timings.opened_at
    if timings.resolved_at is not None and timings.time_to_resolve_seconds is not None:
        ending = f"resolved {utc(timings.resolved_at)}, after {duration(timings.time_to_resolve_seconds)}"
    else:
        ending = f"not resolved when this draft was written (status: {known.status.value})"
    return [
        f"- **What:** {md_text(known.title)} (severity {known.severity.value}).",
        f"- **Where:** {services}.",
        f"- **When:** started {utc(started)}, incident opened {utc(timings.opened_at)}, {ending}.",
    ]


def _error_budget(alerts: Sequence[AlertRecord]) -> str:
    """What an SLO alert of the incident says it burned; never a figure of our own making."""
    for alert in alerts:
        for key in ERROR_BUDGET_KEYS:
            value = alert.annotations.get(key) or alert.labels.get(key)
            if value:
                return f"{md_text(value)} (reported by alert {md_text(_alert_name(alert))})"
    slos = sorted({alert.labels["slo"] for alert in alerts if alert.labels.get("slo")})
    if slos:
        return f"not measured (SLO alerts fired for {md_text(', '.join(slos))} but carry no burned-budget figure)"
    return "not measured"


def _alert_name(alert: AlertRecord) -> str:
    return alert.labels.get("alertname") or alert.fingerprint


def _impact(detail: IncidentDetail, alerts: Sequence[AlertRecord], timings: IncidentTimings) -> list[str]:
    known = _known(detail)
    lasted = duration(timings.time_to_resolve_seconds) if timings.time_to_resolve_seconds is not None else "ongoing"
    lines = [
        f"- Duration: {lasted}",
        f"- Severity: {known.severity.value}",
        f"- Services: {', '.join(md_text(s) for s in _services(known, alerts)) or 'none named'}",
        f"- Error budget burned: {_error_budget(alerts)}",
    ]
    if alerts:
        episodes = sum(alert.count for alert in alerts)
        repeats = sum(alert.repeats for alert in alerts)
        lines.append(f"- Alerts: {len(alerts)} fired, {episodes} firing episode(s), {repeats} repeat(s)")
        ordered = sorted(alerts, key=lambda alert: (alert.starts_at, alert.fingerprint))
        lines += [
            f"  - {md_text(_alert_name(alert))} ({alert.severity.value}, {alert.status.value}): "
            f"{md_text(alert.summary)}; fired {alert.count}x, repeated {alert.repeats}x, since {utc(alert.starts_at)}"
            for alert in ordered
        ]
    elif detail.record is not None:
        lines.append(
            f"- Alerts: {detail.record.fingerprint_count} fired, {detail.record.alert_count} firing episode(s)"
        )
    else:
        lines.append("- Alerts: none recorded")
    if detail.state is not None and detail.state.overflow_alerts:
        lines.append(f"- Alerts counted but not kept (over the per-incident cap): {detail.state.overflow_alerts}")
    return lines


def _timeline(events: Sequence[TimelineEvent]) -> list[str]:
    if not events:
        return ["No timeline events were recorded."]
    lines = ["| time (UTC) | actor | event | what |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {utc(event.at)} | {md_text(event.actor)} | {event.kind.value} | {md_text(event.message)} |"
        for event in events
    ]
    return lines


def _root_cause(detail: IncidentDetail) -> list[str]:
    rca = detail.diagnosis
    if rca is None:
        pending = detail.state is not None and detail.state.diagnosis_pending
        return [
            "No diagnosis was made for this incident"
            + (" (one was still running when this draft was written)" if pending else "")
            + ": the root cause is not established."
        ]
    titles = {item.id: item.title for item in rca.evidence}
    lines = [
        f"{md_text(rca.root_cause.summary)}",
        "",
        f"- Component: {md_text(rca.root_cause.component)}",
        f"- Category: {rca.category.value}, confidence {rca.confidence:.0%} ({rca.source} diagnosis)",
        "- Evidence:" if rca.root_cause.evidence else "- Evidence: none cited",
    ]
    lines += [
        f"  - {md_text(evidence_id)}" + (f": {md_text(titles[evidence_id])}" if evidence_id in titles else "")
        for evidence_id in rca.root_cause.evidence
    ]
    if rca.claims:
        lines.append("- Supporting claims:")
        lines += [
            f"  - {md_text(claim.statement)} (evidence: {md_text(', '.join(claim.evidence))})" for claim in rca.claims
        ]
    return lines


def _actions(events: Sequence[TimelineEvent]) -> list[str]:
    """Proposals with what became of them, decisions, refused attempts, actions run with their verified outcome,
    escalations and the resolution."""
    taken = [event for event in events if event.kind in ACTION_KINDS]
    if not taken:
        return ["No action was proposed, decided or refused."]
    lines = []
    for index, event in enumerate(taken):
        outcome = ""
        if event.kind is TimelineKind.REMEDIATION_PROPOSED:
            decided = next(
                (e for e in taken[index + 1 :] if e.kind in (TimelineKind.APPROVED, TimelineKind.REJECTED)), None
            )
            outcome = f" → {decided.kind.value} by {md_text(decided.actor)}" if decided else " → not decided"
        lines.append(
            f"- {utc(event.at)} {event.kind.value} ({md_text(event.actor)}): {md_text(event.message)}{outcome}"
        )
    return lines


def _assessment(timings: IncidentTimings, diagnosed: bool) -> tuple[list[str], list[str]]:
    """What went well and badly: each MTTx figure against its target in TARGETS."""
    well: list[str] = []
    badly: list[str] = []
    for stage, target in TARGETS.items():
        value: float | None = getattr(timings, f"time_to_{stage}_seconds")
        if value is None:
            continue
        line = f"- Time to {stage}: {duration(value)} (target: under {duration(target)})"
        (well if value <= target else badly).append(line)
    if not diagnosed:
        badly.append("- No diagnosis was made.")
    return well or ["- Nothing measured within its target."], badly or ["- Nothing measured over its target."]


def _follow_ups(rca: RootCauseAnalysis | None, events: Sequence[TimelineEvent]) -> list[str]:
    """The diagnosis's recommended actions that no proposal carried out (compared case-insensitively)."""
    if rca is None:
        return ["- [ ] Establish the root cause: no diagnosis was made."]
    taken = {
        str(event.data.get("action", "")).strip().casefold() for event in events if event.kind is TimelineKind.APPROVED
    }
    lines = []
    for action in rca.recommended_actions:
        names = {action.action.strip().casefold(), (action.catalogue_action or "").casefold()}
        if names & taken:
            continue
        refs = ", ".join(action.evidence)
        runbook = f"; runbook: {md_text(action.runbook)}" if action.runbook else ""
        lines.append(f"- [ ] {md_text(action.action)} (evidence: {md_text(refs)}{runbook})")
    return lines or ["- None: every recommended action was taken."]


def postmortem_markdown(detail: IncidentDetail, alerts: Sequence[AlertRecord] | None = None) -> str:
    """The draft: title, summary, impact, timeline, root cause, actions taken, what went well / badly, follow-ups.
    `alerts`: the store's, when the detail has no live state (no worker answered)."""
    known = _known(detail)
    records = incident_alerts(detail, alerts)
    timings = mttx(detail, records)
    events = sorted(detail.timeline, key=lambda event: (event.at, event.seq))
    well, badly = _assessment(timings, detail.diagnosis is not None)
    sections = [
        [
            f"# Postmortem: {md_text(known.title)}",
            "",
            f"Draft written by Vigil for incident {md_text(detail.incident_id)}.",
        ],
        ["## Summary", "", *_summary(detail, records, timings)],
        ["## Impact", "", *_impact(detail, records, timings)],
        ["## Timeline", "", *_timeline(events)],
        ["## Root cause", "", *_root_cause(detail)],
        ["## Actions taken", "", *_actions(events)],
        ["## What went well", "", *well],
        ["## What went badly", "", *badly],
        ["## Follow-ups", "", *_follow_ups(detail.diagnosis, events)],
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"
