"""Block Kit for the incident's Slack message and the lines of its thread: pure functions of an `IncidentBrief`.

Text that came from logs, alerts or a model (the title, evidence titles, the root cause, proposal parameters,
event messages, pull-request titles) is untrusted: it is escaped for mrkdwn (`&`, `<`, `>`), its `@channel`,
`@here` and `@everyone` are defused, and every mrkdwn text object is `verbatim` (Slack does no mention or
channel parsing of its own), so no log line can notify the channel, mention a user or make a link. Only this
module writes `<@U…>` (for `slack:` actors) and `<url|label>` (for Vigil's own console and Temporal pages,
http(s) runbook and pull-request URLs).

Slack's limits are kept by construction: at most 10 blocks (of 50), a header of 150 characters, list sections
filled line by line within 3000 characters ("…and N more"), short fields, and button values far below 2000
(an incident id is at most 200 characters there: no buttons rather than a cut, wrong id).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, StrictInt, StringConstraints, ValidationError

from vigil.analysis.models import ChainHop
from vigil.integrations.models import BriefEvent, BriefProposal, IncidentBrief, PullRequestRef
from vigil.integrations.text import IncidentLinks, as_utc, clip, is_finished
from vigil.severity import Severity

APPROVE_ACTION = "vigil_approve"
REJECT_ACTION = "vigil_reject"
ACK_ACTION = "vigil_ack"
RESOLVE_ACTION = "vigil_resolve"
ACTIONS_BLOCK_ID = "vigil_actions"
METADATA_EVENT_TYPE = "vigil_incident"
"""Metadata event type of the incident's top-level message (payload: incident_id, workflow_id)."""
THREAD_METADATA_EVENT_TYPE = "vigil_incident_events"
"""Metadata event type of a thread reply (payload: incident_id, first_seq, last_seq): what it told."""
SLACK_ACTOR_PREFIX = "slack:"

MAX_HEADER = 150
MAX_SECTION = 3000
MAX_INCIDENT_ID = 200
"""The longest incident id a button carries (so its value stays far below Slack's 2000 characters)."""
MAX_THREAD_TEXT = 12000
"""A thread reply's text (Slack cuts messages at 40,000 characters and advises 4,000; events are short)."""
MAX_SHOWN = 3
"""Evidence items and runbooks shown."""

Block = dict[str, Any]

_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,30}")
_BROADCAST = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
_WORD_JOINER = "\u2060"
_BARE_TRANSITION = re.compile(r"\w+ -> \w+")
_SEVERITY_EMOJI = {
    Severity.CRITICAL: ":red_circle:",
    Severity.HIGH: ":large_orange_circle:",
    Severity.WARNING: ":large_yellow_circle:",
    Severity.INFO: ":large_blue_circle:",
}


class ButtonValue(BaseModel):
    """What a Vigil button carries: the incident and, for approve and reject, the proposal decided."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incident_id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_INCIDENT_ID)]
    proposal_id: StrictInt | None = None


def button_value(incident_id: str, proposal_id: int | None = None) -> str:
    payload: dict[str, str | int] = {"incident_id": incident_id}
    if proposal_id is not None:
        payload["proposal_id"] = proposal_id
    return json.dumps(payload, separators=(",", ":"))


def parse_button_value(value: str) -> ButtonValue:
    """A button's `value` as sent back by Slack; ValueError when it is not one of Vigil's."""
    try:
        return ButtonValue.model_validate_json(value)
    except ValidationError as exc:
        raise ValueError(f"not a Vigil button value ({exc.error_count()} problem(s))") from None


def escape(text: str) -> str:
    """Untrusted text as inert mrkdwn: no `<!channel>`, `<@U…>` or `<url|…>` can survive it."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@" + _WORD_JOINER, escaped)


def inert(text: str, limit: int) -> str:
    """`escape(text)` in at most `limit` characters, cut before an entity rather than through it."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = limit - 1
    amp = escaped.rfind("&", max(0, cut - 4), cut)
    if amp != -1 and escaped.find(";", amp) >= cut:
        cut = amp
    return escaped[:cut] + "…"


def actor_mrkdwn(actor: str) -> str:
    """`slack:U123` as a mention of that user; anyone else (an API caller, `vigil`) as escaped text."""
    if actor.startswith(SLACK_ACTOR_PREFIX):
        user = actor.removeprefix(SLACK_ACTOR_PREFIX)
        if _SLACK_USER.fullmatch(user):
            return f"<@{user}>"
    return inert(actor, 100)


def utc(at: datetime) -> str:
    return as_utc(at).strftime("%Y-%m-%d %H:%M UTC")


def link(url: str, label: str) -> str:
    """A mrkdwn link for an http(s) URL; anything else (a runbook path) as escaped code text."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc and not any(c.isspace() for c in url):
        target = url.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "%7C")
        return f"<{target}|{inert(label, 200)}>"
    return code(url)


def code(text: str) -> str:
    return "`" + inert(text.replace("`", "'"), 300) + "`"


def fallback_text(brief: IncidentBrief) -> str:
    """The message's `text`: what notifications and screen readers show."""
    return f"[{brief.severity.value.upper()}] {inert(brief.title, 300)} ({_words(brief.status)})"


def incident_blocks(brief: IncidentBrief, links: IncidentLinks) -> list[Block]:
    blocks: list[Block] = [_header(brief), {"type": "section", "fields": _fields(brief)}]
    if brief.root_cause:
        text = f"*Root cause*\n{inert(brief.root_cause, 1500)}"
        if brief.component:
            text += f"\n*Component:* {code(brief.component)}"
        blocks.append(_section(text))
    if brief.chain:
        blocks.append(_section(_chain(brief.chain)))
    if brief.evidence:
        lines = [f"{code(item.id)} {inert(item.title, 300)}" for item in brief.evidence[:MAX_SHOWN]]
        blocks.append(_section(_bullets("*Evidence*", lines)))
    if brief.runbooks:
        lines = [link(url, _link_label(url)) for url in brief.runbooks[:MAX_SHOWN]]
        blocks.append(_section(_bullets("*Runbooks*", lines)))
    if brief.acknowledged_by or brief.decisions:
        blocks.append(_section(_responders(brief)))
    if brief.pull_requests:
        blocks.append(_section(_bullets("*Pull requests*", [_pull_request(pr) for pr in brief.pull_requests])))
    if brief.pending is not None and not is_finished(brief):
        blocks.append(_section(_pending(brief.pending)))
    buttons = _buttons(brief)
    if buttons:
        blocks.append({"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": buttons})
    blocks.append(_context(brief, links))
    return blocks


def is_bare_transition(event: BriefEvent) -> bool:
    """A `status` event that only names the new status ("triaging -> open"): the message itself shows the
    status, so the thread leaves it out. Other `status` events (a failed diagnosis, a refused write) are told."""
    return event.kind == "status" and _BARE_TRANSITION.fullmatch(event.message) is not None


def thread_text(events: Sequence[BriefEvent]) -> str:
    """One thread reply: a line per event, oldest first, within MAX_THREAD_TEXT."""
    lines = []
    for event in sorted(events, key=lambda e: e.seq):
        line = f"`{as_utc(event.at):%H:%M:%S}` *{_words(event.kind)}* {inert(event.message, 500)}"
        if event.actor != "vigil":
            line += f" — {actor_mrkdwn(event.actor)}"
        lines.append(line)
    return _within(lines, MAX_THREAD_TEXT)


def _words(value: str) -> str:
    return inert(value.replace("_", " "), 100)


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section(text: str) -> Block:
    return {"type": "section", "text": _mrkdwn(text)}


def _within(lines: Sequence[str], limit: int, separator: str = "\n") -> str:
    """Whole lines while they fit, then how many were left out: a cut never splits an escape or a link."""
    budget = limit - len(f"{separator}…and 99999 more")
    kept: list[str] = []
    size = 0
    for index, line in enumerate(lines):
        if size + len(line) > budget:
            return separator.join([*kept, f"…and {len(lines) - index} more"])
        kept.append(line)
        size += len(line) + len(separator)
    return separator.join(kept)


def _bullets(title: str, lines: Sequence[str]) -> str:
    return _within([title, *(f"• {line}" for line in lines)], MAX_SECTION)


def _chain(chain: Sequence[ChainHop]) -> str:
    """The path from the alerting service to the component, one hop a line, each with why and its evidence ids."""
    lines = []
    for n, hop in enumerate(chain):
        line = ("→ " if n else "") + code(hop.component)
        if hop.relation:
            line += f" {inert(hop.relation, 200)}"
        if hop.evidence:
            line += " (" + ", ".join(code(e) for e in hop.evidence[:2]) + ")"
        lines.append(line)
    return _within(["*Root-cause chain*", *lines], MAX_SECTION)


def _header(brief: IncidentBrief) -> Block:
    emoji = ":white_check_mark:" if is_finished(brief) else _SEVERITY_EMOJI[brief.severity]
    text = clip(f"{emoji} [{brief.severity.value.upper()}] {brief.title}", MAX_HEADER)
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def _fields(brief: IncidentBrief) -> list[Block]:
    category = "—"
    if brief.category:
        category = inert(brief.category, 200)
        if brief.confidence is not None:
            category += f" ({brief.confidence:.0%})"
    values = {
        "Status": _words(brief.status),
        "Severity": escape(brief.severity.value),
        "Service": inert(brief.service, 200) if brief.service else "—",
        "Category": category,
        "Alerts": f"{brief.firing} firing, {brief.alerts} received",
        "Opened": utc(brief.opened_at),
    }
    if brief.resolved_at:
        values["Resolved"] = utc(brief.resolved_at)
    return [_mrkdwn(f"*{name}*\n{value}") for name, value in values.items()]


def _responders(brief: IncidentBrief) -> str:
    lines = []
    if brief.acknowledged_by:
        at = f" at {utc(brief.acknowledged_at)}" if brief.acknowledged_at else ""
        lines.append(f"*Acknowledged* by {actor_mrkdwn(brief.acknowledged_by)}{at}")
    if brief.decisions:
        lines.append("*Decisions*")
        for decision in brief.decisions:
            line = (
                f"• {_words(decision.decision)} {code(decision.action)} by {actor_mrkdwn(decision.by)}"
                f" at {utc(decision.at)}"
            )
            if decision.reason:
                line += f": {inert(decision.reason, 300)}"
            lines.append(line)
    return _within(lines, MAX_SECTION)


def _pull_request(pr: PullRequestRef) -> str:
    line = f"{link(pr.url, f'{pr.repository}#{pr.number}')} {inert(pr.title, 200)}"
    if pr.merged_at:
        line += f", merged{f' by {inert(pr.merged_by, 100)}' if pr.merged_by else ''} at {utc(pr.merged_at)}"
    return line


def _pending(pending: BriefProposal) -> str:
    lines = [f"*Awaiting approval:* {code(pending.action)}" + (" _(dry run)_" if pending.dry_run else "")]
    if pending.params:
        params = [code(f"{name}={value}") for name, value in sorted(pending.params.items())]
        lines.append("*Parameters:* " + _within(params, 1000, separator=", "))
    if pending.reason:
        lines.append(f"*Why:* {inert(pending.reason, 800)}")
    if pending.policy_reason:
        lines.append(f"*Policy:* {inert(pending.policy_reason, 500)}")
    proposed = f"*Proposed by* {actor_mrkdwn(pending.proposed_by)}"
    if pending.escalation_level:
        proposed += f" · escalation level {pending.escalation_level}"
    lines.append(proposed)
    return _within(lines, MAX_SECTION)


def _buttons(brief: IncidentBrief) -> list[Block]:
    """Approve and reject while a proposal waits, acknowledge until someone did, resolve until resolved. None for
    an incident id too long for `ButtonValue` (its clicks could not be parsed back; Vigil's ids are short)."""
    if is_finished(brief) or len(brief.incident_id) > MAX_INCIDENT_ID:
        return []
    incident = brief.incident_id
    wanted: list[tuple[str, str, str | None, str]] = []
    if brief.pending is not None:
        proposal = button_value(incident, brief.pending.proposal_id)
        wanted += [("Approve", APPROVE_ACTION, "primary", proposal), ("Reject", REJECT_ACTION, "danger", proposal)]
    if not brief.acknowledged_by:
        wanted.append(("Acknowledge", ACK_ACTION, None, button_value(incident)))
    wanted.append(("Resolve", RESOLVE_ACTION, None, button_value(incident)))
    buttons = []
    for label, action_id, style, value in wanted:
        button: Block = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label},
            "value": value,
        }
        if style:
            button["style"] = style
        buttons.append(button)
    return buttons


def _context(brief: IncidentBrief, links: IncidentLinks) -> Block:
    parts = [link(links.console, "Open in Vigil")]
    if links.temporal:
        parts.append(link(links.temporal, "Temporal workflow"))
    parts.append(code(brief.incident_id))
    return {"type": "context", "elements": [_mrkdwn(" · ".join(parts))]}


def _link_label(url: str) -> str:
    parts = urlsplit(url)
    name = parts.path.rstrip("/").rsplit("/", 1)[-1]
    return name or parts.netloc or url
