"""What the integration plugins say about an incident, decided once, and the small helpers they share.

The Jira ticket and the GitHub issue tell the same things in two markups: the incident's root cause (or that it
is not known yet), its facts (severity, service, component, category, when it opened), its evidence, runbooks and
links, and later the timeline events not told yet. `incident_description` and `timeline_comment` decide that
content and its order; each plugin passes its `Markup` (Jira wiki markup, GitHub Markdown), so a plugin renders
markup and nothing else. The Slack blocks share the incident's links, `clip` and the reading of times as UTC.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote

from vigil.analysis.models import ChainHop
from vigil.integrations.models import INCIDENT_LABEL_PREFIX, BriefEvent, IncidentBrief
from vigil.settings import Settings

VIGIL_LABEL = "vigil"
"""The label of every ticket and issue Vigil opens, besides the incident's own `incident_label`."""
MAX_TEXT = 1000
"""Longest evidence title or event message quoted in a ticket or issue (Jira caps a comment at 32 767 characters)."""
MAX_ROOT_CAUSE = 4000
MAX_EVIDENCE = 10
"""Evidence items, and runbooks, listed in a ticket or issue."""
MAX_EVENTS_PER_COMMENT = 50
MAX_URL = 500
MAX_POSTMORTEM = 30_000
"""Below Jira's 32,767-character comment limit (GitHub's is 65,536), with room for the wrapping."""
"""Longest runbook or link target written as a link."""
MAX_RETRY_AFTER_SECONDS = 3600.0
ROOT_CAUSE_UNKNOWN = "Not determined yet: Vigil comments here as the diagnosis goes on."

_FINISHED = frozenset({"resolved", "closed"})


def incident_label(incident_id: str) -> str:
    """The label that finds the incident's ticket or issue again: `vigil-<incident id>`."""
    return f"{INCIDENT_LABEL_PREFIX}{incident_id}"


def is_closed(brief: IncidentBrief) -> bool:
    """Closed for good: the ticket moves to done, the issue is told. (A resolved incident can still reopen.)"""
    return brief.closed_at is not None or brief.status == "closed"


def is_finished(brief: IncidentBrief) -> bool:
    """Resolved or closed: the Slack message shows the incident done and offers no buttons."""
    return brief.status in _FINISHED


@dataclass(frozen=True)
class IncidentLinks:
    """The incident in Vigil's console and, when its address is known, in the Temporal Web UI."""

    console: str
    temporal: str | None = None

    def named(self) -> list[tuple[str, str]]:
        """(name, URL) of each link, the console first."""
        links = [("Vigil console", self.console)]
        if self.temporal:
            links.append(("Temporal workflow", self.temporal))
        return links


def incident_links(
    brief: IncidentBrief, *, console_base_url: str, temporal_ui_base_url: str | None, namespace: str
) -> IncidentLinks:
    console = f"{console_base_url.rstrip('/')}/incidents/{quote(brief.incident_id, safe='')}"
    temporal = None
    if temporal_ui_base_url:
        temporal = (
            f"{temporal_ui_base_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}"
            f"/workflows/{quote(brief.workflow_id, safe='')}"
        )
    return IncidentLinks(console=console, temporal=temporal)


def links_for(settings: Settings, brief: IncidentBrief) -> IncidentLinks:
    """`incident_links` at the console, Temporal Web UI and namespace the settings name."""
    return incident_links(
        brief,
        console_base_url=settings.console_base_url,
        temporal_ui_base_url=settings.temporal_ui_base_url,
        namespace=settings.temporal_namespace,
    )


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from now, bounded; None when absent or unusable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """One line (white space folded) of at most `limit` characters, ending in "…" when cut."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def clip_block(text: str, limit: int) -> str:
    """A multi-line text (Markdown) of at most `limit` characters, its lines kept, ending in a note when cut."""
    if len(text) <= limit:
        return text
    note = "\n… (cut: the whole draft is at GET /api/v1/incidents/{id}/postmortem)"
    return text[: max(0, limit - len(note))].rsplit("\n", 1)[0] + note


def as_utc(at: datetime) -> datetime:
    """A time in UTC; a naive one is taken as UTC already (as Vigil keeps times)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def utc_stamp(at: datetime) -> str:
    """`2026-03-01 12:00:00 UTC`."""
    return as_utc(at).strftime("%Y-%m-%d %H:%M:%S UTC")


def issue_title(brief: IncidentBrief, limit: int) -> str:
    """`[high] <title> (<service or component>)`, as one line of at most `limit` characters."""
    where = brief.service or brief.component
    return clip(f"[{brief.severity.value}] {brief.title}" + (f" ({where})" if where else ""), limit)


def incident_facts(brief: IncidentBrief) -> list[tuple[str, str]]:
    """(label, value) of what is known of the incident: severity, service, component, category (with the
    diagnosis's confidence) and when it opened, in UTC. Values are raw text, to be escaped by the markup."""
    category = brief.category
    if category and brief.confidence is not None:
        category = f"{category} (confidence {brief.confidence:.0%})"
    facts = (
        ("Severity", brief.severity.value),
        ("Service", brief.service),
        ("Component", brief.component),
        ("Category", category),
        ("Opened", utc_stamp(brief.opened_at)),
    )
    return [(label, value) for label, value in facts if value]


def url_pattern(unsafe: str) -> re.Pattern[str]:
    """What a markup writes as a link: an http(s) URL of at most `MAX_URL` characters, with no white space and
    none of the `unsafe` characters (those that would end or break a link in that markup)."""
    return re.compile(rf"https?://[^\s{re.escape(unsafe)}]{{1,{MAX_URL}}}")


def untold(events: Sequence[BriefEvent], told_seq: int) -> list[BriefEvent]:
    """The events after `told_seq`, oldest first."""
    return sorted((event for event in events if event.seq > told_seq), key=lambda event: event.seq)


class Markup(Protocol):
    """How a plugin writes the shared content: Jira wiki markup, GitHub Markdown."""

    def text(self, value: str, limit: int = MAX_TEXT) -> str:
        """Untrusted text (titles, log excerpts, names) as literal markup, on one line of at most `limit`."""
        ...

    def strong(self, markup: str) -> str: ...

    def keyword(self, markup: str) -> str:
        """A short term leading a line (an event's kind)."""
        ...

    def heading(self, title: str) -> list[str]:
        """The lines of a section heading."""
        ...

    def intro(self, line: str) -> list[str]:
        """The lines of a line that introduces a list."""
        ...

    def item(self, markup: str) -> str:
        """A list item."""
        ...

    def link(self, url: str, name: str) -> str:
        """A link to a URL `is_url` accepts, shown as `name`."""
        ...

    def bare_link(self, url: str) -> str:
        """A URL `is_url` accepts, as a link showing itself."""
        ...

    def is_url(self, value: str) -> bool:
        """Whether `value` can be written as a link (see `url_pattern`)."""
        ...


def hop_text(hop: ChainHop, markup: Markup) -> str:
    """One hop of the root-cause chain: the component, why the path goes through it, and what shows it."""
    text = markup.strong(markup.text(hop.component, 200))
    if hop.relation:
        text += f": {markup.text(hop.relation, 300)}"
    if hop.evidence:
        text += f" ({markup.text(', '.join(hop.evidence[:3]), 300)})"
    return text


def link_or_text(value: str, markup: Markup) -> str:
    """A runbook: a link when it is a URL, else literal text."""
    text = clip(value, MAX_URL)
    return markup.bare_link(text) if markup.is_url(text) else markup.text(text, MAX_URL)


def incident_description(brief: IncidentBrief, links: IncidentLinks, markup: Markup) -> list[str]:
    """The lines of a new ticket's or issue's description: the incident, its root cause (or that it is not
    determined yet), its facts, evidence, runbooks and links."""
    lines = [f"Vigil incident {markup.strong(markup.text(brief.incident_id))}: {markup.text(brief.title)}", ""]
    lines += markup.heading("Root cause")
    lines.append(markup.text(brief.root_cause, MAX_ROOT_CAUSE) if brief.root_cause else ROOT_CAUSE_UNKNOWN)
    lines.append("")
    lines += [
        markup.item(f"{markup.strong(label + ':')} {markup.text(value)}") for label, value in incident_facts(brief)
    ]
    if brief.chain:
        lines += ["", *markup.heading("Root-cause chain")]
        lines += [markup.item(hop_text(hop, markup)) for hop in brief.chain]
    if brief.evidence:
        lines += ["", *markup.heading("Evidence")]
        lines += [
            markup.item(f"{markup.text(item.id, 40)} ({markup.text(item.kind, 40)}): {markup.text(item.title)}")
            for item in brief.evidence[:MAX_EVIDENCE]
        ]
    if brief.runbooks:
        lines += ["", *markup.heading("Runbooks")]
        lines += [markup.item(link_or_text(runbook, markup)) for runbook in brief.runbooks[:MAX_EVIDENCE]]
    lines += ["", *markup.heading("Links")]
    lines += [markup.item(markup.link(url, name)) for name, url in links.named()]
    return lines


def timeline_comment(events: Sequence[BriefEvent], markup: Markup) -> str:
    """A comment telling `events` (not told yet, oldest first): the latest `MAX_EVENTS_PER_COMMENT` of them, and
    how many earlier ones it leaves to the console."""
    shown = events[-MAX_EVENTS_PER_COMMENT:]
    lines = markup.intro("Incident timeline:")
    if len(events) > len(shown):
        lines.append(f"({len(events) - len(shown)} earlier events are in the Vigil console)")
    lines += [
        markup.item(
            f"{utc_stamp(event.at)} {markup.keyword(markup.text(event.kind, 60))} "
            f"({markup.text(event.actor, 100)}): {markup.text(event.message)}"
        )
        for event in shown
    ]
    return "\n".join(lines)
