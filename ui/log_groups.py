"""Log evidence grouped by template, for the incident page: counts and a few samples per template.

The diagnosis keeps only each template's text and count; the lines themselves stay in the store. The page reads
the same window again (`Store.logs_window`) and groups it the way the analysis engine does: each stored line
parsed by the normaliser (as a JSON line, as the diagnosis hands it over), its message mined by the project's
`TemplateMiner`. Template ids hash a template's first masked message, so a group's id is the one the evidence
names (`log:tpl-<id>`) whenever the same lines are read. Samples are untrusted text: shown as plain text only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from vigil.analysis.fingerprints import is_error, truncate
from vigil.analysis.models import Level
from vigil.analysis.normalise import normalise
from vigil.analysis.templates import TemplateMiner
from vigil.models import IncidentState, LogRecord, TimelineKind

MAX_LINES = 20_000
"""Lines the page reads per incident: enough for the templates that matter, bounded for a shared console."""
MAX_GROUPS = 30
SAMPLES = 3
SAMPLE_CHARS = 500


@dataclass
class LogGroup:
    template_id: str
    template: str
    count: int = 0
    bad: int = 0
    """Errors and warnings among them."""
    samples: list[str] = field(default_factory=list)
    first: datetime | None = None
    last: datetime | None = None

    @property
    def evidence_id(self) -> str:
        return f"log:tpl-{self.template_id}"


def log_window(
    state: IncidentState, now: datetime, lookback: timedelta = timedelta(minutes=30)
) -> tuple[datetime, datetime]:
    """The window the diagnosis read: from 30 minutes before the first alert (or the opening) to when it was
    diagnosed (or now, while it is not)."""
    first = min((record.starts_at for record in state.alerts.values()), default=state.opened_at)
    start = min(first, state.opened_at) - lookback
    diagnosed = [event.at for event in state.timeline if event.kind is TimelineKind.DIAGNOSED]
    end = (diagnosed[0] if diagnosed else now) + timedelta(seconds=1)
    return start, end


def log_services(state: IncidentState) -> list[str]:
    """The services the diagnosis read logs of: its alerts' `service` (else `job`) labels."""
    return sorted(
        {name for record in state.alerts.values() if (name := record.labels.get("service") or record.labels.get("job"))}
    )


def _json_line(record: LogRecord) -> str:
    fields: dict[str, str] = {"ts": record.ts.isoformat()}
    if record.level:
        fields["level"] = record.level
    fields["message"] = record.message
    return json.dumps(fields)


def group_logs(records: Sequence[LogRecord], *, limit: int = MAX_GROUPS, samples: int = SAMPLES) -> list[LogGroup]:
    """Templates of `records`, those with the most errors and warnings first, then the most frequent; each with
    up to `samples` distinct sample messages (the first seen)."""
    miner = TemplateMiner()
    groups: dict[str, LogGroup] = {}
    members: list[tuple[str, LogRecord, bool]] = []
    by_service: dict[str, list[LogRecord]] = {}
    for record in records:
        by_service.setdefault(record.service, []).append(record)
    for service, lines in by_service.items():
        for event in normalise((_json_line(r) for r in lines), service=service):
            if not 0 < event.line <= len(lines):
                continue
            record = lines[event.line - 1]
            bad = is_error(event) or event.level is Level.WARNING
            members.append((miner.add(event.message).template_id, record, bad))
    for template_id, record, bad in members:
        live = miner.resolve(template_id)
        group = groups.get(live)
        if group is None:
            group = groups[live] = LogGroup(live, miner.template(live) or "")
        group.count += 1
        group.bad += int(bad)
        sample = truncate(record.message, SAMPLE_CHARS)
        if len(group.samples) < samples and sample not in group.samples:
            group.samples.append(sample)
        group.first = record.ts if group.first is None else min(group.first, record.ts)
        group.last = record.ts if group.last is None else max(group.last, record.ts)
    ordered = sorted(groups.values(), key=lambda g: (-g.bad, -g.count, g.template_id))
    return ordered[:limit]
