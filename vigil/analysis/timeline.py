"""An ordered timeline of an incident's log window: deploys and the first occurrence of each error and finding."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from vigil.analysis.detectors import DeployMarker
from vigil.analysis.fingerprints import as_utc, truncate
from vigil.analysis.models import ErrorFingerprint, Finding, LogEvent

TimelineKind = Literal["window-start", "deploy", "error", "finding", "window-end"]
_KIND_ORDER: dict[str, int] = {"window-start": 0, "deploy": 1, "finding": 2, "error": 3, "window-end": 4}


class TimelineEntry(BaseModel):
    ts: datetime
    kind: TimelineKind
    evidence_id: str | None = None
    text: str


def timeline(
    events: Sequence[LogEvent],
    fingerprints: Sequence[ErrorFingerprint],
    findings: Sequence[Finding],
    *,
    deploys: Sequence[DeployMarker] = (),
) -> list[TimelineEntry]:
    """First occurrence of each fingerprint and finding (and each deploy), in time order, between the first and
    last timestamped event of the window. Items without a timestamp have no place on it and are left out."""
    entries: list[TimelineEntry] = []
    stamps = [as_utc(e.ts) for e in events if e.ts is not None]
    if stamps:
        opens = f"log window opens ({len(events)} events)"
        entries.append(TimelineEntry(ts=min(stamps), kind="window-start", text=opens))
        entries.append(TimelineEntry(ts=max(stamps), kind="window-end", text="log window closes"))
    for deploy in deploys:
        text = truncate(f"deploy of {deploy.service} {deploy.version}")
        entries.append(
            TimelineEntry(
                ts=as_utc(deploy.ts),
                kind="deploy",
                evidence_id=deploy.evidence_id or f"deploy:{deploy.version}",
                text=text,
            )
        )
    for fp in fingerprints:
        if fp.first_seen is not None:
            text = truncate(f"first error (x{fp.count}): {fp.sample}")
            entries.append(TimelineEntry(ts=as_utc(fp.first_seen), kind="error", evidence_id=fp.id, text=text))
    for finding in findings:
        if finding.first_seen is not None:
            text = truncate(f"{finding.title} [{finding.severity}, x{finding.count}]")
            entries.append(
                TimelineEntry(ts=as_utc(finding.first_seen), kind="finding", evidence_id=finding.id, text=text)
            )
    entries.sort(key=lambda e: (e.ts, _KIND_ORDER[e.kind]))
    return entries
