"""Responders' feedback as labelled classifier examples: `vigil model train --feedback-from-store` and
`vigil feedback export`.

The classifier is fed the features of an incident's evidence bundle (`report.features_of`). The store does not
keep those features, and the bundle's log lines are deleted by retention, so an example is rebuilt from what the
store keeps for good: the diagnosis's evidence items (detector findings with their category and count, error
fingerprints, bad log templates, deploys with their distance to the onset) and the incident's alerts. They are
put back into the analysis pipeline's intermediate form and run through the real `features_of`, so an example
has the features the classifier knows, not a text of its own. What is lost: detector findings cut from the
evidence list by its size limit, the template words of errors beyond it, and whether a deploy brought new
application exceptions (the evidence does not say).

A verdict becomes an example of its right category (`StoredFeedback.right_category`): the correction of a
`wrong`, or the diagnosed category a `right` confirms. A `wrong` without a correction teaches nothing and is
skipped. Only each incident's latest verdict counts.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from vigil.analysis.bundle import Alert, Bundle
from vigil.analysis.classify import Features
from vigil.analysis.correlate import DeployCorrelation
from vigil.analysis.models import Category, ErrorFingerprint, Finding
from vigil.analysis.report import Extracted, features_of
from vigil.feedback import StoredFeedback
from vigil.models import AlertRecord
from vigil.rca.models import EvidenceItem, RootCauseAnalysis
from vigil.settings import Settings
from vigil.store.database import Store, database_url, store_unavailable

_DETAIL_FIELD = re.compile(r"(?:^|\s)([a-z_]+)=(\S+)")
_EXCEPTION_TYPE = re.compile(r"^[A-Za-z_][\w.$]*$")
_UNKNOWN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""A deploy's time as rebuilt: the features use only its distance to the onset, which the evidence keeps."""


def _detail_fields(detail: str) -> dict[str, str]:
    """The `key=value` head line `rca.evidence._detail` writes (samples follow on later lines)."""
    return dict(_DETAIL_FIELD.findall(detail.split("\n", 1)[0]))


def _count(fields: dict[str, str]) -> int:
    try:
        return max(int(fields.get("count", "1")), 1)
    except ValueError:
        return 1


def _finding(item: EvidenceItem) -> Finding | None:
    fields = _detail_fields(item.detail)
    try:
        category = Category(fields.get("category", ""))
    except ValueError:  # not a detector finding as `rca.evidence` writes them
        return None
    return Finding(
        id=item.id,
        detector=item.id.removeprefix("detector:").split(":", 1)[0],
        category=category,
        title=item.title,
        severity=fields.get("severity", "warning"),
        count=_count(fields),
        first_seen=None,
        last_seen=None,
        services=[s for s in fields.get("services", "").split(",") if s],
    )


def _fingerprint(item: EvidenceItem) -> ErrorFingerprint:
    head, _, rest = item.title.partition(": ")
    typed = bool(rest) and _EXCEPTION_TYPE.match(head) is not None
    return ErrorFingerprint(
        id=item.id,
        exception_type=head if typed else None,
        frame=_detail_fields(item.detail).get("frame"),
        template=rest if typed else item.title,
        count=_count(_detail_fields(item.detail)),
        first_seen=None,
        last_seen=None,
        services=[],
        sample="",
    )


def _deploy(item: EvidenceItem, alert_services: set[str]) -> DeployCorrelation | None:
    fields = _detail_fields(item.detail)
    parts = item.title.split()
    service = parts[2] if len(parts) > 2 and parts[:2] == ["deploy", "of"] else ""
    try:
        minutes: float | None = float(fields["minutes_before_onset"])
    except (KeyError, ValueError):
        minutes = None
    description = item.detail.split("description=", 1)[1].split("\n", 1)[0] if "description=" in item.detail else None
    return DeployCorrelation(
        id=item.id,
        service=service,
        version=None,
        commit=None,
        author=None,
        description=description,
        ts=_UNKNOWN_TIME,
        minutes_before_onset=minutes,
        same_service=service in alert_services,
        score=0.0,
    )


def _bundle_alert(record: AlertRecord) -> Alert:
    return Alert(
        status=record.status.value,
        labels=record.labels,
        annotations=record.annotations,
        starts_at=record.starts_at,
        ends_at=record.ends_at,
        fingerprint=record.fingerprint,
    )


def features_from_record(rca: RootCauseAnalysis, alerts: Sequence[AlertRecord]) -> Features:
    """The classifier's features of a diagnosed incident, rebuilt from its stored evidence and alerts."""
    alert_services = {s for a in alerts if (s := a.labels.get("service") or a.labels.get("job"))}
    findings = [f for item in rca.evidence if item.kind == "detector" and (f := _finding(item)) is not None]
    fingerprints = [_fingerprint(item) for item in rca.evidence if item.kind == "error"]
    templates = [(item.id, item.title, 1, 1) for item in rca.evidence if item.kind == "log-template"]
    deploys = [d for item in rca.evidence if item.kind == "deploy" and (d := _deploy(item, alert_services))]
    extracted = Extracted(
        bundle=Bundle(alerts=[_bundle_alert(a) for a in alerts]),
        events=[],
        templates=templates,
        fingerprints=fingerprints,
        findings=findings,
        deploys=deploys,
        onset=None,
        services=sorted(alert_services),
        new_exception_after_deploy=False,
    )
    return features_of(extracted)


async def stored_examples(store: Store) -> list[dict[str, Any]]:
    """Labelled rows in `vigil model train --feedback`'s JSONL format ({"category", "features"} plus where they
    came from), one per incident whose latest verdict names a right category and which has a stored diagnosis."""
    rows: list[dict[str, Any]] = []
    latest = await store.latest_feedback()
    for incident_id in sorted(latest):
        feedback = latest[incident_id]
        category = feedback.right_category
        if category is None:
            continue
        rca = await store.diagnosis(incident_id)
        if rca is None:
            continue
        features = features_from_record(rca, await store.alerts(incident_id))
        rows.append(example_row(feedback, category, features))
    return rows


def example_row(feedback: StoredFeedback, category: Category, features: Features) -> dict[str, Any]:
    return {
        "category": category.value,
        "features": features,
        "incident_id": feedback.incident_id,
        "verdict": feedback.verdict.value,
        "diagnosed_category": feedback.diagnosed_category,
        "actor": feedback.actor,
        "at": feedback.at.isoformat(),
    }


def write_jsonl(rows: Sequence[dict[str, Any]], path: Path | None) -> str:
    """The rows as JSONL; written to `path` (atomically) when given, and returned."""
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return text


async def _read_examples(settings: Settings) -> list[dict[str, Any]]:
    async with await Store.open(database_url(settings), max_size=2) as store:
        return await stored_examples(store)


def load_examples(settings: Settings) -> list[dict[str, Any]] | str:
    """The stored examples, or why they cannot be read (PostgreSQL down or not set up)."""
    try:
        return asyncio.run(_read_examples(settings))
    except Exception as exc:
        if store_unavailable(exc) or isinstance(exc, asyncpg.PostgresError):
            return f"cannot read feedback from PostgreSQL: {exc}"
        raise


def run_export(settings: Settings, out: Path | None) -> int:
    """`vigil feedback export`: the stored feedback as `vigil model train --feedback` JSONL (stdout or a file)."""
    examples = load_examples(settings)
    if isinstance(examples, str):
        print(f"error: {examples}", file=sys.stderr)
        return 1
    text = write_jsonl(examples, out)
    if out is None:
        sys.stdout.write(text)
    else:
        print(f"{len(examples)} labelled example(s) written to {out}", file=sys.stderr)
    return 0
