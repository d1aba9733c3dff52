"""Correlation: which deploys (changes) are likely related to an incident, ranked.

A deploy scores by closeness to the onset (the first error/finding, or the alerts' startsAt) — deploys shortly
*before* the onset score highest, deploys after it barely — and by the services it touches: a deploy of the
service the alerts and findings are about ranks above one of an unrelated service.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel

from vigil.analysis.bundle import Alert, Deploy
from vigil.analysis.fingerprints import as_utc
from vigil.analysis.models import ErrorFingerprint, Finding

HALF_LIFE = timedelta(minutes=15)
SUSPECT_SCORE = 0.5


class DeployCorrelation(BaseModel):
    id: str
    service: str
    version: str | None
    commit: str | None
    author: str | None
    description: str | None
    ts: datetime
    minutes_before_onset: float | None
    same_service: bool
    score: float


def onset_of(
    alerts: Sequence[Alert], findings: Sequence[Finding], fingerprints: Sequence[ErrorFingerprint]
) -> datetime | None:
    """The earliest first error, finding or alert start."""
    stamps: list[datetime] = [as_utc(f.first_seen) for f in findings if f.first_seen is not None]
    stamps += [as_utc(fp.first_seen) for fp in fingerprints if fp.first_seen is not None]
    stamps += [as_utc(a.starts_at) for a in alerts if a.starts_at is not None and a.starts_at.year > 1]
    return min(stamps) if stamps else None


def affected_services(
    alerts: Sequence[Alert], findings: Sequence[Finding], fingerprints: Sequence[ErrorFingerprint]
) -> list[str]:
    """Services named by alerts (service/job/app labels), findings and errors, most mentioned first."""
    counts: dict[str, int] = {}

    def add(names: Iterable[str], weight: int) -> None:
        for name in names:
            if name:
                counts[name] = counts.get(name, 0) + weight

    for alert in alerts:
        add((alert.labels.get(k, "") for k in ("service", "job", "app", "container")), 3)
    for finding in findings:
        add(finding.services, 2)
    for fp in fingerprints:
        add(fp.services, 1)
    return sorted(counts, key=lambda s: (-counts[s], s))


def rank_deploys(deploys: Sequence[Deploy], onset: datetime | None, services: Sequence[str]) -> list[DeployCorrelation]:
    """Deploys with a score in [0, 1], highest first."""
    out: list[DeployCorrelation] = []
    wanted = set(services)
    ids = deploy_evidence_ids(deploys)
    for deploy, evidence_id in zip(deploys, ids, strict=True):
        at = as_utc(deploy.ts)
        minutes: float | None = None
        if onset is None:
            closeness = 0.3
        else:
            delta = onset - at
            minutes = delta.total_seconds() / 60
            if delta >= timedelta(0):
                closeness = math.pow(0.5, delta / HALF_LIFE)
            else:  # after the onset: it cannot have caused it (clock skew aside)
                closeness = 0.1 * math.pow(0.5, -delta / timedelta(minutes=2))
        same = deploy.service in wanted
        service_factor = 1.0 if same else (0.5 if not wanted else 0.35)
        out.append(
            DeployCorrelation(
                id=evidence_id,
                service=deploy.service,
                version=deploy.version,
                commit=deploy.commit,
                author=deploy.author,
                description=deploy.description,
                ts=at,
                minutes_before_onset=None if minutes is None else round(minutes, 2),
                same_service=same,
                score=round(closeness * service_factor, 4),
            )
        )
    out.sort(key=lambda d: (-d.score, d.ts))
    return out


def deploy_evidence_ids(deploys: Sequence[Deploy]) -> list[str]:
    """`deploy:<commit or version>`, qualified by the service (and then a counter) where two deploys would share
    it: a citation must name one deploy (two services shipping "1.4.2" are two suspects)."""
    plain = [f"deploy:{deploy.ref}" for deploy in deploys]
    ids: list[str] = []
    for deploy, evidence_id in zip(deploys, plain, strict=True):
        if plain.count(evidence_id) > 1:
            evidence_id = f"{evidence_id}@{deploy.service}"
        unique, n = evidence_id, 1
        while unique in ids:
            n += 1
            unique = f"{evidence_id}#{n}"
        ids.append(unique)
    return ids
